"""What the course's item modules share: tolerances, the partial-credit function item, MLP specs.

Not an item module itself (its name does not match ``nbNN_<topic>``), so the registry skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..item import Case, FunctionItem, ModuleSpec

#: A float64 result of a closed formula: only the order of the operations may differ.
FORMULA = {"rtol": 1e-9, "atol": 1e-12}
#: An elementwise tensor result, float32 or float64: one rounding per element.
ELEMENTWISE = {"rtol": 1e-6, "atol": 1e-7}
#: A result summed over many terms, possibly in float32 (``FunctionItem``'s own default).
SUMMED = {"rtol": 1e-5, "atol": 1e-6}


def per_case_function(
    item_id: str,
    points: float,
    reference: Callable[..., Any],
    *,
    public: Sequence[Case],
    hidden: Callable[[torch.Generator], Sequence[Case]],
    hint: str,
    tolerance: Mapping[str, float] = SUMMED,
) -> FunctionItem:
    """A ``FunctionItem`` with partial credit (``credit="cases"``) for the function named after
    the item id: ``"02.relu_as_leaky"`` asks for ``relu_as_leaky``.

    Every course function item but those needing their own class is one of these; ``tolerance``
    is one of the dicts above (or its own ``{"rtol": ..., "atol": ...}``).
    """
    return FunctionItem(
        item_id,
        points,
        item_id.split(".", 1)[1],
        reference=reference,
        public=public,
        hidden=hidden,
        hint=hint,
        credit="cases",
        **tolerance,
    )


def mlp_spec(
    widths: Sequence[int], activations: Sequence[tuple[str, dict]], seed: int = 0
) -> ModuleSpec:
    """Linear layers ``widths[0] -> widths[1] -> ...`` with ``activations[k]`` (a ``ModuleSpec``
    layer) after the k-th of them: one activation fewer than there are Linear layers."""
    if len(activations) != len(widths) - 2:
        raise ValueError(
            f"activations must have len(widths) - 2 = {len(widths) - 2} layers, "
            f"got {len(activations)}"
        )
    layers: list[tuple[str, dict]] = []
    for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(("linear", {"in_features": fan_in, "out_features": fan_out}))
        if k < len(activations):
            layers.append(activations[k])
    return ModuleSpec(tuple(layers), seed=seed)
