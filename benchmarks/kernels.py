r"""From-scratch ``leaky_relu`` and ``prelu`` against PyTorch's kernels, 1e3 to 1e7 elements.

For each size :math:`N` (float32, shaped :math:`(N / 100, 100)`: 100 channels, one PReLU slope
per channel, as in the chapter's 100-unit layers) and each implementation, the median time of

- *forward*: ``f(x)`` on a tensor that does not require a gradient;
- *forward + backward*: ``torch.autograd.grad(f(x), inputs, g)``, with ``inputs`` being ``x``
  (and the slopes for PReLU) and ``g`` a fixed output gradient,

from ``torch.utils.benchmark.Timer.blocked_autorange`` (which warms up, repeats until enough
time has passed and reports the median), with one intra-op thread: the chapter's notebooks
train single-threaded, and on a shared 2-core machine two OpenMP threads make every
elementwise operation above about 32 thousand elements wait for the busier core (the
microtimings benchmark times ``x.clone()`` of 1e5 floats on one and on two threads). The
copy bandwidth is measured with the same single thread, so the comparison is like for like.

Bandwidth: an elementwise activation cannot be faster than moving its data through memory.
The least it must move is :math:`2N` floats forward (read :math:`x`, write :math:`y`) and
:math:`5N` floats forward and backward (then read :math:`g` and :math:`x`, write the input
gradient), so the *achieved bandwidth* is that many bytes over the measured time. The practical
limit is the copy bandwidth of the same machine: ``torch.clone`` of the same tensor moves
:math:`2N` floats. Where the achieved bandwidth is close to the copy bandwidth, nothing written
in Python on top of PyTorch can be faster.
"""

from __future__ import annotations

from ._core import Missing, Options, load_average

SIZES = [10**3, 10**4, 10**5, 10**6, 10**7]
QUICK_SIZES = [10**3, 10**5, 10**6]
CHANNELS = 100
THREADS = 1
SLOPE = 0.01
# Floats an elementwise activation must read or write, per element.
FLOATS_FORWARD, FLOATS_FORWARD_BACKWARD, FLOATS_COPY = 2, 5, 2


def gigabytes_per_second(
    elements: int, floats_per_element: int, seconds: float, bytes_per_float: int = 4
) -> float:
    """The bandwidth of moving ``floats_per_element`` floats per element in ``seconds``, GB/s.

    Example:
        >>> gigabytes_per_second(10**6, 2, 1e-3)
        8.0
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    return elements * floats_per_element * bytes_per_float / seconds / 1e9


def _implementations():
    try:
        from rectifiers import functional as rf
    except ImportError as error:
        raise Missing(f"rectifiers.functional cannot be imported: {error}") from error
    import torch.nn.functional as F

    return {
        "leaky_relu": {
            "scratch": lambda x, w: rf.leaky_relu(x, SLOPE),
            "builtin": lambda x, w: F.leaky_relu(x, SLOPE),
        },
        "prelu": {"scratch": rf.prelu, "builtin": F.prelu},
    }


def time_statement(
    stmt: str, namespace: dict, min_run_time: float, threads: int | None = None
) -> float:
    """Median seconds of ``stmt`` (see ``torch.utils.benchmark.Timer.blocked_autorange``), on
    ``threads`` intra-op threads (default: this process's count)."""
    import torch
    from torch.utils import benchmark

    threads = torch.get_num_threads() if threads is None else threads
    timer = benchmark.Timer(stmt=stmt, globals=namespace, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def measure_size(n: int, min_run_time: float) -> dict:
    """All figures for ``n`` elements: clone, and each function's two implementations."""
    import torch

    generator = torch.Generator().manual_seed(n)
    x = torch.randn(n // CHANNELS, CHANNELS, generator=generator)
    g = torch.randn(n // CHANNELS, CHANNELS, generator=generator)
    weight = torch.full((CHANNELS,), 0.25)
    x_grad, weight_grad = x.clone().requires_grad_(), weight.clone().requires_grad_()
    row: dict = {"elements": n, "load_1min": load_average()[0]}
    clone_s = time_statement("x.clone()", {"x": x}, min_run_time)
    row["clone_seconds"] = clone_s
    row["copy_gb_per_s"] = round(gigabytes_per_second(n, FLOATS_COPY, clone_s), 2)
    for name, impls in _implementations().items():
        inputs = (x_grad, weight_grad) if name == "prelu" else (x_grad,)
        entry = {}
        for impl, f in impls.items():
            forward = time_statement("f(x, w)", {"f": f, "x": x, "w": weight}, min_run_time)
            both = time_statement(
                "torch.autograd.grad(f(x, w), inputs, g)",
                {"torch": torch, "f": f, "x": x_grad, "w": weight_grad, "inputs": inputs, "g": g},
                min_run_time,
            )
            entry[impl] = {
                "forward_seconds": forward,
                "forward_backward_seconds": both,
                "forward_gb_per_s": round(gigabytes_per_second(n, FLOATS_FORWARD, forward), 2),
                "forward_backward_gb_per_s": round(
                    gigabytes_per_second(n, FLOATS_FORWARD_BACKWARD, both), 2
                ),
            }
        entry["forward_ratio"] = round(
            entry["scratch"]["forward_seconds"] / entry["builtin"]["forward_seconds"], 2
        )
        entry["forward_backward_ratio"] = round(
            entry["scratch"]["forward_backward_seconds"]
            / entry["builtin"]["forward_backward_seconds"],
            2,
        )
        row[name] = entry
    return row


def run(options: Options) -> tuple[dict, list[dict]]:
    """Time both implementations of both functions at every size; see the module docstring."""
    import torch

    _implementations()  # raises Missing before any timing if the subject is absent
    sizes = QUICK_SIZES if options.quick else SIZES
    min_run_time = 0.05 if options.quick else 0.3
    rows = []
    configured = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        for n in sizes:
            print(f"  kernels: {n:.0e} elements ...", flush=True)
            rows.append(measure_size(n, min_run_time))
    finally:
        torch.set_num_threads(configured)
    results = {
        "dtype": "float32",
        "channels": CHANNELS,
        "negative_slope": SLOPE,
        "threads": THREADS,
        "min_run_time": min_run_time,
        "floats_moved_per_element": {
            "forward": FLOATS_FORWARD,
            "forward_backward": FLOATS_FORWARD_BACKWARD,
            "clone": FLOATS_COPY,
        },
        "sizes": rows,
    }
    return results, []
