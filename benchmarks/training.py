r"""Three ways to train the same 40 MLPs: the batched trainer, a plain loop, ``torch.func``.

The work is the chapter's slope sweep: 8 fixed negative slopes times 5 seeds, MLPs
``[40, 100, 100, 10]`` on MNIST-1D (4000 training and 1000 test signals), Adam with learning
rate 0.01, mini-batches of 100, 10 epochs (2 with ``--quick``), then each model's final
held-out accuracy and loss.

- *Loop*: for each (slope, seed), ``mlp(sizes, slope, seed=seed)``, ``train(...)``,
  ``evaluate(...)``, one model after another.
- *Batched*: ``batched_mlp(sizes, slopes, seeds)`` and one ``train_batched(...)`` recording only
  at the start and at the end (the loop records nothing in between either).
- *torch.func*: PyTorch's own model-ensembling recipe, what a user would pick instead:
  ``torch.func.stack_module_state`` over the 40 ``mlp`` networks (built with ``nn.PReLU``
  layers whose slopes are then fixed per model, since ``vmap`` needs one module structure),
  ``vmap(functional_call)`` of the per-model cross-entropy, and one fused Adam over the
  stacked parameters; the same data orders (``data_orders``) and mini-batches.

Each is timed with one intra-op thread and with the configured count (``OMP_NUM_THREADS``, 2
under ``make``), ``runs`` times each, the three interleaved (their order rotating from run to
run, so that a burst of load on a shared machine does not land on one side), and the medians
taken. Speed-ups compare each side at its own best thread count: tiny matrix products gain
nothing from a second thread (and lose a lot on a busy machine), large batched ones can, so
comparing at one fixed count would flatter one side.

Where the time goes: one epoch of each trainer under the torch profiler, its kernels grouped
into matrix products, the optimizer, the activations, the loss, and the rest; and the per-step
overhead (Python, dispatch, autograd bookkeeping) of the batched trainer, measured as the CPU
time of the same steps on tiny tensors, where arithmetic costs nothing.

Same results: in float32 the two differ by rounding (one batched product sums in another order
than 40 small ones), and Adam turns that into visible differences: an update is
:math:`m / (\sqrt{v} + \epsilon)`, so a parameter whose gradient is near zero moves by about the
learning rate in whichever direction the rounding noise points. The float32 differences are
reported as measured. That they compute the same thing is checked in float64 on the same 40
models (3 epochs), where rounding is 2**29 times smaller: the largest parameter difference
from the loop must stay below 1e-9 and the final accuracies must be equal, for the batched
trainer and for ``torch.func``.
"""

from __future__ import annotations

import time

from ._core import Missing, Options, budget, load_average, median

SIZES = [40, 100, 100, 10]
SLOPES = [0.0, 0.001, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5]
SEEDS = [0, 1, 2, 3, 4]
EPOCHS, QUICK_EPOCHS, FLOAT64_EPOCHS = 10, 2, 3
LR, BATCH_SIZE, OPTIMIZER = 1e-2, 100, "adam"
SPEEDUP_BUDGET = 4.0
TRAINERS = ("batched", "loop", "func")
FLOAT64_PARAMETER_TOLERANCE = 1e-9


def _subjects():
    try:
        from rectifiers.batched import batched_mlp, grid, train_batched
        from rectifiers.data import MNIST1D, load_mnist1d
        from rectifiers.training import data_orders, evaluate, make_optimizer, mlp, train
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
        "data_orders": data_orders,
        "make_optimizer": make_optimizer,
    }


def run_loop(data, slopes, seeds, epochs: int, dtype=None):
    """Train each model alone; returns ``(seconds, accuracies, losses, models)``."""
    api = _subjects()
    start = time.perf_counter()
    accuracies, losses, models = [], [], []
    for slope, seed in zip(slopes, seeds, strict=True):
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


class FuncEnsemble:
    """The ``torch.func`` recipe's stacked parameters, read as ``largest_parameter_difference``
    reads a ``BatchedMLP``: ``unstack(m).named_parameters()`` gives model ``m``'s parameters
    under the loop's names (``0.weight``, ``0.bias``, ...)."""

    def __init__(self, params: dict):
        self.params = params

    def unstack(self, m: int):
        return _Named([(name, value[m].detach()) for name, value in self.params.items()])


class _Named:
    def __init__(self, pairs: list):
        self.pairs = pairs

    def named_parameters(self):
        return iter(self.pairs)


