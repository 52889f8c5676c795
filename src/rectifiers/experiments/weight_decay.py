r"""What weight decay does to a PReLU slope: closed forms, optimizer runs and a training run.

Chapter 06 of the book draws its decay figures and tables from the functions here:

- :func:`sgd_decay` and :func:`decay_half_life`: the trajectory of a parameter that receives
  no data gradient under ``torch.optim.SGD`` with weight decay, with or without (heavy-ball)
  momentum, in closed form;
- :func:`zero_gradient_slopes`: the same trajectories measured with PyTorch's optimizers;
- :func:`decay_exemption`: PReLU networks trained with AdamW with and without decay on the
  slopes, several arms and seeds in one batched run.
"""

from __future__ import annotations

import cmath
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from rectifiers._validation import (
    check_choice,
    check_non_negative_real,
    check_positive_int,
    check_real,
)
from rectifiers.batched import BatchedHistory, batched_mlp, grid, train_batched
from rectifiers.data import MNIST1D

__all__ = [
    "ExemptionResult",
    "decay_exemption",
    "decay_half_life",
    "sgd_decay",
    "zero_gradient_slopes",
]


def _check_momentum(momentum: object) -> float:
    momentum = check_non_negative_real("momentum", momentum)
    if momentum >= 1:
        raise ValueError(f"momentum must be below 1, got {momentum!r}")
    return momentum


def _roots(rate: float, momentum: float) -> tuple[complex, complex]:
    """The roots of :math:`r^2 - (1 + \\mu - \\eta\\lambda) r + \\mu`, largest modulus first."""
    trace = 1 + momentum - rate
    root = cmath.sqrt(trace * trace - 4 * momentum)
    first, second = (trace + root) / 2, (trace - root) / 2
    return (first, second) if abs(first) >= abs(second) else (second, first)


def sgd_decay(a0, lr, weight_decay, steps, momentum=0.0) -> torch.Tensor:
    r"""A parameter with zero data gradient under ``torch.optim.SGD`` with weight decay.

    The gradient is :math:`g_t = \lambda a_t` (the L2 penalty alone). Without momentum
    every step is :math:`a_{t+1} = (1 - \eta\lambda)\, a_t`, so
    :math:`a_t = a_0 (1 - \eta\lambda)^t`. With momentum :math:`\mu` PyTorch keeps a buffer
    :math:`b_t = \mu b_{t-1} + g_t` (:math:`b_0 = g_0`, no dampening, no Nesterov) and
    steps :math:`a_{t+1} = a_t - \eta b_t`. Eliminating :math:`b` gives the linear recurrence

    .. math::
        a_{t+1} = (1 + \mu - \eta\lambda)\, a_t - \mu\, a_{t-1}, \qquad
        a_1 = (1 - \eta\lambda)\, a_0,

    whose solution is :math:`a_t = c_1 r_1^t + c_2 r_2^t` with :math:`r_{1,2}` the roots of
    :math:`r^2 - (1 + \mu - \eta\lambda) r + \mu = 0`. For small :math:`\eta\lambda` the larger
    root is :math:`r_1 \approx 1 - \eta\lambda / (1 - \mu)`: momentum multiplies the decay
    rate by :math:`1 / (1 - \mu)`, ten times for :math:`\mu = 0.9`.

    Args:
        a0: the starting value :math:`a_0` (a real number).
        lr: the learning rate :math:`\eta \geq 0`.
        weight_decay: :math:`\lambda \geq 0`.
        steps: the number of steps :math:`T \geq 0`.
        momentum: :math:`0 \leq \mu < 1`.

    Returns:
        :math:`a_0, \ldots, a_T`, a float64 tensor of shape :math:`(T + 1,)`.

    Raises:
        TypeError: if an argument is not a number (``steps`` not an int).
        ValueError: if an argument is out of range.

    Example:
        >>> sgd_decay(1.0, 0.1, 0.5, 3)
        tensor([1.0000, 0.9500, 0.9025, 0.8574], dtype=torch.float64)
        >>> sgd_decay(1.0, 0.1, 0.5, 3, momentum=0.9)
        tensor([1.0000, 0.9500, 0.8575, 0.7314], dtype=torch.float64)
    """
    a0 = check_real("a0", a0)
    rate = check_non_negative_real("lr", lr) * check_non_negative_real("weight_decay", weight_decay)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__} {steps!r}")
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    momentum = _check_momentum(momentum)
    first, second = _roots(rate, momentum)
    a1 = (1 - rate) * a0
    t = torch.arange(steps + 1, dtype=torch.float64)
    if abs(first - second) < 1e-12:  # a double root r: a_t = (a_0 + c t) r^t
        r = first.real
        c2 = a1 / r - a0 if r else 0.0
        return (a0 + c2 * t) * torch.tensor(r, dtype=torch.float64) ** t
    c1 = (a1 - second * a0) / (first - second)
    c2 = (first * a0 - a1) / (first - second)
    powers = torch.tensor([first, second], dtype=torch.complex128)[:, None] ** t
    powers[:, 0] = 1  # r^0 = 1, also for r = 0 (complex 0 ** 0 is NaN)
    values = c1 * powers[0] + c2 * powers[1]
    return values.real.contiguous()


