r"""Dead units: measuring them, and recording the pre-activations of every rectifier layer.

A ReLU unit is *dead* on a batch when its pre-activation is :math:`\le 0` for every example:
its output is then 0 and the gradient through it is 0 for the whole batch, so nothing that
feeds it learns from that batch. A Leaky ReLU or PReLU unit in the same state still passes the
gradient :math:`\alpha\, \partial L / \partial y`, which is why the chapters measure the same
quantity for all three and compare.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from rectifiers._validation import check_float_tensor, check_module, check_tensor

__all__ = [
    "RECTIFIERS",
    "dead_fraction",
    "dead_fraction_of_peaks",
    "record_preactivations",
    "activation_stats",
]

#: The module types whose inputs are recorded by default,
#: ``(nn.ReLU, nn.LeakyReLU, nn.PReLU)``.
#:
#: :meta hide-value:
RECTIFIERS = (nn.ReLU, nn.LeakyReLU, nn.PReLU)


def dead_fraction(pre_activations) -> float:
    r"""The fraction of units whose pre-activation is :math:`\le 0` for every example.

    .. math::
        \text{dead} = \frac{1}{U} \sum_{u=1}^{U} \prod_{n=1}^{N} [z_{n,u} \le 0]

    for pre-activations :math:`z` of :math:`N` examples and :math:`U` units. Dim 0 is the batch;
    all further dims are flattened into units, so a convolution's :math:`(N, C, L)` output has
    :math:`C \cdot L` units (one per channel and position). A NaN is not :math:`\le 0`: a unit
    that is NaN for some example is not counted as dead.

    Args:
        pre_activations: a floating-point tensor of shape :math:`(N, *)` with at least 2 dims,
            :math:`N \ge 1` and at least one unit.

    Returns:
        The fraction, a ``float`` in :math:`[0, 1]`.

    Raises:
        TypeError: if ``pre_activations`` is not a floating-point tensor.
        ValueError: if it has fewer than 2 dims, an empty batch or no units.

    Example:
        >>> z = torch.tensor([[-1.0, 2.0, 0.0], [-3.0, -1.0, 0.0]])
        >>> dead_fraction(z)  # units 0 and 2 never fire
        0.6666666666666666
    """
    z = check_float_tensor("pre_activations", pre_activations)
    if z.dim() < 2:
        raise ValueError(
            f"pre_activations must have at least 2 dims (batch, units...), got shape "
            f"{tuple(z.shape)}"
        )
    if z.shape[0] == 0:
        raise ValueError(
            f"pre_activations must hold at least one example, got shape {tuple(z.shape)}"
        )
    if z[0].numel() == 0:
        raise ValueError(f"pre_activations must hold at least one unit, got shape {tuple(z.shape)}")
    return dead_fraction_of_peaks(z.detach().reshape(z.shape[0], -1).amax(dim=0)).item()


def dead_fraction_of_peaks(peaks, dtype=torch.float64):
    r"""The dead fraction from each unit's largest pre-activation :math:`\max_n z_{n,u}`.

    The one computation behind :func:`dead_fraction`, :func:`activation_stats` and
    ``BatchedMLP.statistics`` (which keeps running maxima over chunks of examples, per model
    and layer): a unit is dead when its peak is :math:`\le 0`. A NaN peak (``amax`` keeps NaN)
    is not :math:`\le 0`, so a unit that is NaN anywhere is not dead.

    Args:
        peaks: the units' peaks, shape :math:`(*, U)`; the last dim holds the units.
        dtype: the floating-point dtype of the result.

    Returns:
        The fraction of dead units over the last dim, shape :math:`(*)`.

    Example:
        >>> dead_fraction_of_peaks(torch.tensor([[0.0, 2.0, -1.0], [1.0, 1.0, 1.0]]))
        tensor([0.6667, 0.0000], dtype=torch.float64)
    """
    return (peaks <= 0).to(dtype).mean(dim=-1)


def _check_types(types) -> tuple[type, ...]:
    if isinstance(types, type):
        types = (types,)
    if not isinstance(types, tuple) or not types:
        raise TypeError(f"types must be a non-empty tuple of nn.Module subclasses, got {types!r}")
    for t in types:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"types must hold nn.Module subclasses, got {t!r} in {types!r}")
    return types


@contextlib.contextmanager
def _hooks(model: nn.Module, types: tuple[type, ...], inputs: dict, outputs: dict | None):
    handles = []

    def recorder(name):
        def pre_hook(module, args):
            # clone: an in-place activation (nn.ReLU(inplace=True)) overwrites its input.
            inputs[name] = args[0].detach().clone()

        def post_hook(module, args, output):
            outputs[name] = output.detach().clone()

        return pre_hook, post_hook

    try:
        for name, module in model.named_modules():
            if isinstance(module, types):
                pre_hook, post_hook = recorder(name)
                handles.append(module.register_forward_pre_hook(pre_hook))
                if outputs is not None:
                    handles.append(module.register_forward_hook(post_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def record_preactivations(model, types=RECTIFIERS):
    r"""record_preactivations(model, types=RECTIFIERS)

    Record the input of every rectifier module of ``model`` while the block runs.

    Inside the ``with`` block every forward pass stores, for each module of one of ``types``,
    a detached copy of its input (its pre-activation :math:`z`) in the yielded dict, under the
    module's name in ``model.named_modules()`` (``""`` for ``model`` itself). A later forward
    pass replaces the entries of the earlier one. On leaving the block, normally or by an
    exception, every hook is removed; the dict keeps the last recorded tensors.

    Only modules are seen: a ``torch.nn.functional.relu`` call inside a ``forward`` is not. A
    module instance called several times in one forward pass (one ``nn.ReLU`` reused for
    several layers) keeps only its last input; give each layer its own module.

    Args:
        model: the ``torch.nn.Module`` to watch.
        types: the module classes to record, a class or a non-empty tuple of classes.
            Default: ``(nn.ReLU, nn.LeakyReLU, nn.PReLU)``, subclasses included.

    Yields:
        A dict mapping module name to its last recorded input.

    Raises:
        TypeError: if ``model`` is not a ``torch.nn.Module`` or ``types`` is not a non-empty
            tuple of module classes.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.PReLU())
        >>> with record_preactivations(net) as z:
        ...     _ = net(torch.randn(8, 3))
        >>> {name: tuple(t.shape) for name, t in z.items()}
        {'1': (8, 4), '3': (8, 2)}
    """
    model = check_module("model", model)
    types = _check_types(types)
    recorded: dict[str, torch.Tensor] = {}
    with _hooks(model, types, recorded, None):
        yield recorded


def activation_stats(model, x, *, types=RECTIFIERS) -> dict[str, dict[str, float]]:
    r"""activation_stats(model, x, *, types=RECTIFIERS)

    Per rectifier layer: dead units, zero outputs and negative pre-activations on ``x``.

    Runs ``model(x)`` once in evaluation mode without gradients and returns, for each module of
    ``types`` that ran (keyed by its name in ``model.named_modules()``), with :math:`z` its input
    and :math:`y` its output:

    - ``"dead_fraction"``: :func:`dead_fraction` of :math:`z`, the units with :math:`z \le 0` on
      every example of ``x``;
    - ``"zero_fraction"``: the fraction of elements of :math:`y` that are exactly 0 (for ReLU,
      those with :math:`z \le 0`; for Leaky ReLU only :math:`z = 0`);
    - ``"negative_fraction"``: the fraction of elements of :math:`z` that are :math:`< 0`.

    Every submodule's training flag is restored afterwards, even if the forward pass raises, so
    it is safe to call in the middle of training.

    Args:
        model: the ``torch.nn.Module`` to measure.
        x: the batch to run, a tensor (dim 0 is the batch).
        types: the module classes to measure. Default: ``(nn.ReLU, nn.LeakyReLU, nn.PReLU)``.

    Returns:
        ``{layer_name: {"dead_fraction": ..., "zero_fraction": ..., "negative_fraction": ...}}``
        with ``float`` values in :math:`[0, 1]`, in the order the layers ran; empty if none ran.

    Raises:
        TypeError: if ``model`` is not a ``torch.nn.Module``, ``x`` is not a tensor or ``types``
            is not a non-empty tuple of module classes.
        ValueError: if a layer's input has no batch dim (fewer than 2 dims), an empty batch or
            no units.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.1))
        >>> stats = activation_stats(net, torch.randn(16, 3))
        >>> sorted(stats["1"])
        ['dead_fraction', 'negative_fraction', 'zero_fraction']
    """
    model = check_module("model", model)
    x = check_tensor("x", x)
    types = _check_types(types)
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad(), _hooks(model, types, inputs, outputs):
            model(x)
    finally:
        # Restore each module's own flag: a model may deliberately keep some parts in eval mode.
        for module, training in modes:
            module.training = training
    stats = {}
    for name, z in inputs.items():
        try:
            dead = dead_fraction(z)
        except ValueError as error:
            raise ValueError(f"rectifier layer {name!r}: {error}") from None
        y = outputs[name]
        stats[name] = {
            "dead_fraction": dead,
            "zero_fraction": (y == 0).sum().item() / y.numel(),
            "negative_fraction": (z < 0).sum().item() / z.numel(),
        }
    return stats