def run_func(data, slopes, seeds, epochs: int, dtype=None):
    """The ``torch.func`` ensemble; returns ``(seconds, accuracies, losses, FuncEnsemble)``."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.func import functional_call, stack_module_state, vmap

    api = _subjects()
    start = time.perf_counter()
    # nn.PReLU holds each model's slope as a tensor (vmap needs one module structure); building
    # it draws no random numbers, so the Linear layers are those of mlp(SIZES, slope, seed).
    nets = [api["mlp"](SIZES, "prelu", seed=seed) for seed in seeds]
    if dtype is not None:
        nets = [net.to(dtype) for net in nets]
    params, buffers = stack_module_state(nets)
    is_slope = {
        name: isinstance(nets[0].get_submodule(name.rsplit(".", 1)[0]), nn.PReLU) for name in params
    }
    fixed = {
        name: torch.tensor(slopes, dtype=value.dtype).view(-1, 1)
        for name, value in params.items()
        if is_slope[name]
    }
    trainable = {name: value for name, value in params.items() if not is_slope[name]}
    base = copy.deepcopy(nets[0]).to("meta")

    def one_loss(p, f, x, y):
        return F.cross_entropy(functional_call(base, ({**p, **f}, buffers), (x,)), y)

    def one_logits(p, f, x):
        return functional_call(base, ({**p, **f}, buffers), (x,))

    losses = vmap(one_loss)
    opt = api["make_optimizer"](list(trainable.values()), OPTIMIZER, lr=LR)
    x, y = data.x_train, data.y_train
    streams = {seed: api["data_orders"](len(y), seed) for seed in dict.fromkeys(seeds)}
    for _ in range(epochs):
        perms = {seed: next(stream) for seed, stream in streams.items()}
        order = torch.stack([perms[seed] for seed in seeds])
        for batch in order.split(BATCH_SIZE, dim=1):
            loss = losses(trainable, fixed, x[batch], y[batch])
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
    with torch.no_grad():
        logits = vmap(one_logits, in_dims=(0, 0, None))(trainable, fixed, data.x_test)
        n, classes = data.y_test.shape[0], logits.shape[-1]
        test_loss = F.cross_entropy(
            logits.reshape(-1, classes), data.y_test.repeat(len(seeds)), reduction="none"
        ).view(len(seeds), n)
        accuracy = (logits.argmax(dim=2) == data.y_test).to(torch.float64).mean(dim=1)
    seconds = time.perf_counter() - start
    return seconds, accuracy.tolist(), test_loss.mean(dim=1).tolist(), FuncEnsemble(trainable)


def largest_parameter_difference(loop_models, nets) -> float:
    """Largest absolute difference between any parameter of the loop's and the batched models."""
    import torch

    largest = 0.0
    with torch.no_grad():
        for m, alone in enumerate(loop_models):
            stacked = nets.unstack(m)
            mine, theirs = list(alone.named_parameters()), list(stacked.named_parameters())
            if [n for n, _ in mine] != [n for n, _ in theirs]:
                raise ValueError(f"model {m}: the unstacked model has other parameters")
            for (name, a), (_, b) in zip(mine, theirs, strict=True):
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
    acc_diff = max(abs(a - b) for a, b in zip(loop_acc, batched_acc, strict=True))
    return {
        "max_abs_accuracy_difference": acc_diff,
        "max_accuracy_difference_examples": round(acc_diff * n_test),
        "max_relative_loss_difference": max(
            abs(a - b) / max(abs(a), 1e-12) for a, b in zip(loop_loss, batched_loss, strict=True)
        ),
        "mean_accuracy_loop": sum(loop_acc) / len(loop_acc),
        "mean_accuracy_batched": sum(batched_acc) / len(batched_acc),
    }


# The kernels of a training step, by what they compute (torch profiler event names).
KERNELS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "optimizer": ("aten::_fused_adam_", "aten::_fused_adamw_", "aten::_fused_sgd_"),
    "activation": (
        "aten::leaky_relu",
        "aten::leaky_relu_backward",
        "aten::_prelu_kernel",
        "aten::_prelu_kernel_backward",
    ),
    "loss": (
        "aten::_log_softmax",
        "aten::_log_softmax_backward_data",
        "aten::nll_loss_forward",
        "aten::nll_loss_backward",
        # The batched trainer picks each example's log-probability with gather (see losses).
        "aten::gather",
        "aten::scatter_add_",
    ),
}


