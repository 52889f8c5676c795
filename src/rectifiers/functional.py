r"""ReLU, Leaky ReLU and PReLU, and their derivatives, from first principles.

Every function here is a comparison followed by a selection (``torch.where``), so the
piecewise definition is what the code says. Each one returns exactly what PyTorch's own CPU
kernels return, bit for bit: the same values (NaN, :math:`\pm\infty` and :math:`-0` included),
the same dtype and the same shape. Three facts about those kernels decide the shape of the code:

- **The comparison is strict,** :math:`x > 0`. Zero, :math:`-0` and NaN all take the negative
  branch, so ``leaky_relu(-0.0, 0.5)`` is :math:`-0 \cdot 0.5 = -0` and a NaN stays NaN.
  ``relu`` is the exception: it is ``clamp_min(x, 0)``, which keeps :math:`x` unless
  :math:`x < 0`, so ``relu(-0.0)`` is :math:`-0` and ``relu(nan)`` is NaN.
- **The negative branch is a product, never a maximum.** :math:`\max(x, \alpha x)` equals Leaky
  ReLU only for :math:`\alpha \le 1`; for :math:`\alpha > 1` it swaps the two sides (it gives
  :math:`\alpha x` for positive :math:`x` and :math:`x` for negative :math:`x`).
- **float16 and bfloat16 are computed in float32.** The slope is first rounded to float32, the
  product :math:`\alpha x` is formed in float32 and rounded once to the input's dtype. Rounding
  the slope straight to float16 would give different bits. For float32 inputs the slope is
  rounded to float32; for float64 inputs it is used as is. A slope too large for float32 is
  rejected for every dtype but float64, as PyTorch rejects it.

NaN payloads (the bits of a NaN beyond "it is NaN") match too for float32 and float64. For
float16 and bfloat16 PyTorch's own payload depends on where an element sits in memory: its
vectorised loop goes through float32 and quiets (for bfloat16, canonicalises) a NaN, its scalar
tail loop returns it unchanged. There the promise is a NaN wherever PyTorch gives a NaN;
``relu`` returns the input's NaN unchanged, as the scalar loop does. The same holds for every
dtype in the one case where PyTorch's choice of NaN depends on its loop: ``prelu`` with both
:math:`x` and its slope NaN.
"""

from __future__ import annotations

import torch

from rectifiers._validation import check_float_tensor, check_real

__all__ = [
    "relu",
    "leaky_relu",
    "prelu",
    "relu_grad",
    "leaky_relu_grad",
    "prelu_grads",
]

# Half-precision inputs are widened to this dtype for arithmetic, as PyTorch's CPU kernels do.
_REDUCED = (torch.float16, torch.bfloat16)
_FLOAT32_MAX = torch.finfo(torch.float32).max


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _REDUCED else dtype


def _slope(negative_slope: object, dtype: torch.dtype) -> torch.Tensor:
    """The slope as a 0-d tensor of the dtype the arithmetic for ``dtype`` is done in."""
    slope = check_real("negative_slope", negative_slope)
    compute = _compute_dtype(dtype)
    # PyTorch converts the slope with an overflow check, so e.g. 1e39 is an error for float32
    # (and float16/bfloat16, computed in float32) instead of silently becoming infinity.
    if compute == torch.float32 and abs(slope) > _FLOAT32_MAX:
        raise ValueError(
            f"negative_slope must fit in float32 (|negative_slope| <= {_FLOAT32_MAX:.7g}) "
            f"for an input of dtype {dtype}, got {slope!r}"
        )
    return torch.tensor(slope, dtype=compute)


def relu(x):
    r"""Rectified linear unit, applied elementwise.

    .. math::
        \operatorname{ReLU}(x) = \begin{cases} 0 & x < 0 \\ x & \text{otherwise} \end{cases}

    Equal bit for bit to ``torch.nn.functional.relu``: it keeps :math:`x` unless :math:`x < 0`,
    so :math:`-0` stays :math:`-0` and NaN stays NaN, while :math:`-\infty` becomes :math:`+0`.

    Args:
        x: input, a floating-point tensor of any shape. It is not modified.

    Returns:
        A new tensor with the shape and dtype of ``x``.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor.

    Example:
        >>> relu(torch.tensor([-2.0, -0.0, 3.0]))
        tensor([0., -0., 3.])
    """
    x = check_float_tensor("x", x)
    # "x < 0" rather than "x <= 0": PyTorch's relu is clamp_min, which returns x itself for
    # both zeros and for NaN.
    return torch.where(x < 0, x.new_zeros(()), x)


