"""Micro-timings that explain the big ones: the facts the Performance page's findings rest on.

No budgets: each micro-timing times one operation in isolation (``torch.utils.benchmark.Timer``,
median of blocked runs) so that the page can say *why* a budgeted figure looks the way it
does, with a number measured by the same ``make bench`` run rather than quoted from memory.

- ``cross_entropy``: forward and backward of ``F.cross_entropy`` on 40 x 100 logits of 10
  classes, laid out (4000, 10) as the loop does, and (40, 10, 100); and of the batched
  trainer's ``rectifiers.stacked.losses``, which lays the classes first (same values).
- ``elementwise``: on 10^5 floats, one thread: ``torch.where`` with a Boolean mask, a
  multiplication by a number, and ``F.leaky_relu``, the building blocks of the from-scratch
  activations against the built-in kernel.
- ``threads``: ``torch.clone`` of 10^5 floats with one and with two intra-op threads, the cost
  of waking a second thread for a small operation.
- ``matmul``: GFLOP/s of the batched trainer's largest product (40 products of
  100 x 100 by 100 x 100) and of one 1000 x 1000 product, with one and two threads.
"""

from __future__ import annotations

from ._core import Options
from .kernels import time_statement

SIZE = 10**5
MODELS, BATCH, WIDTH, CLASSES = 40, 100, 100, 10


def run(options: Options) -> tuple[dict, list[dict]]:
    """Time each micro-timing; see the module docstring. ``--quick`` shortens each measurement."""
    import torch
    import torch.nn.functional as F

    t = 0.05 if options.quick else 0.5
    logits = torch.randn(MODELS, BATCH, CLASSES, requires_grad=True)
    labels = torch.randint(0, CLASSES, (MODELS, BATCH))
    from rectifiers.stacked import losses

    ns = {"F": F, "l": logits, "y": labels, "losses": losses}
    cross_entropy = {
        "last_dim_ms": 1e3
        * time_statement(
            f"F.cross_entropy(l.reshape(-1, {CLASSES}), y.reshape(-1)).backward()", ns, t, 1
        ),
        "middle_dim_ms": 1e3
        * time_statement("F.cross_entropy(l.transpose(1, 2).contiguous(), y).backward()", ns, t, 1),
        "stacked_losses_ms": 1e3 * time_statement("losses(l, y).sum().backward()", ns, t, 1),
    }
    x = torch.randn(SIZE)
    ns = {"torch": torch, "F": F, "x": x, "m": x > 0, "z": torch.zeros(SIZE)}
    elementwise = {
        "where_us": 1e6 * time_statement("torch.where(m, x, z)", ns, t, 1),
        "multiply_us": 1e6 * time_statement("x * 0.01", ns, t, 1),
        "leaky_relu_us": 1e6 * time_statement("F.leaky_relu(x, 0.01)", ns, t, 1),
    }
    threads = {str(k): 1e6 * time_statement("x.clone()", ns, t, k) for k in (1, 2)}
    matmul = {}
    for name, (batch, n) in {"batched_40x100": (MODELS, WIDTH), "single_1000": (1, 1000)}.items():
        ns = {"torch": torch, "a": torch.randn(batch, n, n), "b": torch.randn(batch, n, n)}
        flops = 2 * batch * n**3
        matmul[name] = {
            str(k): flops / time_statement("torch.bmm(a, b)", ns, t, k) / 1e9 for k in (1, 2)
        }
    rounded = {
        "cross_entropy": {k: round(v, 3) for k, v in cross_entropy.items()},
        "elementwise": {k: round(v, 1) for k, v in elementwise.items()},
        "clone_us_by_threads": {k: round(v, 1) for k, v in threads.items()},
        "matmul_gflops_by_threads": {
            name: {k: round(v, 1) for k, v in by.items()} for name, by in matmul.items()
        },
        "size": SIZE,
    }
    return rounded, []
