"""The pieces of a stacked MLP: reading ``nn.Sequential`` models, the batched activations and
the batched loss.

Private to :mod:`rectifiers.stacked`. A stacked layer's activations run over the model
dimension in *runs*: consecutive models with the same activation share one call, so a sweep
laid out activation-major (see :func:`rectifiers.batched.grid`) needs one call per activation
and layer, whatever the number of seeds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers.models import Residual

#: Activation kinds without a slope: each maps to its ``torch.nn.functional`` function.
SMOOTH = {"elu": F.elu, "gelu": F.gelu, "silu": F.silu}
#: ``nn.RReLU``'s default bounds, the setting of Xu et al. (2015): slopes drawn from U(1/8, 1/3).
RRELU_LOWER, RRELU_UPPER = 1.0 / 8.0, 1.0 / 3.0
#: The module types an activation position may hold, for error messages.
ACCEPTED = (
    "nn.ReLU, nn.LeakyReLU, nn.Identity, nn.PReLU with 1 or width parameters, nn.ELU(alpha=1), "
    "nn.GELU(approximate='none'), nn.SiLU or nn.RReLU(1/8, 1/3)"
)


class Layout:
    """What one hidden layer of one model is: its activation kind, batch norm and skip."""

    def __init__(self, linear, norm, act, kind, residual):
        self.linear, self.norm, self.act, self.kind = linear, norm, act, kind
        self.residual = residual


def _kind(where: str, act: nn.Module, width: int) -> float | str:
    """The activation kind of ``act``: a fixed slope, a PReLU kind or a named activation."""
    kind: float | str | None = None
    if type(act) is nn.ReLU:
        kind = 0.0
    elif type(act) is nn.LeakyReLU:
        kind = float(act.negative_slope)
    elif type(act) is nn.Identity:
        kind = 1.0
    elif type(act) is nn.PReLU and act.num_parameters in (1, width):
        kind = "prelu" if act.num_parameters == 1 else "prelu_channelwise"
    elif type(act) is nn.ELU and act.alpha == 1.0:
        kind = "elu"
    elif type(act) is nn.GELU and act.approximate == "none":
        kind = "gelu"
    elif type(act) is nn.SiLU:
        kind = "silu"
    elif type(act) is nn.RReLU and (act.lower, act.upper) == (RRELU_LOWER, RRELU_UPPER):
        kind = "rrelu"
    if kind is None:
        raise ValueError(f"{where} must be {ACCEPTED.replace('width', str(width))}, got {act!r}")
    return kind


def _check_norm(where: str, norm: nn.Module, width: int) -> nn.BatchNorm1d:
    if (
        type(norm) is not nn.BatchNorm1d
        or norm.num_features != width
        or not norm.affine
        or not norm.track_running_stats
        or norm.momentum is None
        or norm.bias is None
    ):
        raise ValueError(
            f"{where} must be nn.BatchNorm1d({width}) with affine parameters, running "
            f"statistics and a numeric momentum, got {norm!r}"
        )
    return norm


def parse(index: int, model: object) -> tuple[list[Layout], nn.Linear]:
    """The hidden layers and the output layer of an ``mlp``-shaped ``nn.Sequential``.

    A hidden layer is ``Linear, [BatchNorm1d], activation``, optionally wrapped in a
    :class:`rectifiers.models.Residual`; the last entry is the output ``Linear``.
    """
    if not isinstance(model, nn.Sequential) or isinstance(model, Residual):
        raise TypeError(f"models[{index}] must be an nn.Sequential, got {type(model).__name__}")
    entries = list(model)
    layouts: list[Layout] = []
    position = 0
    shape = [type(entry).__name__ for entry in entries]

    def malformed() -> ValueError:
        return ValueError(
            f"models[{index}] must alternate Linear and activation layers (a BatchNorm1d may "
            f"follow each hidden Linear; a Residual may wrap a hidden layer) and end with a "
            f"Linear layer, got {shape}"
        )

    while position < len(entries) - 1:
        entry = entries[position]
        residual = isinstance(entry, Residual)
        if residual:
            block = list(entry)
            names = [f"models[{index}][{position}][{i}]" for i in range(3)]
        else:
            block = entries[position : position + 3]
            names = [f"models[{index}][{position + i}]" for i in range(3)]
        if not block or not isinstance(block[0], nn.Linear):
            raise malformed()
        linear, width = block[0], block[0].out_features
        has_norm = len(block) > 1 and isinstance(block[1], nn.modules.batchnorm._BatchNorm)
        size = 3 if has_norm else 2
        if len(block) < size or (residual and len(block) != size):
            raise malformed()
        kind = _kind(names[size - 1], block[size - 1], width)
        norm = _check_norm(names[1], block[1], width) if has_norm else None
        if residual and linear.in_features != width:
            raise ValueError(
                f"models[{index}][{position}] is a Residual layer from {linear.in_features} to "
                f"{width} units; a skip connection needs equal widths"
            )
        layouts.append(Layout(linear, norm, block[size - 1], kind, residual))
        position += 1 if residual else size
    if position != len(entries) - 1 or not isinstance(entries[-1], nn.Linear):
        raise malformed()
    return layouts, entries[-1]


class LeakyRuns(torch.autograd.Function):
    """Leaky ReLU of (M, N, d) pre-activations with one fixed slope per run of models.

    Forward is one kernel for all models, ``z > 0 ? z : a_m z`` with the per-model slopes
    ``slopes`` of shape (M, 1, 1) (``torch._prelu_kernel``, the kernel behind ``F.prelu``):
    the same comparison and the same single multiplication as ``F.leaky_relu`` on each model,
    so bit for bit its values. Backward writes each run of consecutive models
    (``(start, stop, slope)``) straight into its slice of one gradient with PyTorch's own
    ``leaky_relu_backward``: ``F.prelu``'s backward would also compute a slope gradient that
    nobody needs, about ten times slower. Splitting ``z`` and concatenating the pieces would
    do the same arithmetic plus a full copy per layer in each direction.
    """

    @staticmethod
    def forward(ctx, z, slopes, runs):
        ctx.runs = runs
        ctx.save_for_backward(z)
        return torch._prelu_kernel(z, slopes)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        grad_z = torch.empty_like(z)
        for start, stop, slope in ctx.runs:
            torch.ops.aten.leaky_relu_backward.grad_input(
                grad[start:stop], z[start:stop], slope, False, grad_input=grad_z[start:stop]
            )
        return grad_z, None, None


def runs_of(kinds: list[float | str]) -> list[tuple[int, int, float | str]]:
    """Consecutive models with the same kind, as ``(start, stop, kind)``; both PReLU kinds
    are one kind here (``"prelu"``: the slope tensor says per layer or per unit)."""
    runs: list[tuple[int, int, float | str]] = []
    for m, kind in enumerate(kinds):
        kind = "prelu" if kind == "prelu_channelwise" else kind
        if runs and runs[-1][2] == kind:
            runs[-1] = (runs[-1][0], m + 1, kind)
        else:
            runs.append((m, m + 1, kind))
    return runs


def rectify(z: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """:math:`z` where :math:`z > 0`, :math:`a z` elsewhere, for a slope tensor :math:`a`.

    ``relu(z) + a (z - relu(z))`` is exactly that in floating point (for :math:`z > 0` the
    second term is :math:`a \\cdot 0`), and unlike ``torch.where`` it runs at the speed of plain
    arithmetic; its gradient is 1 for :math:`z > 0` and :math:`a` for :math:`z \\le 0`, as
    ``nn.PReLU``'s and ``nn.RReLU``'s.
    """
    positive = F.relu(z)
    return positive + slope * (z - positive)


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose backward hands on its gradient made contiguous.

    ``losses`` reads the logits through a permutation, so the gradient autograd returns for
    them is a permuted view. The last layer's matrix products would accept it, but would sum
    in another order than with the contiguous gradient ``F.cross_entropy`` returns, and so
    round differently; one copy of the (M, N, classes) gradient keeps training bit for bit
    as it was.
    """

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


