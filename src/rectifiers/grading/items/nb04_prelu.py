"""Items of exercise set 4, *Learning the slope: PReLU* (``solutions/04_prelu.ipynb``).

- ``04.prelu_slope_grad``: :math:`\\partial L / \\partial a_c`, summed over every position that
  shares the slope (one shared slope, or one per channel along dim 1).
- ``04.prelu_input_grad``: :math:`\\partial L / \\partial x`.
- ``04.count_prelu_slopes``: how many learnable slopes the PReLU modules of a network hold.

The references are :func:`rectifiers.functional.prelu_grads`, equal bit for bit to autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from rectifiers import functional
from rectifiers.grading.item import Case, ModuleSpec
from rectifiers.grading.items._common import ELEMENTWISE, SUMMED, mlp_spec, per_case_function

NOTEBOOK = "04_prelu"


def prelu_slope_grad(
    x: torch.Tensor, weight: torch.Tensor, grad_output: torch.Tensor
) -> torch.Tensor:
    """Trusted gradient with respect to the slopes."""
    return functional.prelu_grads(x, weight, grad_output)[1]


def prelu_input_grad(
    x: torch.Tensor, weight: torch.Tensor, grad_output: torch.Tensor
) -> torch.Tensor:
    """Trusted gradient with respect to the input."""
    return functional.prelu_grads(x, weight, grad_output)[0]


def _prelu_case(
    rng: torch.Generator, *, channel_wise: bool, spatial: int, dtype: torch.dtype
) -> Case:
    batch = int(torch.randint(1, 6, (), generator=rng))
    # At least 2 channels: with one channel, shared and channel-wise slopes coincide.
    channels = int(torch.randint(2, 7, (), generator=rng))
    shape = (batch, channels, *(int(d) for d in torch.randint(1, 6, (spatial,), generator=rng)))
    x = 2 * torch.randn(shape, generator=rng, dtype=torch.float64)
    # Exact zeros sit on PReLU's negative side in autograd; put a few in every case.
    x = torch.where(
        torch.rand(shape, generator=rng, dtype=torch.float64) < 0.1, torch.zeros_like(x), x
    )
    x.view(-1)[0] = 0.0
    # Slopes of both signs and above 1: the formulas must not assume 0 <= a <= 1.
    weight = 3 * torch.rand(channels if channel_wise else 1, generator=rng, dtype=torch.float64) - 1
    grad_output = torch.randn(shape, generator=rng, dtype=torch.float64)
    return Case((x.to(dtype), weight.to(dtype), grad_output.to(dtype)))


def _prelu_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for channel_wise, spatial in ((False, 0), (False, 2), (True, 0), (True, 1), (True, 2)):
        dtype = torch.float64 if bool(torch.randint(0, 2, (), generator=rng)) else torch.float32
        cases.append(_prelu_case(rng, channel_wise=channel_wise, spatial=spatial, dtype=dtype))
    # A 1-D input has no channel dimension: a single shared slope.
    x = torch.randn(int(torch.randint(3, 12, (), generator=rng)), generator=rng)
    x[0] = 0.0
    cases.append(
        Case(
            (
                x,
                torch.tensor([float(torch.rand((), generator=rng)) + 0.5]),
                torch.randn(x.shape, generator=rng),
            )
        )
    )
    return cases


_PUBLIC = [
    Case((torch.tensor([-2.0, 0.0, 3.0]), torch.tensor([0.25]), torch.ones(3))),
    Case(
        (
            torch.tensor([[-1.0, 2.0, -3.0], [4.0, -5.0, 0.0]]),
            torch.tensor([0.25]),
            torch.tensor([[1.0, 1.0, 2.0], [1.0, -1.0, 1.0]]),
        )
    ),
    Case(
        (
            torch.tensor(
                [[[-1.0, 2.0], [-3.0, -4.0]], [[0.5, -0.5], [1.0, 2.0]]], dtype=torch.float64
            ),
            torch.tensor([0.1, 0.2], dtype=torch.float64),
            torch.tensor([[[1.0, 1.0], [1.0, 2.0]], [[3.0, 4.0], [1.0, 1.0]]], dtype=torch.float64),
        )
    ),
]

SLOPE_GRAD = per_case_function(
    "04.prelu_slope_grad",
    3,
    prelu_slope_grad,
    public=_PUBLIC,
    hidden=_prelu_hidden,
    hint="Per position the slope's derivative is x where x <= 0 and 0 elsewhere; multiply by "
    "grad_output and sum over every position that shares the slope (all of them for one slope, "
    "all but dim 1 for one slope per channel). The result has weight's shape and dtype.",
    tolerance=SUMMED,
)

INPUT_GRAD = per_case_function(
    "04.prelu_input_grad",
    2,
    prelu_input_grad,
    public=_PUBLIC,
    hidden=_prelu_hidden,
    hint="grad_output where x > 0, slope * grad_output where x <= 0 (zero included), with the "
    "slopes broadcast along dim 1, the channel dimension.",
    tolerance=ELEMENTWISE,
)


# ---------------------------------------------------------------------------------------------
# count_prelu_slopes(model)


def count_prelu_slopes(model: nn.Module) -> int:
    """Trusted: the number of slope parameters held by the network's PReLU modules."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.PReLU))


def _cnn_spec(rng: torch.Generator, channels: list[int], shared: list[bool]) -> ModuleSpec:
    layers: list[tuple[str, dict]] = []
    for c_in, c_out, one in zip(channels[:-1], channels[1:], shared, strict=True):
        layers.append(
            ("conv1d", {"in_channels": c_in, "out_channels": c_out, "kernel_size": 3, "padding": 1})
        )
        layers.append(("prelu", {"num_parameters": 1 if one else c_out}))
    layers += [("flatten", {}), ("linear", {"in_features": channels[-1] * 8, "out_features": 10})]
    return ModuleSpec(tuple(layers), seed=int(torch.randint(0, 2**31, (), generator=rng)))


def _count_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for shared in (
        [False, False],
        [True, False, False],
        [False, True, False],
        [False, False, True],
    ):
        channels = [1] + [int(c) for c in torch.randint(2, 40, (len(shared),), generator=rng)]
        cases.append(Case((_cnn_spec(rng, channels, shared),)))
    # PReLU next to LeakyReLU (no parameters) and a Linear layer with no PReLU after it.
    width = int(torch.randint(5, 50, (), generator=rng))
    spec = mlp_spec(
        (7, width, width, 3),
        [("leaky_relu", {}), ("prelu", {"num_parameters": width})],
        seed=int(torch.randint(0, 2**31, (), generator=rng)),
    )
    cases.append(Case((spec,)))
    return cases


COUNT_SLOPES = per_case_function(
    "04.count_prelu_slopes",
    1,
    count_prelu_slopes,
    public=[
        Case((mlp_spec((4, 6, 2), [("prelu", {})]),)),
        Case(
            (
                ModuleSpec(
                    (
                        ("conv1d", {"in_channels": 1, "out_channels": 8, "kernel_size": 3}),
                        ("prelu", {"num_parameters": 8}),
                        ("conv1d", {"in_channels": 8, "out_channels": 16, "kernel_size": 3}),
                        ("prelu", {"num_parameters": 16}),
                    ),
                    seed=0,
                ),
            )
        ),
    ],
    hidden=_count_hidden,
    hint="Walk model.modules(), keep the nn.PReLU ones and add up the number of elements of "
    "their weight; return an int.",
)

ITEMS = [SLOPE_GRAD, INPUT_GRAD, COUNT_SLOPES]
