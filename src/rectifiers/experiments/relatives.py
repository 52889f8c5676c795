r"""ReLU, Leaky ReLU and PReLU against their relatives ELU, GELU, SiLU and RReLU.

Chapter 06 of the book compares the activations it names in one batched, paired-seed run
(every activation starts from the same seeds' weights and sees the same mini-batches):
:func:`compare_activations` trains them and records accuracy, zero and dead fractions, and
RReLU's accuracy in training mode (random slopes) next to its evaluation mode (the mean slope
:math:`11/48`); :func:`time_per_step` measures what one training step of each costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rectifiers._validation import check_positive_int, check_real
from rectifiers.batched import BatchedHistory, batched_mlp, grid, train_batched
from rectifiers.data import MNIST1D
from rectifiers.stacked import losses

__all__ = ["ActivationComparison", "compare_activations", "time_per_step"]

#: The activations of the chapter's comparison, in the order of its table.
ACTIVATIONS = (0.0, 0.01, "prelu", "rrelu", "elu", "gelu", "silu")


@dataclass
class ActivationComparison:
    r"""What :func:`compare_activations` measured; ``A`` activations, ``S`` seeds.

    Attributes:
        activations: the activations, in order (a slope, or a name such as ``"gelu"``).
        seeds: the seeds, in order.
        history: the trainer's record of all ``A * S`` models (activation-major); statistics
            are taken in evaluation mode, on the test split.
        test_accuracy: final test accuracy (evaluation mode), shape :math:`(A, S)`.
        train_accuracy: final accuracy on the training split (evaluation mode), :math:`(A, S)`.
        zero_fraction: final fraction of exactly-zero outputs per hidden layer, on the test
            split, shape :math:`(A, S, L)`.
        dead_fraction: final fraction of dead units per hidden layer, :math:`(A, S, L)`.
        train_mode_accuracy: final test accuracy with the models in *training* mode, where
            RReLU draws a random slope from :math:`U(1/8, 1/3)` for every element (the other
            activations are the same in both modes), shape :math:`(A, S)`.
    """

    activations: list
    seeds: list[int]
    history: BatchedHistory
    test_accuracy: torch.Tensor
    train_accuracy: torch.Tensor
    zero_fraction: torch.Tensor
    dead_fraction: torch.Tensor
    train_mode_accuracy: torch.Tensor


def compare_activations(
    data: MNIST1D,
    activations: Sequence = ACTIVATIONS,
    seeds: Sequence[int] = range(5),
    *,
    sizes: Sequence[int] = (40, 100, 100, 10),
    epochs: int = 15,
    lr: float = 1e-2,
    batch_size: int = 100,
    record_every: int | None = None,
    noise_seed: int = 0,
) -> ActivationComparison:
    r"""Train every (activation, seed) pair at once with Adam and measure the result.

    All models are built by :func:`rectifiers.batched.batched_mlp` from the same seeds, so the
    comparison between two activations is paired: seed :math:`s` starts from the same weights
    and sees the same mini-batches whatever its activation.

    Args:
        data: MNIST-1D (see :func:`rectifiers.data.load_mnist1d`).
        activations: anything ``batched_mlp`` accepts: slopes, ``"relu"``, ``"prelu"``,
            ``"prelu_channelwise"``, ``"elu"``, ``"gelu"``, ``"silu"``, ``"rrelu"``.
        seeds: non-negative ints, at least two for a confidence interval later.
        sizes: the layer widths.
        epochs: passes over the training set.
        lr: Adam's learning rate.
        batch_size: examples per mini-batch.
        record_every: record every this many steps (``None``: every epoch).
        noise_seed: seed of RReLU's random slopes (in training and in the training-mode
            evaluation).

    Returns:
        An :class:`ActivationComparison`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.
    """
    model_activations, model_seeds = grid(list(activations), list(seeds))
    model = batched_mlp(list(sizes), model_activations, model_seeds)
    history = train_batched(
        model, data, epochs=epochs, lr=lr, batch_size=batch_size, record_every=record_every,
        noise_seed=noise_seed,
    )  # fmt: skip
    shape = (len(activations), len(seeds))
    _, train_accuracy = model.evaluate(data.x_train, data.y_train)
    # Training mode: RReLU draws fresh random slopes for every test element.
    model.train()
    model.generator = torch.Generator().manual_seed(noise_seed + 1)
    with torch.no_grad():
        logits = torch.cat([model(x) for x in data.x_test.split(256)], dim=1)
    model.eval()
    train_mode = (logits.argmax(dim=2) == data.y_test).to(logits.dtype).mean(dim=1)
    return ActivationComparison(
        activations=list(model_activations[:: len(seeds)]),
        seeds=list(model_seeds[: len(seeds)]),
        history=history,
        test_accuracy=history.test_accuracy[-1].view(shape),
        train_accuracy=train_accuracy.view(shape),
        zero_fraction=history.zero_fraction[-1].view(*shape, -1),
        dead_fraction=history.dead_fraction[-1].view(*shape, -1),
        train_mode_accuracy=train_mode.view(shape),
    )


def time_per_step(
    data: MNIST1D,
    activations: Sequence = ACTIVATIONS,
    *,
    models: int = 5,
    sizes: Sequence[int] = (40, 100, 100, 10),
    batch_size: int = 100,
    steps: int = 20,
    repeats: int = 5,
    lr: float = 1e-2,
) -> dict:
    """Wall-clock milliseconds of one Adam training step of ``models`` stacked MLPs, per activation.

    Each activation gets its own stack of ``models`` networks (seeds 0, 1, ...), so the time is
    that activation's alone. One step is what :func:`rectifiers.batched.train_batched` does per
    mini-batch: forward, the models' summed cross-entropy, backward, ``Adam.step``. After one
    warm-up block, ``repeats`` blocks of ``steps`` steps are timed, and the median block
    divided by ``steps`` is returned: the median resists the hiccups of a shared machine, but
    the result still depends on the machine and its load, so it is never asserted anywhere.

    Args:
        data: MNIST-1D; the first mini-batches of its training split are used.
        activations: as for :func:`compare_activations`.
        models: networks per stack.
        sizes: the layer widths.
        batch_size: examples per step.
        steps: steps per timed block.
        repeats: timed blocks (the median is taken).
        lr: Adam's learning rate.

    Returns:
        A dict mapping each activation to milliseconds per step.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.
    """
    models = check_positive_int("models", models)
    steps, repeats = check_positive_int("steps", steps), check_positive_int("repeats", repeats)
    batch_size = check_positive_int("batch_size", batch_size)
    check_real("lr", lr)
    x, y = data.x_train[:batch_size], data.y_train[:batch_size]
    result = {}
    for activation in activations:
        kinds, seeds = grid([activation], range(models))
        model = batched_mlp(list(sizes), kinds, seeds).train()
        model.generator = torch.Generator().manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=lr)

        def block(model=model, opt=opt) -> float:
            start = time.perf_counter()
            for _ in range(steps):
                loss = losses(model(x), y).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            return time.perf_counter() - start

        block()  # warm-up: first-call allocations and kernel selection
        result[activation] = 1000 * statistics.median(block() for _ in range(repeats)) / steps
    return result
