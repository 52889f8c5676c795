r"""Optimizer parameter groups that keep weight decay off PReLU slopes, biases and norms.

Weight decay pulls every decayed parameter towards zero: with decoupled decay (AdamW) each step
does :math:`\theta \leftarrow \theta - \eta \lambda \theta` besides the gradient step. For a
weight matrix that is the intended regulariser. For a PReLU slope it is not: it pulls the slope
to 0, that is, it turns the PReLU back into a ReLU, the very thing it was meant to avoid. Biases
and the scales and shifts of normalisation layers are likewise left undecayed by convention.

The roles are found by **module type**, never by the parameter's dotted name: inside an
``nn.Sequential`` a PReLU's slopes are called ``"1.weight"``, and a filter such as
``"prelu" in name`` silently decays them.
"""

from __future__ import annotations

from torch import nn

from rectifiers._validation import check_module, check_non_negative_real

__all__ = ["NORM_LAYERS", "param_groups"]

#: Normalisation layers. Every parameter they own (scale and shift) is exempt from decay.
#: BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm1d/2d/3d (and the lazy variants of both),
#: LayerNorm, GroupNorm, RMSNorm, LocalResponseNorm and CrossMapLRN2d.
#:
#: :meta hide-value:
NORM_LAYERS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d,
    nn.LazyInstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
)


def _is_bias(attribute: str) -> bool:
    # The attribute name a module class gives its own parameter ("bias" in Linear and Conv,
    # "in_proj_bias"/"bias_k" in MultiheadAttention, "bias_ih_l0" in RNNs): fixed by the class,
    # unlike the dotted path, which depends on where the module sits in the model.
    return attribute == "bias" or attribute.endswith("_bias") or attribute.startswith("bias_")


def param_groups(model, weight_decay) -> list[dict]:
    r"""Split a model's trainable parameters into a decayed and an undecayed group.

    .. math::
        \lambda_\theta =
        \begin{cases}
        0 & \theta \text{ is a PReLU slope, a bias, or a parameter of a normalisation layer} \\
        \lambda & \text{otherwise}
        \end{cases}

    where :math:`\lambda` is ``weight_decay``. A PReLU slope is any parameter of an
    ``torch.nn.PReLU`` (subclasses included); a normalisation layer is an instance of one of
    :data:`NORM_LAYERS` (BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm, ...); a bias is
    a parameter whose attribute name on its own module is ``bias``, ends in ``_bias`` or starts
    with ``bias_``.

    Every trainable parameter appears exactly once, however deep it sits and however many
    modules share it. A parameter shared by a decayed and an undecayed role (a tied weight that
    is also a norm's scale, say) is **not** decayed: decaying a slope or a scale by mistake does
    damage, leaving one weight undecayed does little. Frozen parameters (``requires_grad``
    ``False``) are left out. Within a group, parameters keep the order of ``model.parameters()``.

    Args:
        model: the ``torch.nn.Module`` whose parameters are grouped.
        weight_decay: :math:`\lambda` for the decayed group, a finite real number :math:`\ge 0`.

    Returns:
        Two parameter groups, always these two in this order, even when one is empty,
        ``{"params": [...], "weight_decay": weight_decay, "name": "decay"}`` and
        ``{"params": [...], "weight_decay": 0.0, "name": "no_decay"}``. They can be passed
        straight to any ``torch.optim`` optimizer, which keeps the extra ``"name"`` key.

    Raises:
        TypeError: if ``model`` is not a ``torch.nn.Module`` or ``weight_decay`` is not a real
            number.
        ValueError: if ``weight_decay`` is negative, NaN or infinite.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.PReLU(), nn.Linear(8, 2))
        >>> groups = param_groups(model, 1e-2)
        >>> [len(g["params"]) for g in groups]  # 2 weights; 2 biases and the PReLU slope
        [2, 3]
        >>> opt = torch.optim.AdamW(groups, lr=1e-3)
    """
    model = check_module("model", model)
    weight_decay = check_non_negative_real("weight_decay", weight_decay)
    undecayed = set()
    for module in model.modules():
        whole_module = isinstance(module, (nn.PReLU, *NORM_LAYERS))
        for attribute, parameter in module.named_parameters(recurse=False):
            if whole_module or _is_bias(attribute):
                undecayed.add(id(parameter))
    decay, no_decay = [], []
    # parameters() yields a shared parameter once, so each lands in exactly one group.
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if id(parameter) in undecayed else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
