r"""How the size of a signal, and its dependence on the input, change over many layers.

Chapter 05 of the book draws its depth figures from the two functions here:

- :func:`log_second_moments`: the second moment :math:`\mathbb{E}[y_l^2]` of the
  pre-activations of every layer of a deep, bias-free stack of ``Linear`` layers and
  Leaky ReLUs, for several initialisations and slopes at once (the variance argument of He et al.
  (2015) predicts a constant factor per layer);
- :func:`default_init_signal`: the same stack with PyTorch's default ``nn.Linear``
  initialisation, once without and once with its default biases, recording the size of the
  signal and how much of it still depends on the input.

Both compute every configuration in one batched matrix product per layer, in float32 (the
precision networks are trained in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rectifiers._validation import check_positive_int, check_real
from rectifiers.functional import prelu
from rectifiers.init import kaiming_std

__all__ = [
    "DISTRIBUTIONS",
    "INITS",
    "DefaultInitSignal",
    "SecondMoments",
    "default_init_signal",
    "factor_per_layer",
    "log_second_moments",
]

#: The initialisations compared by :func:`log_second_moments`: name -> the standard deviation of
#: a weight in a layer with fan-in ``n`` followed by a rectifier with slope ``a``.
INITS: dict[str, Callable[[float, int], float]] = {
    "matched gain": lambda a, n: kaiming_std(n, a),
    "ReLU gain": lambda a, n: kaiming_std(n, 0.0),
    "PyTorch default": lambda a, n: 1 / math.sqrt(3 * n),
}
#: The distribution each initialisation draws from: He et al.'s normal, and the uniform
#: distribution of ``nn.Linear``'s ``kaiming_uniform_(weight, a=math.sqrt(5))``.
DISTRIBUTIONS = {"matched gain": "normal", "ReLU gain": "normal", "PyTorch default": "uniform"}
#: The factor per layer that the variance argument predicts, :math:`\frac{1+a^2}{2} n
#: \operatorname{Var}[w]`, for each initialisation.
FACTORS: dict[str, Callable[[float], float]] = {
    "matched gain": lambda a: 1.0,
    "ReLU gain": lambda a: 1 + a * a,
    "PyTorch default": lambda a: (1 + a * a) / 6,
}


def _check_slopes(slopes: object) -> list[float]:
    if isinstance(slopes, (str, bytes)) or not isinstance(slopes, Sequence):
        raise TypeError(f"slopes must be a sequence of real numbers, got {type(slopes).__name__}")
    if not slopes:
        raise ValueError("slopes must be non-empty")
    return [check_real(f"slopes[{j}]", a) for j, a in enumerate(slopes)]


def _check_generator(generator: object) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def factor_per_layer(log_moment: torch.Tensor) -> dict[str, torch.Tensor]:
    r"""Three estimates of the constant factor per layer from :math:`\log \mathbb{E}[y_l^2]`.

    With :math:`r_l = \mathbb{E}[y_{l+1}^2] / \mathbb{E}[y_l^2]` over :math:`L` layers:

    - ``"geometric"``: :math:`\exp(\frac{1}{L-1} \sum_l \log r_l)`, the geometric mean;
    - ``"fitted"``: :math:`\exp(\beta)` for the least-squares line
      :math:`\log \mathbb{E}[y_l^2] \approx \alpha + \beta l`;
    - ``"arithmetic"``: :math:`\frac{1}{L-1} \sum_l r_l`.

    Args:
        log_moment: a float tensor of shape :math:`(*, L)`, :math:`L \geq 2`, the natural
            logarithm of a second moment per layer (last dimension).

    Returns:
        A dict of those three names to tensors of shape :math:`(*)`.

    Raises:
        TypeError: if ``log_moment`` is not a floating-point tensor.
        ValueError: if it has fewer than two layers.

    Example:
        >>> log_m = torch.arange(4.0).log1p()  # E[y^2] = 1, 2, 3, 4
        >>> {k: round(v.item(), 4) for k, v in factor_per_layer(log_m).items()}
        {'geometric': 1.5874, 'fitted': 1.5784, 'arithmetic': 1.6111}
    """
    if not isinstance(log_moment, torch.Tensor) or not log_moment.is_floating_point():
        raise TypeError(f"log_moment must be a floating-point tensor, got {log_moment!r:.60}")
    if log_moment.dim() == 0 or log_moment.shape[-1] < 2:
        raise ValueError(
            f"log_moment must have at least 2 layers in its last dimension, "
            f"got shape {tuple(log_moment.shape)}"
        )
    log_ratio = log_moment[..., 1:] - log_moment[..., :-1]
    depth = torch.arange(log_moment.shape[-1], dtype=log_moment.dtype)
    centred = depth - depth.mean()
    slope = (log_moment * centred).sum(-1) / centred.square().sum()
    return {
        "geometric": log_ratio.mean(-1).exp(),
        "fitted": slope.exp(),
        "arithmetic": log_ratio.exp().mean(-1),
    }


@dataclass
class SecondMoments:
    r"""What :func:`log_second_moments` measured.

    Attributes:
        inits: the initialisations' names, in order (keys of :data:`INITS`).
        slopes: the negative slopes, in order.
        log_moment: :math:`\log \mathbb{E}[y_l^2]` (float64) of layers :math:`l = 1 \ldots L`,
            shape (initialisation, slope, seed, layer).
        theory: the predicted factor per layer, shape (initialisation, slope).
    """

    inits: list[str]
    slopes: list[float]
    log_moment: torch.Tensor
    theory: torch.Tensor

    def factors(self) -> dict[str, torch.Tensor]:
        """:func:`factor_per_layer` of every network, each of shape (init, slope, seed)."""
        return factor_per_layer(self.log_moment)


def log_second_moments(
    slopes: Sequence[float],
    inits: Sequence[str] = tuple(INITS),
    *,
    depth: int = 50,
    width: int = 256,
    batch: int = 32,
    seeds: int = 8,
    generator: torch.Generator | None = None,
) -> SecondMoments:
    r"""Second moment of the pre-activations of every layer of deep bias-free rectifier stacks.

    Each network is ``depth`` layers :math:`y_l = W_l x_l`, :math:`x_{l+1} = f_a(y_l)`, of
    width :math:`n` = ``width``, with :math:`f_a(y) = \max(0, y) + a \min(0, y)` and no
    biases, fed a batch of standard normal inputs. Networks with the same initialisation and
    seed share their weights across the slopes, so the slopes are compared on the same draws.
    The weights are drawn with unit variance and the standard deviation enters as a factor
    (:math:`\mathbb{E}[y_l^2] = \operatorname{Var}[w]\, \mathbb{E}[z_l^2]` for
    :math:`z_l = W_l x_l / \operatorname{std}[w]`). Over 50 layers the second moment spans
    more than fifty orders of magnitude, beyond float32, so after each layer the signal is
    rescaled to unit second moment and the logarithm of the scale is kept in float64: exact,
    because :math:`f_a(c\, y) = c\, f_a(y)` for :math:`c > 0` and there are no biases.

    Args:
        slopes: the negative slopes :math:`a` (real numbers).
        inits: names from :data:`INITS` (``"matched gain"``, ``"ReLU gain"``,
            ``"PyTorch default"``).
        depth: number of layers :math:`L`.
        width: units per layer (every layer's fan-in).
        batch: inputs per network.
        seeds: independent networks per (initialisation, slope).
        generator: the random source (a fresh one seeded with 0 if ``None``).

    Returns:
        A :class:`SecondMoments`; ``log_moment`` has shape ``(len(inits), len(slopes), seeds,
        depth)``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if a count is not positive, a list is empty or an init is unknown.

    Example:
        >>> result = log_second_moments([0.0, 1.0], ["matched gain"], depth=3, width=8,
        ...                              batch=4, seeds=2)
        >>> tuple(result.log_moment.shape)
        (1, 2, 2, 3)
    """
    slopes = _check_slopes(slopes)
    if isinstance(inits, (str, bytes)) or not isinstance(inits, Sequence) or not inits:
        raise TypeError(f"inits must be a non-empty sequence of names from {tuple(INITS)}")
    for name in inits:
        if name not in INITS:
            raise ValueError(f"inits entries must be in {tuple(INITS)}, got {name!r}")
    depth, width = check_positive_int("depth", depth), check_positive_int("width", width)
    batch, seeds = check_positive_int("batch", batch), check_positive_int("seeds", seeds)
    generator = _check_generator(generator)
    n_i, n_s, n_a, n_b, n_w = len(inits), seeds, len(slopes), batch, width
    log_var_w = torch.tensor(
        [[2 * math.log(INITS[name](a, n_w)) for a in slopes] for name in inits],
        dtype=torch.float64,
    ).view(n_i, 1, n_a)
    slope_tensor = torch.tensor(slopes)
    x = torch.randn(1, n_s, 1, n_b, n_w, generator=generator).expand(n_i, n_s, n_a, n_b, n_w)
    x = x.contiguous()
    w = torch.empty(n_i, n_s, n_w, n_w)
    # Consecutive inits with the same distribution are drawn in one call, so the random stream
    # is the one the chapter's original (inline) version of this experiment consumed.
    runs: list[list] = []
    for i, name in enumerate(inits):
        if runs and runs[-1][2] == DISTRIBUTIONS[name]:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, DISTRIBUTIONS[name]])
    bound = math.sqrt(3)  # uniform on [-√3, √3] has unit variance
    log_m = torch.zeros(n_i, n_s, n_a, dtype=torch.float64)
    history = []
    for _ in range(depth):
        for start, stop, distribution in runs:
            if distribution == "normal":
                w[start:stop].normal_(generator=generator)
            else:
                w[start:stop].uniform_(-bound, bound, generator=generator)
        z = torch.bmm(x.view(n_i * n_s, n_a * n_b, n_w), w.view(n_i * n_s, n_w, n_w))
        z = z.view(n_i, n_s, n_a, n_b, n_w)
        q = z.square().mean(dim=(3, 4))  # E[z^2] of each network
        # E[y^2] = Var[w] E[z^2], times the scale removed from earlier layers
        log_m += log_var_w + q.double().log()
        history.append(log_m.clone())
        z.div_(q.sqrt()[..., None, None])
        # prelu's channel dim (dim 1) is the slope's: each slope is a "channel"
        x = prelu(z.transpose(1, 2), slope_tensor).transpose(1, 2)
    theory = torch.tensor([[FACTORS[name](a) for a in slopes] for name in inits])
    log_moment = torch.stack(history, dim=-1).transpose(1, 2).contiguous()
    return SecondMoments(list(inits), slopes, log_moment, theory.double())


@dataclass
class DefaultInitSignal:
    r"""What :func:`default_init_signal` measured, per bias setting, slope, seed and layer.

    Attributes:
        slopes: the negative slopes, in order.
        biases: ``["zero", "default"]``: the two bias settings, in order.
        second_moment: :math:`\mathbb{E}[y_l^2]` over the batch and the units (float64).
        log_sensitivity: :math:`\log (\mathbb{E}\|\delta y_l\|^2 / \mathbb{E}\|\delta x\|^2)`
            (float64): how strongly the layer's pre-activations move when the input moves by a
            small random :math:`\delta x`.
        input_spread: the share of the second moment that varies between inputs,
            :math:`\frac{1}{n}\sum_j \operatorname{Var}_x[y_{l,j}] / \mathbb{E}[y_l^2] \in [0, 1]`
            (the variance over the batch, without Bessel's correction),
            measured on the float32 forward pass.
        theory: the sensitivity's predicted factor per layer, :math:`(1 + a^2)/6`, per slope.

    The tensors have shape (bias setting, slope, seed, layer).
    """

    slopes: list[float]
    biases: list[str]
    second_moment: torch.Tensor
    log_sensitivity: torch.Tensor
    input_spread: torch.Tensor
    theory: torch.Tensor

    def sensitivity_factor(self) -> torch.Tensor:
        """Geometric-mean factor per layer of the sensitivity, shape (bias, slope, seed)."""
        return factor_per_layer(self.log_sensitivity)["geometric"]


# deliberately repeated: the stack parameters (depth, width, batch, seeds, generator) and their
# defaults are log_second_moments's, written out so that each signature shows them; sharing them
# would take **kwargs, which hide them from help() and the API pages.
def default_init_signal(
    slopes: Sequence[float],
    *,
    depth: int = 50,
    width: int = 256,
    batch: int = 32,
    seeds: int = 8,
    generator: torch.Generator | None = None,
) -> DefaultInitSignal:
    r"""A deep stack with PyTorch's default ``nn.Linear`` initialisation, biases off and on.

    Each layer is :math:`y_l = W_l x_l + b_l`, :math:`x_{l+1} = f_a(y_l)`, with
    :math:`W_l` and :math:`b_l` uniform on :math:`[-1/\sqrt n, 1/\sqrt n]` as ``nn.Linear``
    draws them (the same draws for both bias settings and every slope); the zero-bias setting
    multiplies :math:`b_l` by 0. Three things are recorded per layer:

    - the size of the signal, :math:`\mathbb{E}[y_l^2]`. Without biases it shrinks by
      :math:`(1 + a^2)/6` per layer (:func:`log_second_moments`); with them it settles where
      the biases' own variance :math:`1/(3n)` is roughly balanced.
    - its *sensitivity* to the input: a random direction :math:`\delta x` is carried through
      the Jacobian, :math:`\delta y_l = W_l\, (f_a'(y_{l-1}) \odot \delta y_{l-1})`, rescaled
      every layer (it is linear in :math:`\delta x`), with biases or without. Both settings
      shrink it by about :math:`(1+a^2)/6` per layer: the biases keep the size, not the input.
    - the *input spread*: the part of :math:`\mathbb{E}[y_l^2]` that differs between the
      ``batch`` inputs, on the float32 forward pass. Once it reaches float32's rounding level
      (about :math:`10^{-14}` as a share of the second moment), the differences between inputs
      are rounding noise. Without biases no rescaling is needed for it: the zero-bias forward
      pass is rescaled to unit second moment every layer, which leaves the spread unchanged.

    Args:
        slopes: the negative slopes :math:`a`.
        depth: number of layers.
        width: units per layer :math:`n`.
        batch: standard normal inputs per network (at least 2).
        seeds: independent networks per slope and bias setting.
        generator: the random source (a fresh one seeded with 0 if ``None``).

    Returns:
        A :class:`DefaultInitSignal`, tensors of shape ``(2, len(slopes), seeds, depth)``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if a count is not positive, ``batch`` is below 2 or ``slopes`` is empty.

    Example:
        >>> signal = default_init_signal([0.0], depth=4, width=16, batch=8, seeds=2)
        >>> tuple(signal.second_moment.shape), signal.biases
        ((2, 1, 2, 4), ['zero', 'default'])
    """
    slopes = _check_slopes(slopes)
    depth, width = check_positive_int("depth", depth), check_positive_int("width", width)
    batch, seeds = check_positive_int("batch", batch), check_positive_int("seeds", seeds)
    if batch < 2:
        raise ValueError(
            f"batch must be at least 2 to measure a spread between inputs, got {batch}"
        )
    generator = _check_generator(generator)
    n_a, bound = len(slopes), 1 / math.sqrt(width)
    # dims: (bias setting, seed, slope, batch, width); the two settings share every draw
    shape = (2, seeds, n_a, batch, width)
    a = torch.tensor(slopes).view(1, 1, n_a, 1, 1)
    bias_on = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1)
    x = torch.randn(1, seeds, 1, batch, width, generator=generator).expand(shape)
    dx = torch.randn(1, seeds, 1, batch, width, generator=generator)
    dx = (dx / dx.square().mean(dim=(3, 4), keepdim=True).sqrt()).expand(shape)  # E[dx^2] = 1
    # log of the factor E[y^2] lost to rescaling the zero-bias signal so far
    log_scale = torch.zeros(2, seeds, n_a, dtype=torch.float64)
    log_sens = torch.zeros(2, seeds, n_a, dtype=torch.float64)
    moments, sensitivity, spread = [], [], []
    for _ in range(depth):
        w = torch.empty(1, seeds, 1, width, width).uniform_(-bound, bound, generator=generator)
        b = torch.empty(1, seeds, 1, 1, width).uniform_(-bound, bound, generator=generator)
        y = torch.matmul(x, w.transpose(-1, -2)) + bias_on * b  # x W^T + b, as nn.Linear
        dy = torch.matmul(dx, w.transpose(-1, -2))
        q = y.square().mean(dim=(3, 4))
        moments.append(log_scale + q.double().log())
        spread.append((y.var(dim=3, correction=0).mean(dim=3) / q).double())
        q_d = dy.square().mean(dim=(3, 4))
        log_sens += q_d.double().log()
        sensitivity.append(log_sens.clone())
        # rescale the zero-bias signal (exact: f(cy) = c f(y)); the biased one needs none
        scale = torch.where(bias_on[..., 0, 0] > 0, torch.ones_like(q), q)
        log_scale += scale.double().log()
        y = y / scale.sqrt()[..., None, None]
        derivative = torch.where(y > 0, 1.0, a)
        x = y * derivative  # f_a(y) = y f_a'(y)
        dx = derivative * dy / q_d.sqrt()[..., None, None]

    def stacked(values: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(values, dim=-1).transpose(1, 2).contiguous()

    return DefaultInitSignal(
        slopes=slopes,
        biases=["zero", "default"],
        second_moment=stacked(moments).exp(),
        log_sensitivity=stacked(sensitivity),
        input_spread=stacked(spread),
        theory=torch.tensor([(1 + s * s) / 6 for s in slopes], dtype=torch.float64),
    )
