"""Items of exercise set 1, *Why ReLU units die* (``solutions/01_motivation.ipynb``).

- ``01.born_dead_probability``: the chance that a random ReLU network outputs a constant for a
  given input, :math:`1 - (1 - 2^{-n})^L`.
- ``01.dead_unit_mask``: which units of a batch of pre-activations are inactive on every example.
- ``01.why_leaky``: a written answer on why Leaky ReLU reduces the dying-ReLU problem.
"""

from __future__ import annotations

import math

import torch

from rectifiers.grading.item import Case, ManualItem
from rectifiers.grading.items._common import per_case_function

NOTEBOOK = "01_motivation"


# ---------------------------------------------------------------------------------------------
# born_dead_probability(width, depth)


def born_dead_probability(width: int, depth: int) -> float:
    r"""Trusted :math:`1 - (1 - 2^{-n})^L`, computed without cancellation for wide layers."""
    # log1p/expm1 keep full relative precision where the naive formula would round 1 - 2^-n to 1.
    return -math.expm1(depth * math.log1p(-(2.0**-width)))


def _born_dead_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for _ in range(6):
        width = int(torch.randint(1, 17, (), generator=rng))
        # depth >= 2 in every hidden case: there the union bound L * 2^-n is not the answer.
        depth = int(torch.randint(2, 201, (), generator=rng))
        cases.append(Case((width, depth)))
    return cases


BORN_DEAD = per_case_function(
    "01.born_dead_probability",
    2,
    born_dead_probability,
    public=[Case((1, 1)), Case((3, 10)), Case((8, 50))],
    hidden=_born_dead_hidden,
    hint="A layer of n units is all-zero with probability 2^-n; the network survives only if "
    "every one of its L layers keeps at least one unit active.",
    tolerance={"rtol": 1e-9, "atol": 1e-15},
)


# ---------------------------------------------------------------------------------------------
# dead_unit_mask(pre_activations)


def dead_unit_mask(pre_activations: torch.Tensor) -> torch.Tensor:
    """Trusted mask: unit inactive (pre-activation <= 0) on every example of the batch."""
    return (pre_activations <= 0).flatten(1).all(dim=0)


def _dead_mask_case(rng: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype) -> Case:
    z = torch.randn(shape, generator=rng, dtype=torch.float64)
    units = z[0].numel()
    flat = z.reshape(shape[0], units)
    # Make every kind of unit appear: always negative (dead), zero or negative (dead, a
    # strict "< 0" misses it), exactly zero (dead), and mixed signs (alive).
    kinds = torch.arange(units)[torch.randperm(units, generator=rng)] % 4
    flat[:, kinds == 0] = -flat[:, kinds == 0].abs() - 0.1
    zero_or_negative = kinds == 1
    flat[:, zero_or_negative] = -flat[:, zero_or_negative].abs()
    if shape[0] > 1:
        flat[0, zero_or_negative] = 0.0
    flat[:, kinds == 2] = -0.0
    flat[0, kinds == 3] = flat[0, kinds == 3].abs() + 0.1
    if shape[0] > 1:
        flat[1, kinds == 3] = -flat[1, kinds == 3].abs() - 0.1
    return Case((flat.reshape(shape).to(dtype),))


def _dead_mask_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    # Inputs with 2, 3 and 4 dims every time: the mask must flatten all dims after the batch.
    for extra in (0, 1, 2, 1, 2):
        batch = int(torch.randint(2, 17, (), generator=rng))
        # At least 4 units, so that each of the four kinds above is present in every case.
        units = int(torch.randint(4, 9, (), generator=rng))
        shape = (batch, units, *(int(d) for d in torch.randint(1, 5, (extra,), generator=rng)))
        dtype = torch.float64 if bool(torch.randint(0, 2, (), generator=rng)) else torch.float32
        cases.append(_dead_mask_case(rng, shape, dtype))
    return cases


DEAD_MASK = per_case_function(
    "01.dead_unit_mask",
    2,
    dead_unit_mask,
    public=[
        Case((torch.tensor([[-1.0, 2.0, 0.0, -0.5], [-3.0, -1.0, 0.0, 0.0]]),)),
        Case((torch.tensor([[[-1.0, 1.0], [0.0, -2.0]], [[-2.0, -1.0], [-1.0, -2.0]]]),)),
    ],
    hidden=_dead_mask_hidden,
    hint="A unit is dead on the batch when its pre-activation is <= 0 (zero included) for every "
    "example; flatten all dimensions after the batch dimension and return a bool tensor.",
)


# ---------------------------------------------------------------------------------------------
# Written answer

WHY_LEAKY = ManualItem(
    "01.why_leaky",
    3,
    hint="Name the zero gradient on ReLU's negative side, what Leaky ReLU's slope changes in the "
    "weight update, and what it does not fix.",
)

ITEMS = [BORN_DEAD, DEAD_MASK, WHY_LEAKY]
