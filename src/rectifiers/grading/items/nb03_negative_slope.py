"""Items of exercise set 3, *ReLU, Leaky ReLU and PReLU side by side*.

Source: ``solutions/03_negative_slope.ipynb``.

- ``03.mlp``: the class ``MLP(activation)``, the same 40-64-64-10 MLP with one of three
  activations. The grader loads the learner's parameters into a trusted copy of the architecture
  and recomputes the outputs, so the activation and the layer order are checked, not just the
  parameter shapes (ReLU and Leaky ReLU networks have identical parameters).
- ``03.zero_activation_fraction``: the share of hidden activations that are exactly zero.
- ``03.comparison``: the learner's own training results, checked against honest plausibility
  bounds (a value the learner computed cannot be recomputed in the grader's time budget).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rectifiers.grading.item import AutoItem, Case, ModuleItem
from rectifiers.grading.items._common import FORMULA, SUMMED, mlp_spec, per_case_function

NOTEBOOK = "03_negative_slope"

#: The three activations of the exercise, as ``MLP``'s argument.
ACTIVATIONS = ("relu", "leaky_relu", "prelu")
#: Layer widths of the exercise's MLP: MNIST-1D's 40 inputs, two hidden layers, 10 classes.
SIZES = (40, 64, 64, 10)
#: Leaky ReLU's slope in the exercise (``nn.LeakyReLU``'s default).
LEAKY_SLOPE = 0.01
#: ``nn.PReLU()``'s initial slope.
PRELU_INIT = 0.25


# ---------------------------------------------------------------------------------------------
# MLP(activation)


def reference_mlp(activation: str) -> nn.Sequential:
    """The exercise's architecture, built by trusted code (parameters are overwritten)."""

    def act() -> nn.Module:
        if activation == "relu":
            return nn.ReLU()
        if activation == "leaky_relu":
            return nn.LeakyReLU(LEAKY_SLOPE)
        return nn.PReLU()

    layers: list[nn.Module] = []
    for k, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if k < len(SIZES) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class _MLPItem(ModuleItem):
    """``ModuleItem`` whose trusted forward depends on the case's activation."""

    def compare(self, student_output: Any, expected: Case) -> tuple[bool, str]:
        received = self._received(student_output, expected)
        if isinstance(received, str):
            return False, received
        module, outputs = received
        activation = expected.args[0]
        trusted = reference_mlp(activation)
        wanted = {name: tuple(t.shape) for name, t in trusted.state_dict().items()}
        got = {name: tuple(t.shape) for name, t in module.state.items()}
        if got != wanted:
            return False, (
                f"for activation={activation!r} the parameters should be {wanted} "
                f"(Linear, activation, Linear, activation, Linear in one nn.Sequential), got {got}"
            )
        if any(not t.dtype.is_floating_point for t in module.state.values()):
            return False, "every parameter must be a floating-point tensor"
        if sorted(module.parameters) != sorted(wanted):
            # named_parameters() lists a shared parameter once: one nn.PReLU used for both
            # hidden layers would make them learn a single slope together.
            return False, (
                f"the parameters should be {sorted(wanted)}, got {sorted(module.parameters)}: "
                "give each hidden layer its own activation module"
            )
        if activation == "prelu":
            for name in ("1.weight", "3.weight"):
                if not torch.equal(
                    module.state[name].double(), torch.full((1,), PRELU_INIT, dtype=torch.float64)
                ):
                    return (
                        False,
                        f"the PReLU slope {name} should start at nn.PReLU()'s default {PRELU_INIT}",
                    )
        trusted.load_state_dict({k: t.float() for k, t in module.state.items()})
        for index, inputs in enumerate(expected.inputs):
            with torch.no_grad():
                reference = trusted(*inputs)
            where = f"MLP({activation!r}) output {index}"
            ok, detail = self._within_tolerance(outputs[index], reference, where)
            if not ok:
                return (
                    False,
                    detail
                    + " (the parameters are right: check the activations and the layer order)",
                )
        return True, ""


def _mlp_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for activation in ACTIVATIONS:
        inputs = []
        for _ in range(2):
            batch = int(torch.randint(1, 33, (), generator=rng))
            scale = 1 + 3 * float(torch.rand((), generator=rng))
            inputs.append((scale * torch.randn(batch, SIZES[0], generator=rng),))
        seed = int(torch.randint(0, 2**31, (), generator=rng))
        cases.append(Case((activation,), inputs=tuple(inputs), seed=seed))
    return cases


def _unused_forward(state: dict[str, torch.Tensor], *inputs: Any) -> Any:  # pragma: no cover
    raise AssertionError("_MLPItem.compare builds the trusted forward itself")


_PUBLIC_X = torch.linspace(-3, 3, 2 * SIZES[0]).reshape(2, SIZES[0])

MLP = _MLPItem(
    "03.mlp",
    3,
    "MLP",
    forward=_unused_forward,
    public=[Case((activation,), inputs=((_PUBLIC_X,),), seed=0) for activation in ACTIVATIONS],
    hidden=_mlp_hidden,
    hint="MLP(activation) is an nn.Sequential of Linear(40, 64), act, Linear(64, 64), act, "
    "Linear(64, 10), with act nn.ReLU(), nn.LeakyReLU(0.01) or nn.PReLU() (a new one per layer), "
    "and no activation after the last Linear.",
    **SUMMED,
)


# ---------------------------------------------------------------------------------------------
# zero_activation_fraction(model, x)

_ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.PReLU)


