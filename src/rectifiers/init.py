r"""He (Kaiming) initialisation for networks of (leaky) rectifiers.

He et al. (2015) choose the weights' variance so that the variance of the pre-activations stays
the same from layer to layer. A Leaky ReLU with slope :math:`a` keeps, on average, the fraction
:math:`(1 + a^2)/2` of the second moment of a zero-mean symmetric input, so the weights must
make up for it with

.. math::
    \operatorname{Var}(W) = \frac{2}{(1 + a^2)\, \text{fan\_in}},
    \qquad
    \operatorname{std}(W) = \frac{\text{gain}}{\sqrt{\text{fan\_in}}},
    \quad \text{gain} = \sqrt{\frac{2}{1 + a^2}}.

:math:`a = 0` is plain ReLU (gain :math:`\sqrt 2`), :math:`a = 1` is the identity (gain 1).
The numbers are those of ``torch.nn.init.calculate_gain("leaky_relu", a)`` and
``torch.nn.init.kaiming_normal_(w, a=a, mode="fan_in", nonlinearity="leaky_relu")``, to the bit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rectifiers._validation import check_module, check_positive_int, check_real

__all__ = ["leaky_relu_gain", "kaiming_std", "kaiming_init_"]

# The layers whose weight is a (fan_out, fan_in, *kernel) map from inputs to units. Transposed
# convolutions store (in, out, *kernel), so the fan-in formula below would be wrong for them.
_KAIMING_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def leaky_relu_gain(negative_slope=0.01) -> float:
    r"""The gain of He initialisation for a Leaky ReLU.

    .. math::
        \text{gain}(a) = \sqrt{\frac{2}{1 + a^2}}

    Equal to ``torch.nn.init.calculate_gain("leaky_relu", negative_slope)``.

    Args:
        negative_slope: the slope :math:`a` of the activation's negative side, a finite real
            number (``int`` or ``float``, not ``bool``). Default: ``0.01``, PyTorch's.

    Returns:
        The gain, a ``float`` in :math:`(0, \sqrt 2]`.

    Raises:
        TypeError: if ``negative_slope`` is not a real number.
        ValueError: if ``negative_slope`` is NaN or infinite.

    Example:
        >>> leaky_relu_gain(0.0) == math.sqrt(2.0)
        True
        >>> leaky_relu_gain(1.0)
        1.0
    """
    a = check_real("negative_slope", negative_slope)
    denominator = 1.0 + a * a
    if math.isinf(denominator):
        # |a| > 1e154: a^2 overflows, and next to it the 1 does not count.
        return math.sqrt(2.0) / abs(a)
    return math.sqrt(2.0 / denominator)


def kaiming_std(fan_in, negative_slope=0.0) -> float:
    r"""The standard deviation of He et al. (2015) normal initialisation.

    .. math::
        \operatorname{std} = \frac{\text{gain}(a)}{\sqrt{\text{fan\_in}}}
        = \sqrt{\frac{2}{(1 + a^2)\,\text{fan\_in}}}

    Args:
        fan_in: the number of inputs of each unit: ``in_features`` of a linear layer,
            ``in_channels / groups`` times the kernel size of a convolution. A positive ``int``.
        negative_slope: the slope :math:`a` of the Leaky ReLU that follows the layer, a finite
            real number. Default: ``0.0``, plain ReLU.

    Returns:
        The standard deviation, a ``float``.

    Raises:
        TypeError: if ``fan_in`` is not an ``int`` or ``negative_slope`` is not a real number.
        ValueError: if ``fan_in`` is not positive or ``negative_slope`` is NaN or infinite.

    Example:
        >>> kaiming_std(2)
        1.0
        >>> round(kaiming_std(100, negative_slope=0.2), 6)
        0.138675
    """
    fan_in = check_positive_int("fan_in", fan_in)
    return leaky_relu_gain(negative_slope) / math.sqrt(fan_in)


def kaiming_init_(module, negative_slope):
    r"""He-normal initialisation, in place, of every linear and convolution layer in ``module``.

    Every ``torch.nn.Linear``, ``Conv1d``, ``Conv2d`` and ``Conv3d`` inside ``module`` (at any
    depth, ``module`` itself included) gets

    .. math::
        W \sim \mathcal{N}\!\left(0,\ \operatorname{std}^2\right), \quad
        \operatorname{std} = \frac{\text{gain}(a)}{\sqrt{\text{fan\_in}}}, \qquad b = 0,

    where :math:`\text{fan\_in}` is the layer's number of inputs per unit and :math:`a` is
    ``negative_slope``. Each weight is drawn once with ``Tensor.normal_`` from the default
    generator, in the order of ``module.modules()``, so after ``torch.manual_seed(s)`` the
    result is identical to calling ``torch.nn.init.kaiming_normal_(w, a=negative_slope,
    mode="fan_in", nonlinearity="leaky_relu")`` on those weights in that order. A weight shared
    by several layers is drawn once.

    Everything else is left as it is: PReLU slopes, normalisation layers (weights, biases,
    running statistics), embeddings, transposed convolutions, buffers. Weights with no element
    are skipped.

    Args:
        module: the ``torch.nn.Module`` to initialise.
        negative_slope: the slope :math:`a` of the Leaky ReLUs that follow the layers, a finite
            real number; ``0`` for ReLU. For PReLU use the slopes' initial value (0.25 in
            PyTorch).

    Returns:
        ``module`` itself, for chaining.

    Raises:
        TypeError: if ``module`` is not a ``torch.nn.Module`` or ``negative_slope`` is not a
            real number.
        ValueError: if ``negative_slope`` is NaN or infinite, or a layer still has
            uninitialised (lazy) parameters.

    Example:
        >>> net = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.1), nn.Linear(256, 10))
        >>> net = kaiming_init_(net, negative_slope=0.1)
        >>> int(torch.count_nonzero(net[0].bias))
        0
    """
    module = check_module("module", module)
    gain = leaky_relu_gain(negative_slope)
    seen = set()
    # no_grad: filling a leaf parameter in place must not be recorded by autograd.
    with torch.no_grad():
        for name, layer in module.named_modules():
            if not isinstance(layer, _KAIMING_LAYERS):
                continue
            weight, bias = layer.weight, layer.bias
            if isinstance(weight, nn.parameter.UninitializedParameter):
                raise ValueError(
                    f"module has a lazy layer {name or type(layer).__name__!r} whose weight "
                    f"is not initialised yet; run one forward pass before kaiming_init_"
                )
            if id(weight) not in seen and weight.numel() > 0:
                seen.add(id(weight))
                fan_in = math.prod(weight.shape[1:])
                weight.normal_(0.0, gain / math.sqrt(fan_in))
            if bias is not None:
                bias.zero_()
    return module
