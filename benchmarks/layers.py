"""Time per training step of the batched trainer with each kind of layer the chapters use.

The experiments compare activations (fixed slopes, PReLU, ELU, GELU, SiLU, RReLU), batch
normalisation, a skip connection and deep narrow networks, each in one stacked computation.
Each variant here is 40 models trained for one epoch of MNIST-1D (40 steps of 100 examples;
10 steps with ``--quick``) with Adam, with one intra-op thread and with the configured count;
the figure is the median wall time per optimizer step at the variant's best thread count,
recording only at the start and the end. The reference is the fixed-slope sweep of the
``training`` benchmark, the first row. No budget: the figures show what each layer costs
next to the plain sweep.
"""

from __future__ import annotations

import time

from ._core import Missing, Options, load_average, median
from .training import BATCH_SIZE, LR, OPTIMIZER, SEEDS, SIZES, SLOPES, best, thread_counts

MODELS = 40
DEEP = [SIZES[0]] + [16] * 15 + [SIZES[-1]]
# name -> (sizes, activations (one per model, or one for all), options of batched_mlp)
VARIANTS = {
    "fixed slopes (8 x 5 seeds)": (SIZES, None, {}),
    "PReLU": (SIZES, "prelu", {}),
    "PReLU, one slope per unit": (SIZES, "prelu_channelwise", {}),
    "ELU": (SIZES, "elu", {}),
    "GELU": (SIZES, "gelu", {}),
    "SiLU": (SIZES, "silu", {}),
    "RReLU (random slopes in training)": (SIZES, "rrelu", {}),
    "fixed slopes + batch norm": (SIZES, None, {"batch_norm": True}),
    "fixed slopes + skip connection": (SIZES, None, {"residual": True}),
    "deep narrow: 15 hidden layers of 16, fixed slopes": (DEEP, None, {}),
    "deep narrow + batch norm + skips, PReLU": (
        DEEP,
        "prelu",
        {"batch_norm": True, "residual": True},
    ),
}


def _subjects():
    try:
        from rectifiers.batched import batched_mlp, grid, train_batched
        from rectifiers.data import load_mnist1d
    except ImportError as error:
        raise Missing(f"the batched trainer cannot be imported: {error}") from error
    return batched_mlp, grid, train_batched, load_mnist1d


def time_variant(data, sizes, activation, options: dict) -> float:
    """Seconds per optimizer step of one epoch of ``MODELS`` models of one variant."""
    batched_mlp, grid, train_batched, _ = _subjects()
    if activation is None:
        activations, seeds = grid(SLOPES, SEEDS)
    else:
        activations, seeds = [activation] * MODELS, list(range(MODELS))
    nets = batched_mlp(sizes, activations, seeds, **options)
    steps = -(-len(data.y_train) // BATCH_SIZE)
    start = time.perf_counter()
    train_batched(
        nets, data, epochs=1, lr=LR, batch_size=BATCH_SIZE, optimizer=OPTIMIZER, record_every=steps
    )
    return (time.perf_counter() - start) / steps


def run(options: Options) -> tuple[dict, list[dict]]:
    """Time every variant; see the module docstring."""
    import torch

    *_, load_mnist1d = _subjects()
    data = load_mnist1d()
    if options.quick:
        data = data.subset(10 * BATCH_SIZE, 200)
    configured = torch.get_num_threads()
    timings: dict[str, dict[int, list[float]]] = {name: {} for name in VARIANTS}
    loads = []
    try:
        for threads in thread_counts(configured):
            torch.set_num_threads(threads)
            for _ in range(options.runs):
                # Every variant once per round: load bursts spread over all of them.
                for name, (sizes, activation, extra) in VARIANTS.items():
                    print(f"  layers: {name}, {threads} thread(s) ...", flush=True)
                    loads.append(load_average()[0])
                    seconds = time_variant(data, sizes, activation, extra)
                    timings[name].setdefault(threads, []).append(seconds)
    finally:
        torch.set_num_threads(configured)
    variants = {}
    for name, by_threads in timings.items():
        threads, seconds = best({t: median(v) for t, v in by_threads.items()})
        sizes, activation, extra = VARIANTS[name]
        variants[name] = {
            "ms_per_step": round(seconds * 1e3, 3),
            "threads": threads,
            "ms_per_step_by_threads": {
                str(t): round(median(v) * 1e3, 3) for t, v in by_threads.items()
            },
            "sizes": sizes,
            "activation": activation or "fixed slopes",
            **extra,
        }
    reference = variants[next(iter(VARIANTS))]["ms_per_step"]
    for entry in variants.values():
        entry["relative_to_fixed_slopes"] = round(entry["ms_per_step"] / reference, 2)
    results = {
        "models": MODELS,
        "batch_size": BATCH_SIZE,
        "train_examples": len(data.y_train),
        "optimizer": OPTIMIZER,
        "configured_threads": configured,
        "variants": variants,
        "load_1min": loads,
    }
    return results, []