def leaky_relu(x, negative_slope=0.01):
    r"""Leaky rectified linear unit (Maas et al., 2013), applied elementwise.

    .. math::
        \operatorname{LeakyReLU}_\alpha(x) =
        \begin{cases} x & x > 0 \\ \alpha x & \text{otherwise} \end{cases}

    with :math:`\alpha` = ``negative_slope``. Any finite slope is allowed, negative or above 1
    included; this is not :math:`\max(x, \alpha x)`, which differs from it when
    :math:`\alpha > 1`. Equal bit for bit to ``torch.nn.functional.leaky_relu`` (see the
    module notes on rounding for float16 and bfloat16).

    Args:
        x: input, a floating-point tensor of any shape. It is not modified.
        negative_slope: :math:`\alpha`, a finite real number (``int`` or ``float``, not ``bool``).
            For inputs other than float64 it must fit in float32. Default: ``0.01``.

    Returns:
        A new tensor with the shape and dtype of ``x``.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor or ``negative_slope`` is not a real
            number.
        ValueError: if ``negative_slope`` is NaN, infinite, or too large for float32 with an
            input that is not float64.

    Example:
        >>> leaky_relu(torch.tensor([-5.0, 0.0, 2.0]), negative_slope=0.1)
        tensor([-0.5000,  0.0000,  2.0000])
    """
    x = check_float_tensor("x", x)
    slope = _slope(negative_slope, x.dtype)
    xc = x.to(slope.dtype)
    return torch.where(xc > 0, xc, xc * slope).to(x.dtype)


def _prelu_weight(x: torch.Tensor, weight: object) -> torch.Tensor:
    """Check ``weight`` against ``x`` and reshape it to broadcast over ``x``'s channel dim."""
    weight = check_float_tensor("weight", weight)
    if weight.dtype != x.dtype:
        raise TypeError(
            f"weight must have the same dtype as x ({x.dtype}), got dtype {weight.dtype}"
        )
    if weight.dim() != 1:
        raise ValueError(
            f"weight must be a 1-D tensor of slopes, got {weight.dim()}-D shape "
            f"{tuple(weight.shape)}"
        )
    # The channel dim is 1; an input with fewer than 2 dims has a single channel.
    channels = x.shape[1] if x.dim() >= 2 else 1
    if weight.numel() not in (1, channels):
        raise ValueError(
            f"weight must hold 1 shared slope or one slope per channel of x ({channels}, the "
            f"size of dim 1), got {weight.numel()} slopes for x of shape {tuple(x.shape)}"
        )
    if x.dim() < 2:
        return weight.reshape(()) if x.dim() == 0 else weight
    shape = [1] * x.dim()
    shape[1] = weight.numel()
    return weight.reshape(shape)


def prelu(x, weight):
    r"""Parametric rectified linear unit (He et al., 2015), applied elementwise.

    .. math::
        \operatorname{PReLU}(x)_{n,c,\dots} =
        \begin{cases} x_{n,c,\dots} & x_{n,c,\dots} > 0 \\
        a_c \, x_{n,c,\dots} & \text{otherwise} \end{cases}

    where :math:`a` = ``weight`` holds either one slope shared by every element or one slope per
    channel. The channel dimension is dim 1; an input with fewer than two dimensions has a single
    channel. Equal bit for bit to ``torch.nn.functional.prelu``.

    Args:
        x: input, a floating-point tensor of shape :math:`(*)` with no channel dim, or
            :math:`(N, C, *)`. It is not modified.
        weight: the slopes :math:`a`, a 1-D tensor of ``x``'s dtype with 1 or :math:`C`
            elements (``torch.nn.PReLU(num_parameters=C).weight``). Unlike
            ``torch.nn.functional.prelu``, a 0-d ``weight`` is refused: slopes are 1-D.

    Returns:
        A new tensor with the shape and dtype of ``x``.

    Raises:
        TypeError: if ``x`` or ``weight`` is not a floating-point tensor, or their dtypes differ.
        ValueError: if ``weight`` is not 1-D or its number of slopes is neither 1 nor the number
            of channels of ``x``.

    Example:
        >>> x = torch.tensor([[-1.0, -1.0], [2.0, -4.0]])
        >>> prelu(x, torch.tensor([0.25, 0.5]))
        tensor([[-0.2500, -0.5000],
                [ 2.0000, -2.0000]])
    """
    x = check_float_tensor("x", x)
    a = _prelu_weight(x, weight)
    # weight * x in that order, as PyTorch's kernel computes it; for float16/bfloat16 the
    # product of two half-precision numbers is exact in float32, so one rounding is all there is.
    return torch.where(x > 0, x, a * x)


def relu_grad(x):
    r"""Derivative of :func:`relu`, elementwise, with PyTorch autograd's convention at the kink.

    .. math::
        \frac{d}{dx}\operatorname{ReLU}(x) =
        \begin{cases} 0 & x \le 0 \\ 1 & \text{otherwise} \end{cases}

    At :math:`x = 0` (and :math:`-0`) autograd uses the subgradient 0. Autograd tests the
    *output* with :math:`\operatorname{ReLU}(x) \le 0`, so NaN, which fails every comparison,
    gets 1. Equal to the gradient autograd gives ``x`` for ``relu(x).sum()``.

    Args:
        x: input, a floating-point tensor of any shape.

    Returns:
        A new tensor of zeros and ones with the shape and dtype of ``x``.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor.

    Example:
        >>> relu_grad(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0., 0., 1.])
    """
    x = check_float_tensor("x", x)
    # "x <= 0 -> 0" and not "x > 0 -> 1": the two differ on NaN, and autograd passes NaN through.
    return torch.where(x <= 0, x.new_zeros(()), x.new_ones(()))


