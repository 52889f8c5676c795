r"""When a training run counts as finished: the plateau criterion the experiments state."""

from __future__ import annotations

import torch

from rectifiers._validation import check_float_tensor, check_positive_int

__all__ = ["plateau_change"]


def plateau_change(accuracy, window: int = 5) -> torch.Tensor:
    r"""How much the held-out accuracy still moved at the end of training, per network.

    With records :math:`\text{acc}_0, \ldots, \text{acc}_{R-1}` (e.g. one per epoch), the
    change is the mean over the last ``window`` records minus the mean over the ``window``
    records before them,

    .. math::
        \tfrac{1}{w} \textstyle\sum_{r=R-w}^{R-1} \text{acc}_r
        - \tfrac{1}{w} \sum_{r=R-2w}^{R-w-1} \text{acc}_r .

    A run has reached a plateau at tolerance :math:`\tau` when its absolute change is below
    :math:`\tau` (the chapters use one percentage point, as chapter 01's
    ``DyingRun.plateaued`` does). Averaging a few records smooths the noise of single
    evaluations.

    Args:
        accuracy: a floating-point tensor of shape :math:`(R, *)`, records first.
        window: records per half, at least 1, with :math:`2w \leq R`.

    Returns:
        The change, float64, of shape :math:`(*)`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if there are fewer than ``2 * window`` records.

    Example:
        >>> acc = torch.tensor([0.1, 0.5, 0.6, 0.62, 0.63, 0.63])
        >>> round(plateau_change(acc, window=2).item(), 3)
        0.02
    """
    accuracy = check_float_tensor("accuracy", accuracy)
    window = check_positive_int("window", window)
    if accuracy.dim() == 0 or accuracy.shape[0] < 2 * window:
        raise ValueError(
            f"accuracy must have at least 2 * window = {2 * window} records along dim 0, "
            f"got shape {tuple(accuracy.shape)}"
        )
    acc = accuracy.double()
    return acc[-window:].mean(dim=0) - acc[-2 * window : -window].mean(dim=0)