def decay_half_life(lr, weight_decay, momentum=0.0) -> float:
    r"""Steps for the decay of :func:`sgd_decay` to halve a parameter, at its asymptotic rate.

    :math:`T_{1/2} = \ln 2 / (-\ln |r_1|)`, with :math:`r_1` the larger root (for
    :math:`\mu = 0`, :math:`r_1 = 1 - \eta\lambda`, the exact half-life of the geometric
    decay). For small :math:`\eta\lambda` this is about :math:`(1 - \mu) \ln 2 / (\eta\lambda)`.

    Args:
        lr: the learning rate :math:`\eta \geq 0`.
        weight_decay: :math:`\lambda \geq 0`.
        momentum: :math:`0 \leq \mu < 1`.

    Returns:
        The half-life in steps (``math.inf`` if nothing decays).

    Raises:
        TypeError: if an argument is not a real number.
        ValueError: if an argument is out of range.

    Example:
        >>> round(decay_half_life(0.1, 5e-4)), round(decay_half_life(0.1, 5e-4, momentum=0.9))
        (13863, 1380)
    """
    rate = check_non_negative_real("lr", lr) * check_non_negative_real("weight_decay", weight_decay)
    first, _ = _roots(rate, _check_momentum(momentum))
    if rate == 0 or abs(first) >= 1:
        return math.inf
    return math.log(2) / -math.log(abs(first))


OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def zero_gradient_slopes(optimizer, a0s, weight_decays, *, lr, steps, momentum=0.0):
    r"""PReLU slopes that receive no data gradient, moved by a PyTorch optimizer for ``steps``.

    The PReLU's inputs are all positive, so its slopes never multiply anything and their data
    gradient is exactly zero: whatever happens to them is weight decay's doing. One optimizer
    runs every combination at once, in float64: each weight decay is a parameter group holding
    one PReLU with a channel per starting slope (SGD, Adam and AdamW update every entry on its
    own, so the runs do not interact).

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"`` (``torch.optim.SGD``, ``Adam``,
            ``AdamW``, with their ``weight_decay``).
        a0s: the starting slopes (real numbers).
        weight_decays: the decay strengths :math:`\lambda \geq 0`.
        lr: the learning rate.
        steps: the number of optimizer steps.
        momentum: SGD's momentum (must be 0 for Adam and AdamW).

    Returns:
        :math:`a_t` for :math:`t = 0 \ldots` ``steps``, a float64 tensor of shape
        ``(steps + 1, len(weight_decays), len(a0s))``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value, or a data gradient was not zero.

    Example:
        >>> a = zero_gradient_slopes("sgd", [1.0], [0.5], lr=0.1, steps=3, momentum=0.9)
        >>> a[:, 0, 0]
        tensor([1.0000, 0.9500, 0.8575, 0.7314], dtype=torch.float64)
    """
    optimizer = check_choice("optimizer", optimizer, tuple(OPTIMIZERS))
    a0s, weight_decays = _reals("a0s", a0s), _reals("weight_decays", weight_decays)
    for i, wd in enumerate(weight_decays):
        check_non_negative_real(f"weight_decays[{i}]", wd)
    lr, steps = check_non_negative_real("lr", lr), check_positive_int("steps", steps)
    momentum = _check_momentum(momentum)
    if momentum and optimizer != "sgd":
        raise ValueError(f"momentum applies to 'sgd' only, got {momentum} with {optimizer!r}")
    acts = [nn.PReLU(len(a0s), dtype=torch.float64) for _ in weight_decays]
    with torch.no_grad():
        for act in acts:
            act.weight.copy_(torch.tensor(a0s, dtype=torch.float64))
    groups = [
        {"params": act.parameters(), "weight_decay": wd}
        for act, wd in zip(acts, weight_decays, strict=True)
    ]
    extra = {"momentum": momentum} if optimizer == "sgd" else {}
    opt = OPTIMIZERS[optimizer](groups, lr=lr, **extra)
    x = torch.linspace(0.1, 1.0, 32, dtype=torch.float64)[:, None].expand(-1, len(a0s))
    values = [torch.stack([act.weight.detach().clone() for act in acts])]
    for _ in range(steps):
        opt.zero_grad()
        sum(act(x).sum() for act in acts).backward()
        if any((act.weight.grad != 0).any() for act in acts):  # pragma: no cover
            raise ValueError("a slope received a data gradient: the inputs must be positive")
        opt.step()
        values.append(torch.stack([act.weight.detach().clone() for act in acts]))
    return torch.stack(values)


