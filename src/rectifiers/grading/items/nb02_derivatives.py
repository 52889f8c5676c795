"""Items of exercise set 2, *Leaky ReLU and its derivative* (``solutions/02_derivatives.ipynb``).

- ``02.leaky_relu_from_scratch``: :math:`x` for :math:`x > 0`, :math:`\\alpha x` otherwise.
- ``02.relu_as_leaky``: ReLU as Leaky ReLU with :math:`\\alpha = 0`.
- ``02.leaky_outputs``: Leaky ReLU of a stated input, worked out by hand.
- ``02.leaky_relu_derivative``: the derivative with PyTorch autograd's convention at 0.

The references are :mod:`rectifiers.functional`'s, which equal PyTorch's kernels bit for bit.
"""

from __future__ import annotations

import torch

from rectifiers import functional
from rectifiers.grading.item import Case, ValueItem
from rectifiers.grading.items._common import ELEMENTWISE, FORMULA, per_case_function

NOTEBOOK = "02_derivatives"

#: The input and slope of the by-hand exercise (stated in the notebook).
LEAKY_OUTPUTS_X = (-4.0, -1.5, 0.0, 0.5, 3.0)
LEAKY_OUTPUTS_SLOPE = 0.1


def _random_input(rng: torch.Generator) -> torch.Tensor:
    """A random-shaped float32 or float64 tensor with exact zeros and negative zeros in it."""
    dims = int(torch.randint(1, 4, (), generator=rng))
    shape = tuple(int(d) for d in torch.randint(1, 6, (dims,), generator=rng))
    dtype = torch.float64 if bool(torch.randint(0, 2, (), generator=rng)) else torch.float32
    shape = (4, *shape)  # room for the two zeros and at least two nonzero values
    x = 3 * torch.randn(shape, generator=rng, dtype=torch.float64)
    # The kink must be tested every time: one +0 and one -0 at random places.
    plus, minus = torch.randperm(x.numel(), generator=rng)[:2].tolist()
    x.view(-1)[plus] = 0.0
    x.view(-1)[minus] = -0.0
    return x.to(dtype)


def _slopes(rng: torch.Generator) -> list[float]:
    """Slopes the wrong formulas disagree on: 0, in (0, 1), above 1 and negative."""
    u = torch.rand(4, generator=rng, dtype=torch.float64)
    return [
        0.0,
        round(float(0.01 + 0.5 * u[0]), 4),
        round(float(1.5 + 2 * u[1]), 4),
        round(float(-0.1 - 0.9 * u[2]), 4),
        round(float(0.001 + 0.2 * u[3]), 4),
    ]


def _slope_cases(rng: torch.Generator) -> list[Case]:
    return [Case((_random_input(rng), slope)) for slope in _slopes(rng)]


LEAKY_FROM_SCRATCH = per_case_function(
    "02.leaky_relu_from_scratch",
    2,
    functional.leaky_relu,
    public=[
        Case((torch.tensor([-2.0, -0.5, 0.0, 1.5]), 0.1)),
        Case((torch.tensor([[-1.0, 4.0], [2.0, -8.0]], dtype=torch.float64), 0.25)),
    ],
    hidden=_slope_cases,
    hint="Select x where x > 0 and negative_slope * x elsewhere (torch.where); max(x, a*x) is "
    "only right for a <= 1. Keep the input's shape and dtype.",
    tolerance=ELEMENTWISE,
)


def _relu_hidden(rng: torch.Generator) -> list[Case]:
    return [Case((_random_input(rng),)) for _ in range(4)]


RELU_AS_LEAKY = per_case_function(
    "02.relu_as_leaky",
    1,
    functional.relu,
    public=[Case((torch.tensor([-3.0, -0.5, 0.0, 2.0]),))],
    hidden=_relu_hidden,
    hint="Call your leaky_relu_from_scratch with negative_slope = 0.",
    tolerance=ELEMENTWISE,
)


LEAKY_OUTPUTS = ValueItem(
    "02.leaky_outputs",
    1,
    "leaky_outputs",
    expected=tuple(
        float(v)
        for v in functional.leaky_relu(
            torch.tensor(LEAKY_OUTPUTS_X, dtype=torch.float64), LEAKY_OUTPUTS_SLOPE
        ).tolist()
    ),
    hint="A tuple of five floats, one per input, in the order given: positive inputs pass "
    "unchanged, the others are multiplied by the slope.",
    **FORMULA,
)


LEAKY_DERIVATIVE = per_case_function(
    "02.leaky_relu_derivative",
    2,
    functional.leaky_relu_grad,
    public=[
        Case((torch.tensor([-2.0, 0.0, 3.0]), 0.1)),
        Case((torch.tensor([[1.0, -1.0], [-0.0, 5.0]], dtype=torch.float64), 0.3)),
    ],
    hidden=_slope_cases,
    hint="1 where x > 0 and negative_slope elsewhere: autograd gives x = 0 the slope of the "
    "negative side. Same shape and dtype as x.",
    tolerance=ELEMENTWISE,
)

ITEMS = [LEAKY_FROM_SCRATCH, RELU_AS_LEAKY, LEAKY_OUTPUTS, LEAKY_DERIVATIVE]
