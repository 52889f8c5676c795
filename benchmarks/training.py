r"""The batched trainer against a plain loop: the same 40 MLPs, the same epochs, the same data.

The work is the chapter's slope sweep: 8 fixed negative slopes times 5 seeds, MLPs
``[40, 100, 100, 10]`` on MNIST-1D (4000 training and 1000 test signals), Adam with learning
rate 0.01, mini-batches of 100, 10 epochs (2 with ``--quick``), then each model's final
held-out accuracy and loss.

- *Loop*: for each (slope, seed), ``mlp(sizes, slope, seed=seed)``, ``train(...)``,
  ``evaluate(...)``, one model after another.
- *Batched*: ``batched_mlp(sizes, slopes, seeds)`` and one ``train_batched(...)`` recording only
  at the start and at the end (the loop records nothing in between either).

Both are timed with one intra-op thread and with the configured count (``OMP_NUM_THREADS``, 2
under ``make``), ``runs`` times each, and the medians taken. The speed-up compares each side at
its own best thread count: tiny matrix products gain nothing from a second thread (and lose a
lot on a busy machine), large batched ones can, so comparing at one fixed count would flatter
one side.

Same results: in float32 the two differ by rounding (one batched product sums in another order
than 40 small ones), and Adam turns that into visible differences: an update is
:math:`m / (\sqrt{v} + \epsilon)`, so a parameter whose gradient is near zero moves by about the
learning rate in whichever direction the rounding noise points. The float32 differences are
reported as measured. That the two compute the same thing is checked in float64 on the same 40
models (3 epochs), where rounding is 2**29 times smaller: the largest parameter difference
must stay below 1e-9 and the final accuracies must be equal.
"""

from __future__ import annotations

import time

from ._core import Missing, Options, budget, load_average, median

SIZES = [40, 100, 100, 10]
SLOPES = [0.0, 0.001, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5]
SEEDS = [0, 1, 2, 3, 4]
EPOCHS, QUICK_EPOCHS, FLOAT64_EPOCHS = 10, 2, 3
LR, BATCH_SIZE, OPTIMIZER = 1e-2, 100, "adam"
SPEEDUP_BUDGET = 5.0
FLOAT64_PARAMETER_TOLERANCE = 1e-9


def _subjects():
    try:
        from rectifiers.batched import batched_mlp, grid, train_batched
        from rectifiers.data import MNIST1D, load_mnist1d
        from rectifiers.training import evaluate, mlp, train
    except ImportError as error:
        raise Missing(f"the trainers cannot be imported: {error}") from error
    return {
        "batched_mlp": batched_mlp,
        "grid": grid,
        "train_batched": train_batched,
        "MNIST1D": MNIST1D,
        "load_mnist1d": load_mnist1d,
        "evaluate": evaluate,
        "mlp": mlp,
        "train": train,
    }


def run_loop(data, slopes, seeds, epochs: int, dtype=None):
    """Train each model alone; returns ``(seconds, accuracies, losses, models)``."""
    api = _subjects()
    start = time.perf_counter()
    accuracies, losses, models = [], [], []
    for slope, seed in zip(slopes, seeds):
        net = api["mlp"](SIZES, slope, seed=seed)
        if dtype is not None:
            net = net.to(dtype)
        api["train"](
            net, data, epochs=epochs, lr=LR, batch_size=BATCH_SIZE, optimizer=OPTIMIZER, seed=seed
        )
        loss, accuracy = api["evaluate"](net, data.x_test, data.y_test)
        accuracies.append(accuracy)
        losses.append(loss)
        models.append(net)
    return time.perf_counter() - start, accuracies, losses, models