def profile_kernels(fn) -> dict:
    """Seconds that ``fn()`` spends in each group of ``KERNELS``, by the torch profiler, and in all.

    Why this is measured: stacking models removes per-model overhead, never arithmetic, so the
    batched trainer can be at most (loop time) / (its own matrix-product time) faster than the
    loop, however little else it does; and the optimizer's, activations' and loss's kernels do
    per-element arithmetic that the loop does too.
    """
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    seconds = time.perf_counter() - start
    events = prof.key_averages()
    grouped = {
        f"{group}_seconds": sum(e.self_cpu_time_total for e in events if e.key in names) / 1e6
        for group, names in KERNELS.items()
    }
    return {**grouped, "seconds": seconds}


def step_overhead(steps: int = 200) -> dict:
    """CPU milliseconds per training step when arithmetic costs nothing: the same models,
    layers and steps on tiny tensors (width 2, batches of 2), for the batched trainer's step
    (all models) and the loop's (one model)."""
    import torch

    api = _subjects()
    import torch.nn.functional as F

    from rectifiers.stacked import losses

    slopes, seeds = api["grid"](SLOPES, SEEDS)
    tiny = [SIZES[0]] + [2] * (len(SIZES) - 2) + [SIZES[-1]]
    x = torch.randn(len(slopes), 2, SIZES[0])
    y = torch.randint(0, SIZES[-1], (len(slopes), 2))
    nets = api["batched_mlp"](tiny, slopes, seeds)
    opt = api["make_optimizer"](list(nets.parameters()), OPTIMIZER, lr=LR)

    def batched_step():
        loss = losses(nets._forward(x)[0], y)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()

    net = api["mlp"](tiny, SLOPES[1], seed=0)
    net_opt = api["make_optimizer"](list(net.parameters()), OPTIMIZER, lr=LR)

    def loop_step():
        loss = F.cross_entropy(net(x[0]), y[0])
        net_opt.zero_grad()
        loss.backward()
        net_opt.step()

    result = {}
    for name, step in (("batched", batched_step), ("loop", loop_step)):
        for _ in range(20):
            step()
        start = time.process_time()
        for _ in range(steps):
            step()
        result[f"{name}_ms_per_step"] = (time.process_time() - start) / steps * 1e3
    return result


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
    """Time the three trainers on the same sweep and check they agree; see the module docstring."""
    import torch

    api = _subjects()
    epochs = QUICK_EPOCHS if options.quick else EPOCHS
    data = api["load_mnist1d"]()
    slopes, seeds = api["grid"](SLOPES, SEEDS)
    configured = torch.get_num_threads()
    runners = {"batched": run_batched, "loop": run_loop, "func": run_func}
    timings: dict[str, dict[int, list[float]]] = {name: {} for name in TRAINERS}
    outcomes: dict[str, tuple] = {}
    loads = []
    try:
        for threads in thread_counts(configured):
            torch.set_num_threads(threads)
            for name in TRAINERS:
                timings[name][threads] = []
            for r in range(options.runs):
                # Interleaved, the order rotating: a burst of load hits each side alike.
                for name in TRAINERS[r % 3 :] + TRAINERS[: r % 3]:
                    print(f"  training: {name}, {threads} thread(s) ...", flush=True)
                    loads.append(load_average()[0])
                    outcomes[name] = runners[name](data, slopes, seeds, epochs)
                    timings[name][threads].append(outcomes[name][0])
        # Where the time goes: one profiled epoch of each, at the timed runs' best thread counts.
        profiled = {}
        for name in TRAINERS:
            threads = best({t: median(v) for t, v in timings[name].items()})[0]
            torch.set_num_threads(threads)
            print(f"  training: profiling one {name} epoch, {threads} thread(s) ...", flush=True)
            runner = runners[name]
            profiled[name] = profile_kernels(lambda r=runner: r(data, slopes, seeds, 1))
            profiled[name]["threads"] = threads
        torch.set_num_threads(1)
        overhead = step_overhead(50 if options.quick else 200)
        # The equivalence check in float64, one thread (its speed is not measured).
        print("  training: float64 equivalence check ...", flush=True)
        data64 = api["MNIST1D"](
            data.x_train.double(), data.y_train, data.x_test.double(), data.y_test
        )
        outcomes64 = {
            name: runner(data64, slopes, seeds, FLOAT64_EPOCHS, torch.float64)
            for name, runner in runners.items()
        }
    finally:
        torch.set_num_threads(configured)

    seconds = {name: {t: median(v) for t, v in by.items()} for name, by in timings.items()}
    fastest = {name: best(by) for name, by in seconds.items()}
    loop_s, batched_s, func_s = (fastest[name][1] for name in ("loop", "batched", "func"))
    n_test = len(data.y_test)
    agreement = {}
    for precision, results_of in (("float32", outcomes), ("float64", outcomes64)):
        _, loop_acc, loop_loss, loop_models = results_of["loop"]
        for name in ("batched", "func"):
            _, acc, loss, stacked = results_of[name]
            entry = compare(loop_acc, loop_loss, acc, loss, n_test)
            entry["max_abs_parameter_difference"] = largest_parameter_difference(
                loop_models, stacked
            )
            agreement[f"{precision}" if name == "batched" else f"{precision}_func"] = entry
    agreement["float64"]["epochs"] = agreement["float64_func"]["epochs"] = FLOAT64_EPOCHS
    steps_per_epoch = -(-len(data.y_train) // BATCH_SIZE)
    batched_profile = profiled["batched"]
    arithmetic = sum(batched_profile[f"{group}_seconds"] for group in KERNELS)
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
        "test_examples": n_test,
        "steps_per_epoch": steps_per_epoch,
        "configured_threads": configured,
        # Times to 0.1 ms: a quick run's times are tenths of a second, and rounding them to
        # 0.01 s would change the speed-up they imply by up to 20%.
        **{
            f"{name}_seconds_by_threads": {str(t): round(v, 4) for t, v in seconds[name].items()}
            for name in TRAINERS
        },
        **{
            f"{name}_runs_seconds": {
                str(t): [round(x, 4) for x in v] for t, v in timings[name].items()
            }
            for name in TRAINERS
        },
        **{f"{name}_seconds": round(fastest[name][1], 4) for name in TRAINERS},
        **{f"{name}_threads": fastest[name][0] for name in TRAINERS},
        "speedup": round(loop_s / batched_s, 2),
        "speedup_same_threads": round(
            seconds["loop"][configured] / seconds["batched"][configured], 2
        ),
        "speedup_vs_func": round(func_s / batched_s, 2),
        "func_speedup": round(loop_s / func_s, 2),
        # Per epoch, from one profiled epoch (the profiler adds a little to each).
        "profile": {
            name: {
                "threads": entry["threads"],
                "seconds_per_epoch": round(entry["seconds"], 4),
                **{
                    f"{group}_seconds_per_epoch": round(entry[f"{group}_seconds"], 4)
                    for group in KERNELS
                },
            }
            for name, entry in profiled.items()
        },
        # CPU time per step on tiny tensors: what a step costs besides arithmetic.
        "overhead_ms_per_step": {k: round(v, 3) for k, v in overhead.items()},
        # The loop's measured time over the batched trainer's matrix-product time alone: the
        # speed-up of a batched trainer whose every other operation cost nothing.
        "speedup_ceiling": round(loop_s / (batched_profile["matmul_seconds"] * epochs), 2),
        # The same with the per-element kernels the loop runs too (optimizer, activations,
        # loss): the speed-up of a batched trainer with no overhead at all.
        "speedup_ceiling_arithmetic": round(loop_s / (arithmetic * epochs), 2),
        **agreement,
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
            "training:ahead_of_func",
            "batched trainer vs the torch.func ensemble, 40 models, each at its best thread count",
            results["speedup_vs_func"],
            1.0,
            ">=",
            "x",
        ),
        budget(
            "training:float64_parameters",
            "same results: largest parameter difference, batched vs loop, float64",
            agreement["float64"]["max_abs_parameter_difference"],
            FLOAT64_PARAMETER_TOLERANCE,
            "<=",
            "",
        ),
        budget(
            "training:float64_accuracy",
            "same results: largest final-accuracy difference, "
            "batched vs loop, float64 (test examples)",
            agreement["float64"]["max_accuracy_difference_examples"],
            0,
            "<=",
            "examples",
        ),
        budget(
            "training:func_float64_parameters",
            "same results: largest parameter difference, torch.func vs loop, float64",
            agreement["float64_func"]["max_abs_parameter_difference"],
            FLOAT64_PARAMETER_TOLERANCE,
            "<=",
            "",
        ),
    ]
    return results, budgets