def _reals(name: str, values: object) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise TypeError(f"{name} must be a non-empty sequence of real numbers, got {values!r}")
    return [check_real(f"{name}[{i}]", v) for i, v in enumerate(values)]


@dataclass
class ExemptionResult:
    r"""What :func:`decay_exemption` measured; ``A`` arms, ``S`` seeds, ``R`` records.

    Attributes:
        arms: the arms' names, e.g. ``"no weight decay"``, ``"decay on everything, λ = 0.05"``,
            ``"slopes exempt, λ = 0.05"``.
        weight_decays: per arm, the decay of the weights and biases and that of the slopes.
        history: the batched trainer's record of all ``A * S`` models (arm-major).
        steps: optimizer steps at each record, shape :math:`(R,)`.
        test_accuracy: shape :math:`(R, A, S)`.
        mean_abs_slope: :math:`\frac{1}{d}\sum_j |a_j|` per hidden layer, shape
            :math:`(R, A, S, L)`.
        final_slopes: every unit's slope after training, shape :math:`(A, S, L, d)`.
        weight_norm: Frobenius norm of each layer's weight after training, shape
            :math:`(A, S, L + 1)`.
    """

    arms: list[str]
    weight_decays: list[tuple[float, float]]
    history: BatchedHistory
    steps: torch.Tensor
    test_accuracy: torch.Tensor
    mean_abs_slope: torch.Tensor
    final_slopes: torch.Tensor
    weight_norm: torch.Tensor


