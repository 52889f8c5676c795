r"""Does the negative slope still matter once a network has batch norm or skip connections?

Chapter 05 of the book trains the same deep MLP in several architectures (plain, with
``BatchNorm1d`` before every activation, with residual skip connections) and, within each, with
ReLU, Leaky ReLU and PReLU from the same seeds. :func:`normalisation_study` returns the test
accuracy and the dead fraction per layer of every model over training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rectifiers._validation import check_choice
from rectifiers.batched import batched_mlp, grid, train_batched
from rectifiers.data import MNIST1D

__all__ = ["ARCHITECTURES", "NormalisationStudy", "normalisation_study"]

#: The architectures compared: name -> keyword arguments of ``batched_mlp``.
ARCHITECTURES = {
    "plain": {},
    "batch norm": {"batch_norm": True},
    "residual": {"residual": True},
    "batch norm + residual": {"batch_norm": True, "residual": True},
}


@dataclass
class NormalisationStudy:
    r"""What :func:`normalisation_study` measured; :math:`C` architectures, :math:`R` records,
    :math:`A` activations, :math:`S` seeds, :math:`L` hidden layers.

    Attributes:
        architectures: the architectures' names (keys of :data:`ARCHITECTURES`), in order.
        activations: the activations, in order.
        seeds: the seeds, in order.
        steps: optimizer steps at each record, shape :math:`(R,)`.
        test_accuracy: shape :math:`(C, R, A, S)`.
        dead_fraction: the fraction of units of each hidden layer that are not positive on
            any test example, measured in evaluation mode (batch norm with its running
            statistics), i.e. on what the activation receives; shape :math:`(C, R, A, S, L)`.
    """

    architectures: list[str]
    activations: list
    seeds: list[int]
    steps: torch.Tensor
    test_accuracy: torch.Tensor
    dead_fraction: torch.Tensor


def normalisation_study(
    data: MNIST1D,
    architectures: Sequence[str] = ("plain", "batch norm", "residual"),
    activations: Sequence = (0.0, 0.01, "prelu"),
    seeds: Sequence[int] = range(4),
    *,
    sizes: Sequence[int] = (40, 64, 64, 64, 64, 64, 64, 10),
    epochs: int = 40,
    lr: float = 1e-2,
    batch_size: int = 250,
    record_every: int | None = None,
) -> NormalisationStudy:
    r"""Train each architecture with every (activation, seed) pair, with Adam.

    One batched run per architecture (batch norm and skip connections are shared by all models
    of a stack); within it every activation starts from the same seeds, so activations are
    compared on paired networks. A model with batch norm computes, in every hidden layer,
    :math:`h_k = \phi(\mathrm{BN}(W_k h_{k-1} + b_k))`; a residual one adds its input,
    :math:`h_k = h_{k-1} + \phi(\cdot)`, in every hidden layer after the first (whose width
    differs from the input's). All use PyTorch's default ``nn.Linear`` initialisation.

    Args:
        data: MNIST-1D (see :func:`rectifiers.data.load_mnist1d`).
        architectures: names from :data:`ARCHITECTURES`.
        activations: as ``batched_mlp`` accepts them (slopes, ``"prelu"``, ...).
        seeds: non-negative ints.
        sizes: the layer widths; residual architectures need equal hidden widths.
        epochs: passes over the training set.
        lr: Adam's learning rate.
        batch_size: examples per mini-batch.
        record_every: record every this many steps (``None``: every epoch).

    Returns:
        A :class:`NormalisationStudy`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.
    """
    if isinstance(architectures, str) or not isinstance(architectures, Sequence):
        raise TypeError(f"architectures must be a sequence of names, got {architectures!r}")
    if not architectures:
        raise ValueError("architectures must be non-empty")
    names = [
        check_choice(f"architectures[{i}]", name, tuple(ARCHITECTURES))
        for i, name in enumerate(architectures)
    ]
    model_activations, model_seeds = grid(list(activations), list(seeds))
    shape = (len(activations), len(seeds))
    accuracy, dead, steps = [], [], None
    for name in names:
        model = batched_mlp(list(sizes), model_activations, model_seeds, **ARCHITECTURES[name])
        history = train_batched(
            model, data, epochs=epochs, lr=lr, batch_size=batch_size, record_every=record_every
        )
        steps = history.steps
        accuracy.append(history.test_accuracy.view(-1, *shape))
        dead.append(history.dead_fraction.view(len(steps), *shape, -1))
    return NormalisationStudy(
        architectures=names,
        activations=list(model_activations[:: len(seeds)]),
        seeds=list(model_seeds[: len(seeds)]),
        steps=steps,
        test_accuracy=torch.stack(accuracy),
        dead_fraction=torch.stack(dead),
    )