def run_batched(data, slopes, seeds, epochs: int, dtype=None):
    """Train all models at once; returns ``(seconds, accuracies, losses, stacked model)``."""
    api = _subjects()
    start = time.perf_counter()
    nets = api["batched_mlp"](SIZES, slopes, seeds)
    if dtype is not None:
        nets = nets.to(dtype)
    steps = epochs * -(-len(data.y_train) // BATCH_SIZE)
    history = api["train_batched"](
        nets,
        data,
        epochs=epochs,
        lr=LR,
        batch_size=BATCH_SIZE,
        optimizer=OPTIMIZER,
        record_every=steps,
    )
    seconds = time.perf_counter() - start
    return seconds, history.test_accuracy[-1].tolist(), history.test_loss[-1].tolist(), nets


def largest_parameter_difference(loop_models, nets) -> float:
    """Largest absolute difference between any parameter of the loop's and the batched models."""
    import torch

    largest = 0.0
    with torch.no_grad():
        for m, alone in enumerate(loop_models):
            stacked = nets.unstack(m)
            pairs = list(zip(alone.named_parameters(), stacked.named_parameters()))
            if len(pairs) != len(list(alone.parameters())):
                raise ValueError(f"model {m}: the unstacked model has other parameters")
            for (name, a), (_, b) in pairs:
                if a.shape != b.shape:
                    raise ValueError(
                        f"model {m}: parameter {name} has shape {tuple(a.shape)} "
                        f"alone and {tuple(b.shape)} unstacked"
                    )
                largest = max(largest, float(torch.max(torch.abs(a - b))))
    return largest


def compare(loop_acc, loop_loss, batched_acc, batched_loss, n_test: int) -> dict:
    """How far the two trainers' final accuracies and losses are apart (largest over models)."""
    if not (len(loop_acc) == len(loop_loss) == len(batched_acc) == len(batched_loss) > 0):
        raise ValueError("the four result lists must be non-empty, one entry per model")
    acc_diff = max(abs(a - b) for a, b in zip(loop_acc, batched_acc))
    return {
        "max_abs_accuracy_difference": acc_diff,
        "max_accuracy_difference_examples": round(acc_diff * n_test),
        "max_relative_loss_difference": max(
            abs(a - b) / max(abs(a), 1e-12) for a, b in zip(loop_loss, batched_loss)
        ),
        "mean_accuracy_loop": sum(loop_acc) / len(loop_acc),
        "mean_accuracy_batched": sum(batched_acc) / len(batched_acc),
    }


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profile_matmuls(fn) -> dict:
    """Seconds that ``fn()`` spends in matrix products, by the torch profiler, and in all.

    Why this is measured: stacking models removes per-model overhead, never arithmetic, so the
    batched trainer can be at most (loop time) / (its own matrix-product time) faster than the
    loop, however little else it does.
    """
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    seconds = time.perf_counter() - start
    events = prof.key_averages()
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / 1e6
    return {"matmul_seconds": matmul, "seconds": seconds}


def thread_counts(configured: int) -> list[int]:
    """The intra-op thread counts to time: one, and the configured count if different."""
    return sorted({1, configured})


def best(timings: dict[int, float]) -> tuple[int, float]:
    """``(threads, seconds)`` of the fastest entry of ``{threads: seconds}``."""
    if not timings:
        raise ValueError("timings must be non-empty")
    threads = min(timings, key=lambda t: (timings[t], t))
    return threads, timings[threads]


def run(options: Options) -> tuple[dict, list[dict]]:
    """Time both trainers on the same sweep and check they agree; see the module docstring."""
    import torch

    api = _subjects()
    epochs = QUICK_EPOCHS if options.quick else EPOCHS
    data = api["load_mnist1d"]()
    slopes, seeds = api["grid"](SLOPES, SEEDS)
    configured = torch.get_num_threads()
    batched_runs: dict[int, list[float]] = {}
    loop_runs: dict[int, list[float]] = {}
    loads = []
    try:
        for threads in thread_counts(configured):
            torch.set_num_threads(threads)
            batched_runs[threads], loop_runs[threads] = [], []
            for _ in range(options.runs):
                print(f"  training: batched, {threads} thread(s) ...", flush=True)
                loads.append(load_average()[0])
                seconds, batched_acc, batched_loss, nets = run_batched(data, slopes, seeds, epochs)
                batched_runs[threads].append(seconds)
                print(f"  training: loop, {threads} thread(s) ...", flush=True)
                loads.append(load_average()[0])
                seconds, loop_acc, loop_loss, loop_models = run_loop(data, slopes, seeds, epochs)
                loop_runs[threads].append(seconds)
        # Where the time goes: one profiled epoch of each, at the timed runs' best thread counts.
        profiled = {}
        for name, runner, runs in (
            ("batched", run_batched, batched_runs),
            ("loop", run_loop, loop_runs),
        ):
            threads = best({t: median(v) for t, v in runs.items()})[0]
            torch.set_num_threads(threads)
            print(f"  training: profiling one {name} epoch, {threads} thread(s) ...", flush=True)
            profiled[name] = profile_matmuls(lambda: runner(data, slopes, seeds, 1))
            profiled[name]["threads"] = threads
        # The equivalence check in float64, one thread (its speed is not measured).
        torch.set_num_threads(1)
        print("  training: float64 equivalence check ...", flush=True)
        data64 = api["MNIST1D"](
            data.x_train.double(), data.y_train, data.x_test.double(), data.y_test
        )
        _, acc64_b, loss64_b, nets64 = run_batched(
            data64, slopes, seeds, FLOAT64_EPOCHS, torch.float64
        )
        _, acc64_l, loss64_l, models64 = run_loop(
            data64, slopes, seeds, FLOAT64_EPOCHS, torch.float64
        )
    finally:
        torch.set_num_threads(configured)

    batched = {t: median(v) for t, v in batched_runs.items()}
    loop = {t: median(v) for t, v in loop_runs.items()}
    batched_threads, batched_s = best(batched)
    loop_threads, loop_s = best(loop)
    float32 = compare(loop_acc, loop_loss, batched_acc, batched_loss, len(data.y_test))
    float64 = compare(acc64_l, loss64_l, acc64_b, loss64_b, len(data.y_test))
    float32["max_abs_parameter_difference"] = largest_parameter_difference(loop_models, nets)
    float64["max_abs_parameter_difference"] = largest_parameter_difference(models64, nets64)
    float64["epochs"] = FLOAT64_EPOCHS
    results = {
        "models": len(slopes),
        "slopes": SLOPES,
        "seeds": SEEDS,
        "sizes": SIZES,
        "epochs": epochs,
        "optimizer": OPTIMIZER,
        "lr": LR,
        "batch_size": BATCH_SIZE,
        "train_examples": len(data.y_train),
        "test_examples": len(data.y_test),
        "configured_threads": configured,
        # Times to 0.1 ms: a quick run's times are tenths of a second, and rounding them to
        # 0.01 s would change the speed-up they imply by up to 20%.
        "batched_seconds_by_threads": {str(t): round(v, 4) for t, v in batched.items()},
        "loop_seconds_by_threads": {str(t): round(v, 4) for t, v in loop.items()},
        "batched_runs_seconds": {str(t): [round(s, 4) for s in v] for t, v in batched_runs.items()},
        "loop_runs_seconds": {str(t): [round(s, 4) for s in v] for t, v in loop_runs.items()},
        "batched_seconds": round(batched_s, 4),
        "batched_threads": batched_threads,
        "loop_seconds": round(loop_s, 4),
        "loop_threads": loop_threads,
        "speedup": round(loop_s / batched_s, 2),
        "speedup_same_threads": round(loop[configured] / batched[configured], 2),
        # Per epoch, from one profiled epoch (the profiler adds a little to both).
        "profile": {
            name: {
                "threads": entry["threads"],
                "seconds_per_epoch": round(entry["seconds"], 4),
                "matmul_seconds_per_epoch": round(entry["matmul_seconds"], 4),
            }
            for name, entry in profiled.items()
        },
        # The loop's measured time over the batched trainer's matrix-product time alone: the
        # speed-up of a batched trainer whose every other operation cost nothing.
        "speedup_ceiling": round(loop_s / (profiled["batched"]["matmul_seconds"] * epochs), 2),
        "float32": float32,
        "float64": float64,
        "load_1min": loads,
    }
    budgets = [
        budget(
            "training:speedup",
            "batched trainer vs one-by-one loop, 40 models, each at its best thread count",
            results["speedup"],
            SPEEDUP_BUDGET,
            ">=",
            "x",
        ),
        budget(
            "training:float64_parameters",
            "same results: largest parameter difference, batched vs loop, float64",
            float64["max_abs_parameter_difference"],
            FLOAT64_PARAMETER_TOLERANCE,
            "<=",
            "",
        ),
        budget(
            "training:float64_accuracy",
            "same results: largest final-accuracy difference, "
            "batched vs loop, float64 (test examples)",
            float64["max_accuracy_difference_examples"],
            0,
            "<=",
            "examples",
        ),
    ]
    return results, budgets