@contextlib.contextmanager
def _per_model_decay(model, lr: float, weight_rates: torch.Tensor, slope_rates: torch.Tensor):
    """Decoupled weight decay with a strength per stacked model, while the context is open.

    ``train_batched`` takes one weight decay for all models. AdamW's decoupled decay is the
    step ``p.mul_(1 - lr * wd)`` taken before its Adam update, which depends only on the
    gradients; so running AdamW with ``weight_decay=0`` and multiplying model ``m``'s rows by
    ``1 - lr * wd_m`` in a pre-step hook is AdamW with a decay per model. The hook is global
    to ``torch.optim`` (the trainer builds its optimizer inside), so it acts only on an
    optimizer holding this model's tensors, and is removed on exit.
    """
    weights = [*model.weights, *model.biases]
    slopes = list(model.slopes.values())
    ours = {id(p) for p in weights + slopes}

    def shrink(tensors: list[torch.Tensor], factors: torch.Tensor) -> None:
        for p in tensors:
            p.mul_(factors.to(p.dtype).view(-1, *[1] * (p.dim() - 1)))

    weight_factors, slope_factors = 1 - lr * weight_rates, 1 - lr * slope_rates

    def hook(optimizer, args, kwargs):
        if any(id(p) in ours for group in optimizer.param_groups for p in group["params"]):
            with torch.no_grad():
                shrink(weights, weight_factors)
                shrink(slopes, slope_factors)

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def decay_exemption(
    data: MNIST1D,
    weight_decays: Sequence[float],
    *,
    sizes: Sequence[int] = (40, 100, 100, 10),
    seeds: Sequence[int] = range(5),
    epochs: int = 60,
    lr: float = 1e-2,
    record_every: int = 200,
) -> ExemptionResult:
    r"""Channel-wise PReLU MLPs trained with AdamW, with and without decay on the slopes.

    The arms are *no weight decay*, and for each :math:`\lambda` in ``weight_decays``:
    *decay on everything* (weights, biases and slopes, what
    ``torch.optim.AdamW(model.parameters(), weight_decay=λ)`` does) and *slopes exempt*
    (weights and biases only). Every arm trains the same seeds, so arm :math:`i`, seed
    :math:`s` starts from the same network and sees the same mini-batches in every arm: the
    comparisons are paired. All arms and seeds train at once in one batched run
    (:func:`rectifiers.batched.train_batched`), each model with its own decoupled decay.

    Args:
        data: MNIST-1D (see :func:`rectifiers.data.load_mnist1d`).
        weight_decays: the strengths :math:`\lambda > 0` to compare.
        sizes: the layer widths; every hidden layer has channel-wise PReLU starting at 0.25.
        seeds: the seeds (non-negative ints), at least one.
        epochs: passes over the training set.
        lr: AdamW's learning rate.
        record_every: record test accuracy and slopes every this many steps.

    Returns:
        An :class:`ExemptionResult` with ``1 + 2 * len(weight_decays)`` arms.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.
    """
    decays = _reals("weight_decays", weight_decays)
    for i, wd in enumerate(decays):
        if check_non_negative_real(f"weight_decays[{i}]", wd) == 0:
            raise ValueError(
                f"weight_decays[{i}] must be positive (the no-decay arm is always run)"
            )
    lr = check_non_negative_real("lr", lr)
    arms, rates = ["no weight decay"], [(0.0, 0.0)]
    for wd in decays:
        arms += [f"decay on everything, λ = {wd:g}", f"slopes exempt, λ = {wd:g}"]
        rates += [(wd, wd), (wd, 0.0)]
    hidden = list(sizes)[1:-1]
    if not hidden or len(set(hidden)) != 1:
        raise ValueError(f"sizes must have hidden layers of one width, got {list(sizes)}")
    seeds = list(seeds)
    activations, model_seeds = grid(["prelu_channelwise"] * len(arms), seeds)
    model = batched_mlp(list(sizes), activations, model_seeds)
    per_model = torch.tensor(rates, dtype=torch.float64).repeat_interleave(len(seeds), dim=0)
    records = []

    def mean_abs(step, net):
        layers = [net.slope(k).abs().mean(dim=1) for k in range(net.num_hidden)]
        records.append(torch.stack(layers, dim=1).detach())

    with _per_model_decay(model, lr, per_model[:, 0], per_model[:, 1]):
        history = train_batched(
            model, data, epochs=epochs, lr=lr, optimizer="adamw", weight_decay=0.0,
            slope_weight_decay=0.0, record_every=record_every, callback=mean_abs,
        )  # fmt: skip
    shape = (len(arms), len(seeds))
    slopes = torch.stack([model.slope(k).detach() for k in range(model.num_hidden)], dim=1)
    norms = torch.stack([w.detach().flatten(1).norm(dim=1) for w in model.weights], dim=1)
    return ExemptionResult(
        arms=arms,
        weight_decays=rates,
        history=history,
        steps=history.steps,
        test_accuracy=history.test_accuracy.view(-1, *shape),
        mean_abs_slope=torch.stack(records).view(len(records), *shape, -1),
        final_slopes=slopes.view(*shape, *slopes.shape[1:]),
        weight_norm=norms.view(*shape, -1),
    )
