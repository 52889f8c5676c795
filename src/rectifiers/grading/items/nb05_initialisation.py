"""Items of exercise set 5, *Initialisation that matches the slope*.

Source: ``solutions/05_initialisation.ipynb``.

- ``05.matched_gain``: He et al.'s gain for Leaky ReLU, :math:`\\sqrt{2 / (1 + \\alpha^2)}`.
- ``05.init_leaky_``: Kaiming-normal initialisation with the matching slope, checked
  statistically on layers large enough that a wrong gain, the wrong fan or a uniform
  distribution fails with overwhelming probability, plus exact checks of zero biases and of the
  PReLU slopes left alone.
- ``05.mismatch_growth``: how much the forward second moment grows over ``depth`` layers when
  the initialisation assumes one slope and the activation has another.
- ``05.fan_mode``: a written answer on ``mode="fan_in"`` versus ``mode="fan_out"``.

The references are :mod:`rectifiers.init`'s.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rectifiers import init
from rectifiers.grading import wire
from rectifiers.grading.item import Case, FunctionItem, ManualItem, ModuleSpec
from rectifiers.grading.items._common import FORMULA, per_case_function

NOTEBOOK = "05_initialisation"


def _gain_hidden(rng: torch.Generator) -> list[Case]:
    u = torch.rand(5, generator=rng, dtype=torch.float64)
    # Slopes away from 0 and +-1, where a formula without the square or without the root agrees.
    slopes = [
        0.02 + 0.5 * u[0],
        1.5 + 3 * u[1],
        -(0.05 + 0.6 * u[2]),
        -(1.5 + 2 * u[3]),
        0.2 + 0.5 * u[4],
    ]
    return [Case((round(float(s), 4),)) for s in slopes]


MATCHED_GAIN = per_case_function(
    "05.matched_gain",
    1,
    init.leaky_relu_gain,
    public=[Case((0.0,)), Case((0.01,)), Case((1.0,)), Case((0.2,))],
    hidden=_gain_hidden,
    hint=(
        "Keeping the second moment means gain^2 * (1 + a^2) / 2 = 1; "
        "return the square root, a float."
    ),
    tolerance=FORMULA,
)


# ---------------------------------------------------------------------------------------------
# init_leaky_(module, negative_slope)

#: Largest relative error of a weight's sample standard deviation. Every checked layer has at
#: least 30 000 weights, where the sample std's own relative error is about
#: 1 / sqrt(2 n) < 0.41 %: the bound is more than 7 standard errors away for a right answer,
#: while the usual mistakes (slope ignored, gain not square-rooted, fan_out, gain 1) are off by
#: at least 7 %.
STD_RTOL = 0.03
#: Largest |excess kurtosis| accepted: 0 for a normal distribution (standard error about
#: sqrt(24 / n) < 0.03), -1.2 for the uniform one of ``kaiming_uniform_``.
KURTOSIS_TOL = 0.4
#: The mean must be within this many standard errors of 0.
MEAN_SIGMAS = 6.0

_WEIGHTED = (nn.Linear, nn.Conv1d)


def _fan_in(weight: torch.Tensor) -> int:
    return weight.shape[1] * math.prod(weight.shape[2:])


class _InitItem(FunctionItem):
    """Statistical check of the learner's in-place initialisation of a grader-built module."""

    def reference(self, case: Case) -> Any:
        spec, slope = case.args
        module = spec.build()
        expected: dict[str, Any] = {
            "names": sorted(module.state_dict()),
            "std": {},
            "zero": [],
            "same": {},
        }
        for prefix, m in module.named_modules():
            dot = f"{prefix}." if prefix else ""
            if isinstance(m, _WEIGHTED):
                expected["std"][dot + "weight"] = init.kaiming_std(_fan_in(m.weight), slope)
                if m.bias is not None:
                    expected["zero"].append(dot + "bias")
            elif isinstance(m, nn.PReLU):
                expected["same"][dot + "weight"] = m.weight.detach().clone()
        return expected

    def compare(self, student_output: Any, expected: Any) -> tuple[bool, str]:
        args = student_output.get("args") if isinstance(student_output, dict) else None
        if not isinstance(args, tuple) or not args or not isinstance(args[0], wire.ModuleState):
            return False, "the grader could not read the module back after the call"
        state = args[0].state
        if sorted(state) != expected["names"]:
            return (
                False,
                "the module's parameters changed names: "
                f"expected {expected['names']}, got {sorted(state)}",
            )
        for name, std in expected["std"].items():
            w = state[name].detach().to(torch.float64).reshape(-1)
            n = w.numel()
            mean = float(w.mean())
            sample_std = float(w.std(correction=0))
            if not abs(sample_std / std - 1) <= STD_RTOL:
                return False, (
                    f"{name} has standard deviation {sample_std:.4g}, "
                    "expected gain / sqrt(fan_in) = "
                    f"{std:.4g} (within {STD_RTOL:.0%})"
                )
            if abs(mean) > MEAN_SIGMAS * std / math.sqrt(n):
                return False, f"{name} has mean {mean:.3g}; Kaiming initialisation is centred on 0"
            excess = float(((w - mean) ** 4).mean()) / sample_std**4 - 3
            if abs(excess) > KURTOSIS_TOL:
                return False, (
                    f"{name} does not look normally distributed (excess kurtosis {excess:.2f}, "
                    "0 for a normal, -1.2 for a uniform distribution): use kaiming_normal_"
                )
        for name in expected["zero"]:
            if torch.count_nonzero(state[name]):
                return False, f"{name} must be all zeros"
        for name, before in expected["same"].items():
            if not torch.equal(state[name].to(before.dtype), before):
                return False, f"{name} (a PReLU slope) must be left as it was"
        return True, ""


