r"""A sweep over Leaky ReLU's negative slope, with ReLU twins and their perturbed controls.

:func:`sweep_slopes` trains one MLP per (slope, seed) pair, softmax regression per seed, and
ReLU *controls*: the ReLU network of each seed with every initial weight and bias multiplied
by :math:`1 + \varepsilon \xi`, :math:`\xi \sim \mathcal{N}(0, 1)`. All networks of a seed
share their mini-batches, and all are trained in one batched computation.

The controls answer a question the sweep alone cannot. A network with a small slope, say
:math:`\alpha = 0.001`, ends up predicting differently from its ReLU twin on many test
signals. Is that the leak, or would *any* perturbation of that size do the same, because
training amplifies small differences? A relative perturbation :math:`\varepsilon` of the
weights changes each pre-activation by a relative :math:`O(\varepsilon)`, as a leak
:math:`\alpha` changes a layer's outputs on its negative side by :math:`\alpha |z|`; if the
perturbed ReLU twins disagree with the unperturbed ones as much as the leaky networks do,
the disagreement says nothing specific about the leak.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rectifiers._validation import check_non_negative_int, check_real
from rectifiers.batched import BatchedMLP, batched_mlp, train_batched
from rectifiers.data import MNIST1D
from rectifiers.training import mlp

__all__ = ["SlopeSweep", "agreement", "perturbed", "sweep_slopes"]


@dataclass(frozen=True)
class SlopeSweep:
    r"""What :func:`sweep_slopes` measured, for :math:`P` slopes, :math:`S` seeds and
    :math:`E` control perturbations, on the held-out signals after training.

    Attributes:
        slopes: the :math:`P` slopes; ``slopes[0]`` is 0 (ReLU, the twin of every row).
        seeds: the :math:`S` seeds.
        epsilons: the :math:`E` relative perturbations of the ReLU controls.
        steps: optimizer steps per network.
        accuracy: :math:`(P, S)` test accuracy.
        negative: :math:`(P, S, L)` fraction of negative pre-activations per hidden layer.
        dead: :math:`(P, S, L)` fraction of dead units per hidden layer.
        agreement: :math:`(P, S)` share of test signals on which the network predicts the
            same class as the ReLU network of the same seed.
        agreement_at_init: :math:`(P, S)` the same, before training.
        control_accuracy: :math:`(E, S)` test accuracy of the perturbed ReLU networks.
        control_agreement: :math:`(E, S)` their agreement with the unperturbed ReLU network.
        control_agreement_at_init: :math:`(E, S)` the same, before training.
        seed_agreement: :math:`(S (S - 1) / 2,)` agreement of the ReLU networks of every pair
            of different seeds.
        linear_accuracy: :math:`(S,)` test accuracy of softmax regression.
        nets: the trained networks: model ``p * S + s`` is slope ``p``, seed ``s``; the
            controls follow, ``P * S + e * S + s``.
    """

    slopes: list[float]
    seeds: list[int]
    epsilons: list[float]
    steps: int
    accuracy: torch.Tensor
    negative: torch.Tensor
    dead: torch.Tensor
    agreement: torch.Tensor
    agreement_at_init: torch.Tensor
    control_accuracy: torch.Tensor
    control_agreement: torch.Tensor
    control_agreement_at_init: torch.Tensor
    seed_agreement: torch.Tensor
    linear_accuracy: torch.Tensor
    nets: BatchedMLP


def agreement(predictions, reference):
    r"""The share of examples on which two sets of predicted classes agree.

    Args:
        predictions: ``int64`` classes of shape :math:`(*, N)`.
        reference: ``int64`` classes broadcastable to ``predictions``.

    Returns:
        A float64 tensor of shape :math:`(*)`.

    Example:
        >>> agreement(torch.tensor([[1, 2, 3, 4]]), torch.tensor([1, 2, 0, 0]))
        tensor([0.5000], dtype=torch.float64)
    """
    for name, t in (("predictions", predictions), ("reference", reference)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64:
            raise TypeError(f"{name} must be an int64 tensor of classes, got {type(t).__name__}")
    return (predictions == reference).double().mean(dim=-1)


def perturbed(net, epsilon: float, seed: int):
    r"""A copy of ``net`` with every parameter :math:`w` replaced by :math:`w (1 + \varepsilon
    \xi)`, :math:`\xi \sim \mathcal{N}(0, 1)` drawn per entry from a generator seeded with
    ``seed``.

    Args:
        net: a ``torch.nn.Module``.
        epsilon: the relative size :math:`\varepsilon \ge 0` of the perturbation.
        seed: the seed of the noise.

    Returns:
        The perturbed copy; ``net`` is unchanged.

    Example:
        >>> net = mlp([4, 3, 2], 0.0, seed=0)
        >>> copy = perturbed(net, 1e-3, seed=1)
        >>> bool((copy[0].weight / net[0].weight - 1).abs().max() < 1e-2)
        True
    """
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    epsilon = check_real("epsilon", epsilon)
    if epsilon < 0:
        raise ValueError(f"epsilon must be non-negative, got {epsilon!r}")
    g = torch.Generator().manual_seed(check_non_negative_int("seed", seed))
    out = copy.deepcopy(net)
    with torch.no_grad():
        for p in out.parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.mul_(1 + epsilon * noise)
    return out


# deliberately repeated: the leading parameters (data, sizes, slopes, seeds, *, epochs, lr) are
# those of chapter 03's other experiment, discriminator.discriminator_gradients, written out so
# that each signature shows them; sharing them would take **kwargs, which hide them.
def sweep_slopes(
    data: MNIST1D,
    sizes: Sequence[int],
    slopes: Sequence[float],
    seeds: Sequence[int],
    *,
    epochs: int,
    lr: float,
    epsilons: Sequence[float] = (),
    noise_seed: int = 1_000,
) -> SlopeSweep:
    r"""Train an MLP per (slope, seed), softmax regression per seed and perturbed ReLU controls.

    Model :math:`(p, s)` is ``mlp(sizes, slopes[p], seed=seeds[s])``; control :math:`(e, s)`
    is the ReLU network of seed ``seeds[s]`` passed through :func:`perturbed` with
    ``epsilons[e]`` (noise seed ``noise_seed + 1000 e + s``). Every network of a seed is
    trained on the same mini-batches with Adam (:func:`rectifiers.batched.train_batched`), all
    of them in one batched computation; softmax regression (``[sizes[0], sizes[-1]]``) in
    another.

    Args:
        data: trained on its training split, measured on its test split.
        sizes: the MLP's layer widths.
        slopes: the fixed negative slopes; the first must be 0 (ReLU, the reference).
        seeds: at least two seeds.
        epochs: passes over the training set.
        lr: Adam's learning rate.
        epsilons: relative perturbations of the ReLU controls (may be empty).
        noise_seed: the base seed of the controls' noise.

    Returns:
        A :class:`SlopeSweep`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``slopes[0]`` is not 0, fewer than two seeds are given or an epsilon
            is negative.

    Example:
        >>> from rectifiers.data import load_mnist1d
        >>> data = load_mnist1d().subset(300, 200)
        >>> sweep = sweep_slopes(data, [40, 16, 10], [0.0, 0.1], [0, 1], epochs=1, lr=0.01,
        ...                      epsilons=[1e-3])
        >>> sweep.accuracy.shape, sweep.control_agreement.shape, sweep.seed_agreement.shape
        (torch.Size([2, 2]), torch.Size([1, 2]), torch.Size([1]))
    """
    slopes = [check_real(f"slopes[{i}]", a) for i, a in enumerate(slopes)]
    if not slopes or slopes[0] != 0:
        raise ValueError(f"slopes must start with 0 (ReLU, the reference), got {slopes}")
    seeds = [check_non_negative_int(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
    if len(seeds) < 2:
        raise ValueError(f"seeds must hold at least two seeds, got {seeds}")
    epsilons = [check_real(f"epsilons[{i}]", e) for i, e in enumerate(epsilons)]
    if any(e < 0 for e in epsilons):
        raise ValueError(f"epsilons must be non-negative, got {epsilons}")
    n_slopes, n_seeds = len(slopes), len(seeds)
    models, model_seeds = [], []
    for slope, seed in itertools.product(slopes, seeds):
        models.append(mlp(sizes, slope, seed=seed))
        model_seeds.append(seed)
    for e, epsilon in enumerate(epsilons):
        for s, seed in enumerate(seeds):
            relu = models[s]  # slopes[0] == 0: the first n_seeds models are the ReLU ones
            models.append(perturbed(relu, epsilon, noise_seed + 1000 * e + s))
            model_seeds.append(seed)
    nets = BatchedMLP(models, model_seeds)
    with torch.no_grad():
        before = nets(data.x_test).argmax(dim=2)
    history = train_batched(nets, data, epochs=epochs, lr=lr)
    with torch.no_grad():
        after = nets(data.x_test).argmax(dim=2)
    linear = batched_mlp([sizes[0], sizes[-1]], [0.0] * n_seeds, seeds)
    linear_history = train_batched(linear, data, epochs=epochs, lr=lr)

    sweep = n_slopes * n_seeds
    relu_before, relu_after = before[:n_seeds], after[:n_seeds]

    def by_slope(t: torch.Tensor) -> torch.Tensor:
        return t[:sweep].view(n_slopes, n_seeds, *t.shape[1:])

    def by_control(t: torch.Tensor) -> torch.Tensor:
        return t[sweep:].view(len(epsilons), n_seeds, *t.shape[1:])

    pairs = list(itertools.combinations(range(n_seeds), 2))
    accuracy = history.test_accuracy[-1].double()
    return SlopeSweep(
        slopes=slopes,
        seeds=seeds,
        epsilons=epsilons,
        steps=int(history.steps[-1]),
        accuracy=by_slope(accuracy),
        negative=by_slope(history.negative_fraction[-1].double()),
        dead=by_slope(history.dead_fraction[-1].double()),
        agreement=agreement(by_slope(after), relu_after),
        agreement_at_init=agreement(by_slope(before), relu_before),
        control_accuracy=by_control(accuracy),
        control_agreement=agreement(by_control(after), relu_after),
        control_agreement_at_init=agreement(by_control(before), relu_before),
        seed_agreement=torch.stack([agreement(relu_after[i], relu_after[j]) for i, j in pairs]),
        linear_accuracy=linear_history.test_accuracy[-1].double(),
        nets=nets,
    )
