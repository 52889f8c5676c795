"""Items of exercise set 6, *Weight decay and the PReLU slope*.

Source: ``solutions/06_regularisation.ipynb``.

- ``06.decayed_slope``: a slope with no data gradient under SGD with weight decay,
  :math:`a_T = a_0 (1 - \\eta\\lambda)^T`.
- ``06.no_decay_param_groups``: parameter groups chosen by module type, compared with
  :func:`rectifiers.optim.param_groups` on grader-built networks (the learner's parameters come
  back as references to the grader's own, so the groups are compared by parameter name).
- ``06.name_grouping``: a written answer on why grouping by the name ``"prelu"`` fails silently.
"""

from __future__ import annotations

from typing import Any

import torch

from rectifiers import optim
from rectifiers.grading import wire
from rectifiers.grading.item import Case, FunctionItem, ManualItem, ModuleSpec
from rectifiers.grading.items._common import FORMULA, mlp_spec, per_case_function

NOTEBOOK = "06_regularisation"


def decayed_slope(a0: float, lr: float, weight_decay: float, steps: int) -> float:
    r"""Trusted :math:`a_0 (1 - \eta\lambda)^T`."""
    return a0 * (1.0 - lr * weight_decay) ** steps


def _decay_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for _ in range(6):
        u = torch.rand(3, generator=rng, dtype=torch.float64)
        a0 = round(float(2 * u[0] - 0.5), 4)  # slopes of both signs
        lr = round(float(10 ** (-2.5 + 2 * u[1])), 5)  # 0.003 .. 0.3
        weight_decay = round(float(10 ** (-2 + 1.5 * u[2])), 5)  # 0.01 .. 0.3
        steps = int(torch.randint(10, 2001, (), generator=rng))
        cases.append(Case((a0, lr, weight_decay, steps)))
    return cases


DECAYED_SLOPE = per_case_function(
    "06.decayed_slope",
    2,
    decayed_slope,
    public=[
        Case((0.25, 0.1, 0.01, 0)),
        Case((0.25, 0.1, 0.01, 1)),
        Case((0.25, 0.1, 0.05, 100)),
        Case((-0.5, 0.5, 0.2, 7)),
    ],
    hidden=_decay_hidden,
    hint="Each step multiplies the slope by the same factor (1 - lr * weight_decay): no "
    "exponential approximation, and lr and weight_decay both enter.",
    tolerance=FORMULA,
)


# ---------------------------------------------------------------------------------------------
# no_decay_param_groups(model, weight_decay)


def _canonical(groups: Any) -> tuple[set[tuple[float, frozenset[str]]] | None, str]:
    """``{(weight_decay, names)}`` over the non-empty groups, or ``None`` and why not."""
    if not isinstance(groups, (list, tuple)):
        return None, "the result must be a list of parameter-group dicts"
    seen: dict[str, int] = {}
    canonical = set()
    for index, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group or "weight_decay" not in group:
            return None, f"group {index} must be a dict with 'params' and 'weight_decay'"
        decay, params = group["weight_decay"], group["params"]
        if isinstance(decay, bool) or not isinstance(decay, (int, float)):
            return None, f"group {index}: 'weight_decay' must be a number"
        if not isinstance(params, (list, tuple)):
            return None, f"group {index}: 'params' must be a list of parameters (not a generator)"
        names = []
        for param in params:
            if not isinstance(param, wire.ParamRef):
                return None, f"group {index}: 'params' must hold the model's own parameters"
            if param.name in seen:
                return (
                    None,
                    f"parameter {param.name} appears twice (groups {seen[param.name]} and {index})",
                )
            seen[param.name] = index
            names.append(param.name)
        if names:
            canonical.add((float(decay), frozenset(names)))
    return canonical, ""


def _describe(canonical: set[tuple[float, frozenset[str]]]) -> str:
    return "; ".join(
        f"weight_decay={decay:g}: {sorted(names)}" for decay, names in sorted(canonical, key=str)
    )


def compare_groups(student_output: Any, expected: Any) -> tuple[bool, str]:
    """Same non-empty groups (weight decay and set of parameter names), each parameter once."""
    wanted, _ = _canonical(expected)
    got, problem = _canonical(student_output)
    if got is None:
        return False, problem
    if got != wanted:
        return False, f"expected the groups {_describe(wanted)}, got {_describe(got)}"
    return True, ""


def _group_spec(rng: torch.Generator) -> ModuleSpec:
    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (), generator=rng))

    c1, c2, width = draw(2, 8), draw(2, 8), draw(3, 12)
    pool = [
        (
            "conv1d",
            {"in_channels": 1, "out_channels": c1, "kernel_size": 3, "bias": bool(draw(0, 1))},
        ),
        ("batchnorm1d", {"num_features": c1}),
        ("prelu", {"num_parameters": c1 if draw(0, 1) else 1}),
        ("conv1d", {"in_channels": c1, "out_channels": c2, "kernel_size": 3}),
        ("leaky_relu", {"negative_slope": 0.1}),
        ("flatten", {}),
        ("linear", {"in_features": c2 * 4, "out_features": width}),
        ("prelu", {}),
        ("dropout", {"p": 0.1}),
        ("linear", {"in_features": width, "out_features": 3, "bias": bool(draw(0, 1))}),
    ]
    return ModuleSpec(tuple(pool), seed=int(torch.randint(0, 2**31, (), generator=rng)))


def _groups_hidden(rng: torch.Generator) -> list[Case]:
    cases = []
    for _ in range(3):
        decay = round(float(10 ** (-4 + 3 * torch.rand((), generator=rng))), 6)
        cases.append(Case((_group_spec(rng), decay)))
    return cases


_PUBLIC_GROUP_SPECS = (
    mlp_spec((4, 8, 2), [("prelu", {})]),
    ModuleSpec(
        (
            ("linear", {"in_features": 4, "out_features": 8, "bias": False}),
            ("batchnorm1d", {"num_features": 8}),
            ("prelu", {"num_parameters": 8}),
            ("linear", {"in_features": 8, "out_features": 8}),
            ("relu", {}),
            ("linear", {"in_features": 8, "out_features": 2}),
        ),
        seed=0,
    ),
)


class _GroupsItem(FunctionItem):
    """Parameter groups compared as sets of names: the order of the groups, and of the
    parameters inside a group, does not matter to an optimizer; extra keys are ignored."""

    def compare(self, student_output: Any, expected: Any) -> tuple[bool, str]:
        return compare_groups(student_output, expected)


NO_DECAY_GROUPS = _GroupsItem(
    "06.no_decay_param_groups",
    3,
    "no_decay_param_groups",
    reference=optim.param_groups,
    public=[Case((_PUBLIC_GROUP_SPECS[0], 0.01)), Case((_PUBLIC_GROUP_SPECS[1], 0.05))],
    hidden=_groups_hidden,
    hint="Walk model.modules(); a parameter is undecayed if its module is an nn.PReLU or a "
    "normalisation layer, or if it is a module's `bias`; return [{'params': decayed, "
    "'weight_decay': weight_decay}, {'params': undecayed, 'weight_decay': 0.0}] with lists.",
    credit="all",
)

NAME_GROUPING = ManualItem(
    "06.name_grouping",
    2,
    hint="Say where parameter names come from, what the filter finds in an nn.Sequential, what "
    "happens to the slopes, and why nothing warns you.",
)

ITEMS = [DECAYED_SLOPE, NO_DECAY_GROUPS, NAME_GROUPING]
