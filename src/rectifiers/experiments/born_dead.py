r"""Born dead: random deep, narrow networks that are constant at an input before any training.

Draw a network with :math:`L` hidden layers of width :math:`N`, weights from a continuous
distribution symmetric about zero and zero biases. Each unit is then positive with probability
exactly one half, independently of the others, so a whole layer is inactive with probability
:math:`2^{-N}`, and a ReLU network is dead at a given input with probability

.. math::
    P(\text{dead at } \mathbf{x}) = 1 - \bigl(1 - 2^{-N}\bigr)^{L}

(:func:`dead_probability`). :func:`random_networks` draws thousands of such networks at once,
one batched matrix product per layer, and records for each input the first layer whose output
is exactly zero, the first whose pre-activations are all :math:`\le 0`, and the size of the
signal after every layer, :math:`\|\mathbf{h}_L\| / \|\mathbf{x}\|`. The last one is what
"alive" means in practice for Leaky ReLU: its output is never exactly zero, but each
all-negative layer multiplies the signal by :math:`\alpha`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rectifiers import functional as rf
from rectifiers._validation import (
    check_float_tensor,
    check_non_negative_int,
    check_positive_int,
    check_real,
)
from rectifiers.init import kaiming_std

__all__ = ["BornDead", "dead_probability", "random_networks"]


@dataclass(frozen=True)
class BornDead:
    r"""What :func:`random_networks` measured for :math:`R` networks and :math:`I` inputs.

    Attributes:
        depth: the number :math:`L` of hidden layers.
        zero_at: ``int64`` :math:`(R, I)`: the 1-based index of the first layer whose output is
            exactly zero at that input, :math:`L + 1` if there is none.
        negative_at: ``int64`` :math:`(R, I)`: the first layer whose pre-activations are all
            :math:`\le 0` (the sign pattern that kills a ReLU layer), :math:`L + 1` if none.
        log10_gain: ``float64`` :math:`(R, I, L)`: :math:`\log_{10} \|\mathbf{h}_l\| /
            \|\mathbf{x}\|` after each layer :math:`l` (:math:`-\infty` once the output is 0).
    """

    depth: int
    zero_at: torch.Tensor
    negative_at: torch.Tensor
    log10_gain: torch.Tensor

    def dead_by_depth(self, *, all_inputs: bool = False) -> torch.Tensor:
        r"""The fraction of networks dead by each depth, shape :math:`(L,)`.

        Entry :math:`l - 1` is the fraction whose output is exactly zero after some layer
        :math:`\le l` at the first input, or with ``all_inputs`` at every input at once (the
        network is then constant on all of them).
        """
        first = self.zero_at.max(dim=1).values if all_inputs else self.zero_at[:, 0]
        depths = torch.arange(1, self.depth + 1)
        return (first[:, None] <= depths).double().mean(dim=0)

    def negative_by_depth(self) -> torch.Tensor:
        """The fraction of networks with an all-negative layer by each depth (first input)."""
        depths = torch.arange(1, self.depth + 1)
        return (self.negative_at[:, 0, None] <= depths).double().mean(dim=0)


def dead_probability(width, depth):
    r"""The probability that a random zero-bias ReLU network is dead at a given input.

    .. math::
        P = 1 - \bigl(1 - 2^{-N}\bigr)^{L}

    Args:
        width: the width :math:`N` of every hidden layer, a positive int.
        depth: the number :math:`L` of hidden layers: a non-negative int or an integer tensor
            of depths (any shape).

    Returns:
        A ``float`` for an int ``depth``, else a ``float64`` tensor of ``depth``'s shape.

    Raises:
        TypeError: if ``width`` is not an int or ``depth`` neither an int nor a tensor.
        ValueError: if ``width`` is not positive or a depth is negative.

    Example:
        >>> round(dead_probability(2, 10), 4)
        0.9437
    """
    p = 2.0 ** -check_positive_int("width", width)
    if isinstance(depth, torch.Tensor):
        if depth.is_floating_point() or depth.is_complex() or depth.dtype == torch.bool:
            raise TypeError(f"depth must be an integer tensor, got dtype {depth.dtype}")
        if (depth < 0).any():
            raise ValueError("depth must hold non-negative depths")
        return 1 - (1 - p) ** depth.double()
    return 1 - (1 - p) ** check_non_negative_int("depth", depth)


def random_networks(
    inputs,
    width: int,
    depth: int,
    nets: int,
    *,
    slope: float = 0.0,
    bias: float | str = 0.0,
    ternary: bool = False,
    seed: int = 0,
) -> BornDead:
    r"""Draw ``nets`` random MLPs and follow each input through their ``depth`` hidden layers.

    Layer :math:`l` computes :math:`\mathbf{z}_l = W_l \mathbf{h}_{l-1} + \mathbf{b}_l` and
    :math:`\mathbf{h}_l = \operatorname{LeakyReLU}_\alpha(\mathbf{z}_l)` with
    :math:`\mathbf{h}_0 = \mathbf{x}`. Weights are Gaussian with He's standard deviation
    :math:`\sqrt{2 / n_\text{in}}` (the scale changes no sign), or with ``ternary`` drawn
    uniformly from :math:`\{-1, 0, 1\}`. All networks are evaluated at once, one batched
    matrix product per layer, in float64.

    Args:
        inputs: a floating-point tensor of shape :math:`(I, d_0)`, the inputs to follow.
        width: the width :math:`N` of every hidden layer.
        depth: the number :math:`L` of hidden layers.
        nets: the number :math:`R` of random networks.
        slope: the negative slope :math:`\alpha` (0 is ReLU).
        bias: a constant bias for every unit, or ``"uniform"`` for PyTorch's default
            :math:`U(-1/\sqrt{n_\text{in}}, 1/\sqrt{n_\text{in}})`, drawn per unit.
        ternary: draw weights from :math:`\{-1, 0, 1\}` instead of a Gaussian.
        seed: seed of the generator that draws the weights and biases.

    Returns:
        A :class:`BornDead`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if a count is not positive or ``bias`` is an unknown string.

    Example:
        >>> x = torch.randn(1, 40)
        >>> result = random_networks(x, width=2, depth=10, nets=4000, seed=0)
        >>> abs(float(result.dead_by_depth()[-1]) - dead_probability(2, 10)) < 0.03
        True
    """
    x = check_float_tensor("inputs", inputs)
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"inputs must have shape (I, d) with I, d > 0, got {tuple(x.shape)}")
    width = check_positive_int("width", width)
    depth = check_positive_int("depth", depth)
    nets = check_positive_int("nets", nets)
    slope = check_real("slope", slope)
    if isinstance(bias, str):
        if bias != "uniform":
            raise ValueError(f"bias must be a number or 'uniform', got {bias!r}")
    else:
        bias = check_real("bias", bias)
    if not isinstance(ternary, bool):
        raise TypeError(f"ternary must be a bool, got {type(ternary).__name__}")
    seed = check_non_negative_int("seed", seed)

    g = torch.Generator().manual_seed(seed)
    h = x.double().expand(nets, *x.shape)  # (R, I, features)
    in_norm = h.norm(dim=-1)
    never = torch.full((nets, len(x)), depth + 1)
    zero_at, negative_at = never.clone(), never.clone()
    gains = []
    for layer in range(1, depth + 1):
        fan_in = h.shape[-1]
        if ternary:
            w = torch.randint(-1, 2, (nets, fan_in, width), generator=g).double()
        else:
            w = torch.randn(nets, fan_in, width, generator=g, dtype=torch.float64)
            w = w * kaiming_std(fan_in)
        z = torch.bmm(h, w)
        if bias == "uniform":
            u = torch.rand(nets, 1, width, generator=g, dtype=torch.float64)
            z = z + (2 * u - 1) / math.sqrt(fan_in)
        else:
            z = z + bias
        h = rf.leaky_relu(z, slope)
        unset = zero_at == depth + 1
        zero_at = torch.where(unset & (h == 0).all(dim=-1), layer, zero_at)
        unset = negative_at == depth + 1
        negative_at = torch.where(unset & (z <= 0).all(dim=-1), layer, negative_at)
        gains.append(torch.log10(h.norm(dim=-1) / in_norm))
    return BornDead(depth, zero_at, negative_at, torch.stack(gains, dim=-1))