# Its Args/Returns/Raises repeat leaky_relu's on purpose: each public function documents itself
# in full, as torch.nn.functional does, so its API entry reads without the other's.
def leaky_relu_grad(x, negative_slope=0.01):
    r"""Derivative of :func:`leaky_relu`, elementwise, with PyTorch autograd's convention.

    .. math::
        \frac{d}{dx}\operatorname{LeakyReLU}_\alpha(x) =
        \begin{cases} 1 & x > 0 \\ \alpha & \text{otherwise} \end{cases}

    At :math:`x = 0` (and :math:`-0`, and NaN) autograd uses :math:`\alpha`, the slope of the
    negative side. :math:`\alpha` is rounded as in :func:`leaky_relu`: to float32 for every dtype
    but float64, then to ``x``'s dtype.

    Args:
        x: input, a floating-point tensor of any shape.
        negative_slope: :math:`\alpha`, a finite real number. Default: ``0.01``.

    Returns:
        A new tensor with the shape and dtype of ``x``.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor or ``negative_slope`` is not a real
            number.
        ValueError: if ``negative_slope`` is NaN, infinite, or too large for float32 with an
            input that is not float64.

    Example:
        >>> leaky_relu_grad(torch.tensor([-1.0, 0.0, 2.0]), negative_slope=0.25)
        tensor([0.2500, 0.2500, 1.0000])
    """
    x = check_float_tensor("x", x)
    slope = _slope(negative_slope, x.dtype)
    return torch.where(x > 0, x.new_ones(()), slope.to(x.dtype))


def prelu_grads(x, weight, grad_output):
    r"""Gradients of :func:`prelu` with respect to its input and its slopes.

    For a loss :math:`L` and :math:`g = \partial L / \partial y` (``grad_output``) with
    :math:`y = \operatorname{PReLU}(x)`:

    .. math::
        \frac{\partial L}{\partial x_{n,c,\dots}} =
        \begin{cases} g_{n,c,\dots} & x_{n,c,\dots} > 0 \\
        a_c \, g_{n,c,\dots} & \text{otherwise} \end{cases}
        \qquad
        \frac{\partial L}{\partial a_c} = \sum_{n,\dots\,:\ x_{n,c,\dots} \le 0}
        g_{n,c,\dots} \, x_{n,c,\dots}

    The sum runs over every position that shares the slope :math:`a_c`: all positions for a
    single shared slope. As in autograd, :math:`x = 0` (and NaN) belongs to the negative side;
    at zero it adds :math:`0` to the slope's gradient. Equal bit for bit to what autograd gives
    for ``torch.nn.functional.prelu``: the per-position products are summed by the same
    reduction autograd uses to undo the broadcast of ``weight``.

    Args:
        x: input, a floating-point tensor of shape :math:`(*)` or :math:`(N, C, *)`.
        weight: the slopes :math:`a`, a 1-D tensor of ``x``'s dtype with 1 or :math:`C`
            elements.
        grad_output: :math:`g`, a tensor of ``x``'s shape and dtype.

    Returns:
        The pair ``(grad_input, grad_weight)``. ``grad_input`` has ``x``'s shape,
        ``grad_weight`` has ``weight``'s shape; both have ``x``'s dtype.

    Raises:
        TypeError: if an argument is not a floating-point tensor or the dtypes differ.
        ValueError: if ``weight`` is not 1-D, has the wrong number of slopes, or
            ``grad_output``'s shape differs from ``x``'s.

    Example:
        >>> x = torch.tensor([-2.0, 0.0, 3.0])
        >>> prelu_grads(x, torch.tensor([0.25]), torch.ones(3))
        (tensor([0.2500, 0.2500, 1.0000]), tensor([-2.]))
    """
    x = check_float_tensor("x", x)
    a = _prelu_weight(x, weight)
    grad_output = check_float_tensor("grad_output", grad_output)
    if grad_output.dtype != x.dtype:
        raise TypeError(
            f"grad_output must have the same dtype as x ({x.dtype}), got dtype {grad_output.dtype}"
        )
    if grad_output.shape != x.shape:
        raise ValueError(
            f"grad_output must have the shape of x {tuple(x.shape)}, got {tuple(grad_output.shape)}"
        )
    positive = x > 0
    grad_input = torch.where(positive, grad_output, a * grad_output)
    grad_weight = torch.where(positive, x.new_zeros(()), x * grad_output)
    # Summing back to the broadcast shape of the slopes is exactly what autograd does for a
    # broadcast operand (at::sum_to), so the reduction order, and hence every bit, agrees.
    # Autograd reduces only when the shapes differ; sum_to_size(()) would sum a 0-d tensor
    # anyway, turning a -0.0 into +0.0.
    if grad_weight.shape != a.shape:
        grad_weight = grad_weight.sum_to_size(a.shape)
    return grad_input, grad_weight.reshape(weight.shape)