#: A float vector's width with AVX-512, the widest; see ``losses``.
_CLASS_ROW_MULTIPLE = 16


def losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each model's mean cross-entropy, shape (M,); ``y`` of shape (N,) or (M, N).

    The log-softmax runs over dim 0 of the logits laid out as (classes, M * N), not over the
    last dim as ``F.cross_entropy`` does: with 10 classes, fewer than a vector's 16 floats,
    PyTorch's last-dim kernel handles one row at a time, while the other layout is vectorised
    across examples (forward and backward about five times faster: the micro-timings of the
    book's Performance page). Both take each example's maximum, sum its
    ``exp(x - max)`` in class order with the same vectorised ``exp`` and return
    ``x - max - log(sum)``: in float32 on an AVX-512 CPU, values and gradients equal each
    model's ``F.cross_entropy(..., reduction="none").mean()`` bit for bit (tested). The row
    is padded to a multiple of 16 examples, since that kernel's leftover columns would use the
    C library's ``exp``. In float64, or with shorter vectors, the last-dim kernel sums in
    another order, and the two differ by rounding (about 1e-16 in float64).
    """
    models, n, classes = logits.shape
    flat = _ContiguousGrad.apply(logits).permute(2, 0, 1).reshape(classes, models * n)
    flat = F.pad(flat, (0, -(models * n) % _CLASS_ROW_MULTIPLE))
    picked = F.log_softmax(flat, dim=0).gather(0, y.expand(models, n).reshape(1, models * n))
    return -picked.view(models, n).mean(dim=1)
