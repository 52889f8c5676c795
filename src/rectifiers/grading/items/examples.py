"""A small, real exercise set: one item of each kind, used by the grader's own tests.

Its notebook is ``00_examples`` (``tests/fixtures/grading/solutions/00_examples.ipynb``). The
items also serve as templates for the course's ``nbNN_*`` modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..item import Case, FunctionItem, ManualItem, ModuleItem, ValueItem
from ..wire import ModuleState

NOTEBOOK = "00_examples"


def _random_tensor(rng: torch.Generator, max_dims: int = 3) -> torch.Tensor:
    """Normal values scaled by 3, a random shape and dtype, with some exact zeros."""
    dims = int(torch.randint(1, max_dims + 1, (), generator=rng))
    shape = tuple(int(s) for s in torch.randint(1, 7, (dims,), generator=rng))
    dtype = (torch.float32, torch.float64)[int(torch.randint(0, 2, (), generator=rng))]
    x = 3 * torch.randn(shape, generator=rng, dtype=torch.float64)
    x = torch.where(
        torch.rand(shape, generator=rng, dtype=torch.float64) < 0.15, torch.zeros_like(x), x
    )
    return x.to(dtype)


def _random_slope(rng: torch.Generator) -> float:
    return round(float(torch.rand((), generator=rng, dtype=torch.float64)) * 0.5, 4)


def _leaky_relu_reference(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope)


def _leaky_relu_hidden(rng: torch.Generator) -> list[Case]:
    cases = [Case((_random_tensor(rng),), {"negative_slope": _random_slope(rng)}) for _ in range(4)]
    cases.append(Case((_random_tensor(rng),), {"negative_slope": 0.0}))
    cases.append(Case((_random_tensor(rng),)))
    return cases


LEAKY_RELU = FunctionItem(
    "ex.leaky_relu",
    2,
    "leaky_relu",
    reference=_leaky_relu_reference,
    public=[
        Case((torch.tensor([-2.0, -0.5, 0.0, 1.5]),), {"negative_slope": 0.1}),
        Case(
            (torch.tensor([[-1.0, 2.0], [3.0, -4.0]], dtype=torch.float64),),
            {"negative_slope": 0.2},
        ),
        Case((torch.tensor([-3.0, 3.0]),)),
    ],
    hidden=_leaky_relu_hidden,
    hint=(
        "Keep x where x > 0 and scale it by negative_slope elsewhere; "
        "keep the input's shape and dtype."
    ),
)


def _leaky_relu_grad_reference(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    # PyTorch's autograd uses the negative side's slope at exactly zero.
    return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))


LEAKY_RELU_GRAD = FunctionItem(
    "ex.leaky_relu_grad",
    2,
    "leaky_relu_grad",
    reference=_leaky_relu_grad_reference,
    public=[
        Case((torch.tensor([-2.0, 0.0, 3.0]),), {"negative_slope": 0.1}),
        Case((torch.tensor([[0.5, -0.5]], dtype=torch.float64),)),
    ],
    hidden=_leaky_relu_hidden,
    hint="The derivative is 1 where x > 0 and negative_slope where x <= 0 (PyTorch's choice at 0).",
)

DEFAULT_SLOPE = ValueItem(
    "ex.default_slope",
    1,
    "default_negative_slope",
    expected=0.01,
    hint="Look up the default negative_slope of torch.nn.LeakyReLU.",
)


def _prelu_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return F.prelu(x, state["weight"])


def _prelu_state(module: ModuleState, case: Case) -> tuple[bool, str]:
    num_parameters = case.kwargs.get("num_parameters", case.args[0] if case.args else 1)
    init = case.kwargs.get("init", 0.25)
    if module.parameters != ("weight",):
        return (
            False,
            "the module must have exactly one parameter, `weight`; "
            f"it has {list(module.parameters)}",
        )
    weight = module.state["weight"]
    if tuple(weight.shape) != (num_parameters,):
        return False, f"`weight` must have shape ({num_parameters},), got {tuple(weight.shape)}"
    start = weight.double()
    if not weight.dtype.is_floating_point or not torch.allclose(
        start, torch.full_like(start, init)
    ):
        return False, f"`weight` must start with every slope equal to init={init}"
    return True, ""


def _prelu_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for _ in range(3):
        channels = int(torch.randint(1, 6, (), generator=rng))
        init = _random_slope(rng)
        inputs = tuple(
            (
                3
                * torch.randn(
                    int(torch.randint(1, 5, (), generator=rng)), channels, 5, generator=rng
                ),
            )
            for _ in range(2)
        )
        cases.append(Case((), {"num_parameters": channels, "init": init}, inputs=inputs))
    return cases


PRELU_MODULE = ModuleItem(
    "ex.prelu_module",
    3,
    "ChannelPReLU",
    forward=_prelu_forward,
    check_state=_prelu_state,
    public=[
        Case((), {}, inputs=((torch.tensor([[-2.0, 0.0, 2.0]]),),)),
        Case(
            (),
            {"num_parameters": 2, "init": 0.1},
            inputs=((torch.tensor([[[-1.0, 1.0]], [[-3.0, 4.0]]]).transpose(1, 2),),),
        ),
    ],
    hidden=_prelu_hidden,
    hint=(
        "One learnable slope per channel (dimension 1), registered as nn.Parameter `weight`, "
        "filled with init."
    ),
)

WHY_LEAKY = ManualItem(
    "ex.why_leaky",
    2,
    hint="Two or three sentences on what the negative slope changes for a unit's gradient.",
)

ITEMS = [LEAKY_RELU, LEAKY_RELU_GRAD, DEFAULT_SLOPE, PRELU_MODULE, WHY_LEAKY]