def _init_spec(rng: torch.Generator, slope: float, *, prelu_first: bool) -> ModuleSpec:
    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (), generator=rng))

    # The module is never run, only initialised: the layers need not fit together. Each weight
    # has at least 30 000 entries (see STD_RTOL).
    width = draw(128, 192)
    narrow = draw(48, 64)
    layers: list[tuple[str, dict]] = [
        ("conv1d", {"in_channels": draw(48, 64), "out_channels": draw(128, 160), "kernel_size": 5}),
        ("leaky_relu", {"negative_slope": slope}),
        ("linear", {"in_features": draw(256, 400), "out_features": width}),
        (
            "prelu",
            {
                "num_parameters": width if prelu_first else 1,
                "init": round(float(torch.rand((), generator=rng)), 4),
            },
        ),
        # fan_out is 16 times fan_in here: mode="fan_out" is far off.
        ("linear", {"in_features": narrow, "out_features": 16 * narrow, "bias": False}),
        ("prelu", {"num_parameters": 1, "init": 0.25}),
    ]
    return ModuleSpec(tuple(layers), seed=int(torch.randint(0, 2**31, (), generator=rng)))


def _init_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for sign, (low, high), prelu_first in (
        (1, (0.4, 0.7), True),
        (-1, (1.4, 2.0), False),
        (1, (1.4, 2.0), True),
    ):
        # |slope| away from 0 and 1, where ignoring it or forgetting the square root passes.
        magnitude = low + (high - low) * float(torch.rand((), generator=rng))
        slope = round(sign * magnitude, 4)
        seed = int(torch.randint(0, 2**31, (), generator=rng))
        cases.append(Case((_init_spec(rng, slope, prelu_first=prelu_first), slope), seed=seed))
    return cases


_PUBLIC_INIT_SPEC = ModuleSpec(
    (
        ("linear", {"in_features": 300, "out_features": 200}),
        ("prelu", {"num_parameters": 200, "init": 0.1}),
        ("conv1d", {"in_channels": 64, "out_channels": 128, "kernel_size": 5}),
        ("leaky_relu", {"negative_slope": 0.5}),
    ),
    seed=0,
)

INIT_LEAKY = _InitItem(
    "05.init_leaky_",
    3,
    "init_leaky_",
    reference=init.kaiming_init_,
    public=[Case((_PUBLIC_INIT_SPEC, 0.5), seed=0), Case((_PUBLIC_INIT_SPEC, 0.0), seed=1)],
    hidden=_init_hidden,
    capture_args=True,
    hint="For every nn.Linear and nn.Conv1d/2d: nn.init.kaiming_normal_(weight, a=negative_slope, "
    "nonlinearity='leaky_relu') (mode='fan_in', the default), then zero the bias if there is one; "
    "do not touch other modules.",
    credit="all",
)


# ---------------------------------------------------------------------------------------------
# mismatch_growth(actual_slope, assumed_slope, depth)


def mismatch_growth(actual_slope: float, assumed_slope: float, depth: int) -> float:
    r"""The trusted growth factor.

    .. math:: \left(\frac{1 + \alpha_\text{actual}^2}{1 + \alpha_\text{assumed}^2}\right)^{L}
    """
    return ((1.0 + actual_slope**2) / (1.0 + assumed_slope**2)) ** depth


def _growth_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for _ in range(6):
        actual, assumed = (
            round(float(v), 3) for v in 3 * torch.rand(2, generator=rng, dtype=torch.float64) - 1.5
        )
        if abs(abs(actual) - abs(assumed)) < 0.1:
            assumed = round(-assumed + 0.3, 3)  # equal magnitudes make every formula give 1
        depth = int(torch.randint(2, 41, (), generator=rng))
        cases.append(Case((actual, assumed, depth)))
    return cases


MISMATCH_GROWTH = per_case_function(
    "05.mismatch_growth",
    2,
    mismatch_growth,
    public=[Case((0.2, 0.2, 10)), Case((0.0, 1.0, 1)), Case((1.0, 0.0, 4)), Case((0.3, 0.0, 20))],
    hidden=_growth_hidden,
    hint="Per layer the second moment is multiplied by gain^2 * (1 + actual^2) / 2, with gain^2 = "
    "2 / (1 + assumed^2); over depth layers raise that factor to the power depth.",
    tolerance=FORMULA,
)

FAN_MODE = ManualItem(
    "05.fan_mode",
    2,
    hint="Say which quantity each mode keeps stable (forward activations vs backward gradients), "
    "why, and when the difference matters.",
)

ITEMS = [MATCHED_GAIN, INIT_LEAKY, MISMATCH_GROWTH, FAN_MODE]