@torch.no_grad()
def zero_activation_fraction(model: nn.Module, x: torch.Tensor) -> float:
    """Trusted: zeros among the outputs of every activation module, over the batch."""
    outputs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: outputs.append(out))
        for m in model.modules()
        if isinstance(m, _ACTIVATION_TYPES)
    ]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    zeros = sum(int((out == 0).sum()) for out in outputs)
    return zeros / sum(out.numel() for out in outputs)


def _activation_layer(rng: torch.Generator, kind: str, width: int) -> tuple[str, dict]:
    u = round(float(torch.rand((), generator=rng)), 3)
    if kind == "relu":
        return ("relu", {})
    if kind == "leaky":
        return ("leaky_relu", {"negative_slope": 0.05 + 0.5 * u})
    if kind == "leaky0":
        # A Leaky ReLU with slope 0 is a ReLU: counting by module type gets it wrong.
        return ("leaky_relu", {"negative_slope": 0.0})
    if kind == "prelu0":
        return ("prelu", {"num_parameters": width, "init": 0.0})
    return ("prelu", {"num_parameters": 1, "init": 0.1 + 0.4 * u})


def _zero_fraction_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for kinds in (("relu", "leaky"), ("leaky0", "prelu"), ("prelu0", "leaky"), ("relu", "prelu")):
        widths = [int(w) for w in torch.randint(3, 33, (4,), generator=rng)]
        activations = [_activation_layer(rng, kind, widths[k + 1]) for k, kind in enumerate(kinds)]
        spec = mlp_spec(widths, activations, seed=int(torch.randint(0, 2**31, (), generator=rng)))
        batch = int(torch.randint(2, 40, (), generator=rng))
        shift = float(torch.randn((), generator=rng))
        x = torch.randn(batch, widths[0], generator=rng) + shift
        cases.append(Case((spec, x)))
    return cases


def _public_zero_fraction() -> list[Case]:
    x = torch.linspace(-2, 2, 24).reshape(6, 4)
    relu = mlp_spec((4, 8, 3), [("relu", {})])
    leaky = mlp_spec((4, 8, 8, 3), [("leaky_relu", {"negative_slope": 0.1}), ("relu", {})], seed=1)
    return [Case((relu, x)), Case((leaky, x))]


ZERO_FRACTION = per_case_function(
    "03.zero_activation_fraction",
    2,
    zero_activation_fraction,
    public=_public_zero_fraction(),
    hidden=_zero_fraction_hidden,
    hint="Record the output of every nn.ReLU, nn.LeakyReLU and nn.PReLU module (forward hooks), "
    "count the entries exactly equal to 0 and divide by the number of entries; return a float.",
    tolerance=FORMULA,
)


# ---------------------------------------------------------------------------------------------
# comparison: the learner's training results

#: Plausibility bounds, chosen with margin around what the solution's training gives, and far
#: from what the usual mistakes give (accuracy in percent, chance level, zeros counted as
#: non-positive pre-activations, the keys swapped).
ACCURACY_RANGE = (0.40, 1.0)
RELU_ZERO_RANGE = (0.15, 0.95)
LEAKY_ZERO_MAX = 0.01


class _ComparisonItem(AutoItem):
    """The learner's results dict, judged against plausibility bounds (not an exact answer)."""

    mode = "value"

    def public_cases(self) -> list[Case]:
        return [Case()]

    def reference(self, case: Case) -> Any:
        return None

    def compare(self, student_output: Any, expected: Any) -> tuple[bool, str]:
        if not isinstance(student_output, dict) or set(student_output) != set(ACTIVATIONS):
            return False, f"`{self.name}` must be a dict with exactly the keys {list(ACTIVATIONS)}"
        for activation in ACTIVATIONS:
            entry = student_output[activation]
            if not isinstance(entry, dict) or set(entry) != {"val_accuracy", "zero_fraction"}:
                return (
                    False,
                    f"`{self.name}[{activation!r}]` must be a dict with keys "
                    "'val_accuracy' and 'zero_fraction'",
                )
            for key, value in entry.items():
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                ):
                    return False, f"`{self.name}[{activation!r}][{key!r}]` must be a finite float"
                if not 0 <= value <= 1:
                    return (
                        False,
                        f"`{self.name}[{activation!r}][{key!r}]` = {value:.4g} "
                        "is not a fraction in [0, 1]",
                    )
            low, high = ACCURACY_RANGE
            if not low <= entry["val_accuracy"] <= high:
                return False, (
                    f"validation accuracy {entry['val_accuracy']:.3f} for {activation!r} "
                    "is implausible: "
                    f"a trained MLP gets well above {low} on MNIST-1D (chance is 0.1)"
                )
            zero = entry["zero_fraction"]
            if activation == "relu" and not RELU_ZERO_RANGE[0] <= zero <= RELU_ZERO_RANGE[1]:
                return False, (
                    f"zero fraction {zero:.3f} for 'relu' is implausible: ReLU sets every "
                    "non-positive pre-activation to exactly 0"
                )
            if activation != "relu" and zero > LEAKY_ZERO_MAX:
                return False, (
                    f"zero fraction {zero:.3f} for {activation!r} is implausible: its output is "
                    "exactly 0 only where the pre-activation is exactly 0"
                )
        return True, ""


COMPARISON = _ComparisonItem(
    "03.comparison",
    2,
    name="comparison",
    hint=(
        "Train MLP('relu'), MLP('leaky_relu') and MLP('prelu') the same way, then store each "
        "one's validation accuracy and zero_activation_fraction on the validation inputs as "
        "floats in [0, 1]."
    ),
    credit="all",
)

ITEMS = [MLP, ZERO_FRACTION, COMPARISON]
