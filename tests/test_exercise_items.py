"""The course's exercise items: right answers pass, wrong-but-plausible answers score 0.

Three layers:

- in-process, for speed: each item's public and hidden cases go through the same request,
  ``probe.handle``, wire encoding and ``compare`` as in grading, against (a) the learner-level
  code of the solution notebooks (extracted from their ``# BEGIN/END SOLUTION`` cells) and (b)
  at least one wrong-but-plausible answer per auto item, over several grading seeds;
- the notebooks' structure against the registry (points stated in the text, one check or
  answer cell per item, the generator's lint);
- one real, sandboxed grader run over notebooks whose answers are all wrong: every auto item
  must score 0. (The companion run in ``tests/test_grading_course.py`` gives the solution
  notebooks full marks and the generated exercise notebooks 0 with the same item list.)
"""

from __future__ import annotations

import json
import math
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rectifiers.grading import probe, wire
from rectifiers.grading.generate import BEGIN, lint
from rectifiers.grading.item import AutoItem, Case
from rectifiers.grading.items import REGISTRY, find_item
from rectifiers.grading.items import nb03_negative_slope as nb03

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
NOTEBOOKS = sorted(REGISTRY)
AUTO = [item for name in NOTEBOOKS for item in REGISTRY[name] if item.kind == "auto"]
GRADING_SEEDS = (0, 1, 2)


# ---------------------------------------------------------------------------------------------
# Helpers


def run_item(item: AutoItem, namespace: dict, rng_seed: int) -> tuple[bool, str]:
    """Grade ``item`` against ``namespace`` as the grader does: all public, then hidden cases;
    the first failing case gives 0."""
    rng = torch.Generator().manual_seed(rng_seed)
    cases = list(item.public_cases()) + list(item.hidden_cases(rng))
    for number, case in enumerate(cases):
        reply = probe.handle(namespace, item.request(case))
        if reply["status"] != "ok":
            return False, f"case {number}: {reply}"
        output = wire.decode(reply["output"])
        ok, detail = item.compare(output, item.reference(case))
        if not ok:
            return False, f"case {number}: {detail}"
    return True, ""


def _namespace() -> dict:
    return {"torch": torch, "nn": nn, "F": F, "math": math}


def solution_namespace(notebook: str) -> dict:
    """The learner-level definitions of a solution notebook, executed in a fresh namespace."""
    cells = json.loads((SOLUTIONS / f"{notebook}.ipynb").read_text())["cells"]
    namespace = _namespace()
    for cell in cells:
        source = "".join(cell["source"])
        # The comparison cell trains three networks; its value is tested separately below.
        if cell["cell_type"] == "code" and BEGIN in source and "comparison = {}" not in source:
            exec(compile(source, f"{notebook}.ipynb", "exec"), namespace)  # noqa: S102 - our own notebook
    return namespace


def wrong_namespace(source: str) -> dict:
    namespace = _namespace()
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - test code
    return namespace


def _results(**results: tuple[float, float]) -> dict:
    """Exercise 03's ``comparison`` from ``(val_accuracy, zero_fraction)`` per activation."""
    return {
        name: {"val_accuracy": accuracy, "zero_fraction": zeros}
        for name, (accuracy, zeros) in results.items()
    }


def _comparison(**results: tuple[float, float]) -> str:
    """Source defining ``comparison`` (see ``_results``)."""
    return f"comparison = {_results(**results)!r}"


def _init_leaky(weight_init: str, *, zero_bias: bool = True) -> str:
    """Source of an ``init_leaky_`` that runs ``weight_init`` (a line of code that may use ``m``
    and ``negative_slope``) on every Linear and Conv layer ``m``, then zeroes its bias."""
    bias = "\n            if m.bias is not None:\n                nn.init.zeros_(m.bias)"
    return (
        "def init_leaky_(module, negative_slope):\n"
        "    for m in module.modules():\n"
        "        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):\n"
        f"            {weight_init}{bias if zero_bias else ''}\n"
        "    return module"
    )


def _groups_from_exempt(exempt: str) -> str:
    """Source of a ``no_decay_param_groups`` whose code ``exempt`` collects the ``id`` of every
    parameter it leaves undecayed in a set ``exempt``; the two groups are built from that set."""
    return (
        "def no_decay_param_groups(model, weight_decay):\n"
        + textwrap.indent(textwrap.dedent(exempt).strip(), "    ")
        + "\n    decay = [p for p in model.parameters() if id(p) not in exempt]\n"
        "    no_decay = [p for p in model.parameters() if id(p) in exempt]\n"
        '    return [{"params": decay, "weight_decay": weight_decay},\n'
        '            {"params": no_decay, "weight_decay": 0.0}]'
    )


def _mlp(
    *,
    leaky: str = "lambda: nn.LeakyReLU(0.01)",
    prelu: str = "nn.PReLU",
    layers: str = "nn.Linear(40, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, 10)",
) -> str:
    """Source of exercise 03's ``MLP`` with the given activation factories and layer list (the
    defaults are right: each wrong answer changes one of them)."""
    return (
        "class MLP(nn.Sequential):\n"
        "    def __init__(self, activation):\n"
        f'        act = {{"relu": nn.ReLU, "leaky_relu": {leaky}, "prelu": {prelu}}}[activation]\n'
        f"        super().__init__({layers})"
    )


# ---------------------------------------------------------------------------------------------
# Wrong-but-plausible answers: item id -> {description: source defining the item's name}

WRONG: dict[str, dict[str, str]] = {
    "01.born_dead_probability": {
        "union bound": "def born_dead_probability(width, depth):\n    return depth * 2.0 ** -width",
        "survival instead of death": "def born_dead_probability(width, depth):\n"
        "    return (1 - 2.0 ** -width) ** depth",
        "width and depth swapped": "def born_dead_probability(width, depth):\n"
        "    return 1 - (1 - 2.0 ** -depth) ** width",
        "one unit per layer": "def born_dead_probability(width, depth):\n"
        "    return 1 - 0.5 ** depth",
    },
    "01.dead_unit_mask": {
        "strict < 0": "def dead_unit_mask(z):\n"
        "    return (z.reshape(z.shape[0], -1) < 0).all(dim=0)",
        "any instead of all": "def dead_unit_mask(z):\n"
        "    return (z.reshape(z.shape[0], -1) <= 0).any(dim=0)",
        "not flattened": "def dead_unit_mask(z):\n    return (z <= 0).all(dim=0)",
        "a fraction, not a mask": "def dead_unit_mask(z):\n"
        "    return (z.reshape(z.shape[0], -1) <= 0).double().mean(dim=0)",
    },
    "02.leaky_relu_from_scratch": {
        "max(x, a x)": "def leaky_relu_from_scratch(x, negative_slope):\n"
        "    return torch.maximum(x, negative_slope * x)",
        "slope ignored": "def leaky_relu_from_scratch(x, negative_slope):\n"
        "    return F.leaky_relu(x)",
        "constant negative side": "def leaky_relu_from_scratch(x, negative_slope):\n"
        "    return torch.where(x > 0, x, torch.full_like(x, negative_slope))",
        "always float32": "def leaky_relu_from_scratch(x, negative_slope):\n"
        "    return torch.where(x > 0, x, negative_slope * x).float()",
    },
    "02.relu_as_leaky": {
        "default slope": "def relu_as_leaky(x):\n    return F.leaky_relu(x, 0.01)",
        "absolute value": "def relu_as_leaky(x):\n    return x.abs()",
    },
    "02.leaky_outputs": {
        "ReLU outputs": "leaky_outputs = (0.0, 0.0, 0.0, 0.5, 3.0)",
        "slope times |x|": "leaky_outputs = (0.4, 0.15, 0.0, 0.5, 3.0)",
        "slope 0.01": "leaky_outputs = (-0.04, -0.015, 0.0, 0.5, 3.0)",
    },
    "02.leaky_relu_derivative": {
        "1 at zero": "def leaky_relu_derivative(x, negative_slope):\n"
        "    return torch.where(x >= 0, torch.ones_like(x), torch.full_like(x, negative_slope))",
        "ReLU's derivative": "def leaky_relu_derivative(x, negative_slope):\n"
        "    return (x > 0).to(x.dtype)",
        "the function, not the derivative": "def leaky_relu_derivative(x, negative_slope):\n"
        "    return torch.where(x > 0, x, negative_slope * x)",
    },
    "03.mlp": {
        "slope 0.1": _mlp(leaky="lambda: nn.LeakyReLU(0.1)"),
        "activation after the output layer": _mlp(
            layers="nn.Linear(40, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, 10), act()"
        ),
        "one PReLU shared by both layers": _mlp(
            layers="nn.Linear(40, 64), (one := act()), nn.Linear(64, 64), one, nn.Linear(64, 10)"
        ),
        "channel-wise PReLU": _mlp(prelu="lambda: nn.PReLU(64)"),
    },
    "03.zero_activation_fraction": {
        "non-positive pre-activations": """
            def zero_activation_fraction(model, x):
                seen = []
                hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
                         for m in model.modules()
                         if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU))]
                with torch.no_grad():
                    model(x)
                for h in hooks:
                    h.remove()
                return sum(int((z <= 0).sum()) for z in seen) / sum(z.numel() for z in seen)
        """,
        "ReLU modules only": """
            def zero_activation_fraction(model, x):
                seen = []
                hooks = [m.register_forward_hook(lambda m, i, out: seen.append(out))
                         for m in model.modules()
                         if isinstance(m, nn.ReLU)]
                with torch.no_grad():
                    model(x)
                for h in hooks:
                    h.remove()
                return sum(int((y == 0).sum()) for y in seen) / max(1, sum(y.numel() for y in seen))
        """,
        "every layer's output counted": """
            def zero_activation_fraction(model, x):
                seen = []
                hooks = [m.register_forward_hook(lambda m, i, out: seen.append(out))
                         for m in model.modules()
                         if not list(m.children())]
                with torch.no_grad():
                    model(x)
                for h in hooks:
                    h.remove()
                return sum(int((y == 0).sum()) for y in seen) / sum(y.numel() for y in seen)
        """,
    },
    "03.comparison": {
        "accuracy in percent": _comparison(
            relu=(55.0, 0.55), leaky_relu=(57.0, 0.0), prelu=(57.5, 0.0)
        ),
        "zeros counted as non-positive pre-activations": _comparison(
            relu=(0.55, 0.55), leaky_relu=(0.57, 0.52), prelu=(0.575, 0.5)
        ),
        "rows swapped": _comparison(relu=(0.57, 0.0), leaky_relu=(0.55, 0.55), prelu=(0.575, 0.0)),
        "untrained networks": _comparison(relu=(0.1, 0.5), leaky_relu=(0.1, 0.0), prelu=(0.1, 0.0)),
        "missing entry": _comparison(relu=(0.55, 0.55), leaky_relu=(0.57, 0.0)),
    },
    "04.prelu_slope_grad": {
        "mask forgotten": """
            def prelu_slope_grad(x, weight, grad_output):
                per = x * grad_output
                if weight.numel() == 1:
                    return per.sum().reshape(1)
                return per.sum(dim=[d for d in range(x.dim()) if d != 1])
        """,
        "mean instead of sum": """
            def prelu_slope_grad(x, weight, grad_output):
                per = torch.where(x > 0, torch.zeros_like(x), x) * grad_output
                if weight.numel() == 1:
                    return per.mean().reshape(1)
                return per.mean(dim=[d for d in range(x.dim()) if d != 1])
        """,
        "one sum for every slope": """
            def prelu_slope_grad(x, weight, grad_output):
                total = (torch.where(x > 0, torch.zeros_like(x), x) * grad_output).sum()
                return total.expand(weight.shape).clone()
        """,
        "per position, not summed": """
            def prelu_slope_grad(x, weight, grad_output):
                return torch.where(x > 0, torch.zeros_like(x), x) * grad_output
        """,
    },
    "04.prelu_input_grad": {
        "grad_output at zero": """
            def prelu_input_grad(x, weight, grad_output):
                w = weight.reshape([1, -1] + [1] * (x.dim() - 2)) if x.dim() >= 2 else weight
                return torch.where(x >= 0, grad_output, w * grad_output)
        """,
        "slopes along the last dim": """
            def prelu_input_grad(x, weight, grad_output):
                return torch.where(x > 0, grad_output, weight * grad_output)
        """,
        "ReLU's gradient": """
            def prelu_input_grad(x, weight, grad_output):
                return torch.where(x > 0, grad_output, torch.zeros_like(grad_output))
        """,
    },
    "04.count_prelu_slopes": {
        "PReLU modules counted": "def count_prelu_slopes(model):\n"
        "    return sum(1 for m in model.modules() if isinstance(m, nn.PReLU))",
        "all parameters counted": "def count_prelu_slopes(model):\n"
        "    return sum(p.numel() for p in model.parameters())",
    },
    "05.matched_gain": {
        "no square root": "def matched_gain(negative_slope):\n"
        "    return 2.0 / (1.0 + negative_slope ** 2)",
        "slope not squared": "def matched_gain(negative_slope):\n"
        "    return math.sqrt(2.0 / (1.0 + negative_slope))",
        "ReLU's gain": "def matched_gain(negative_slope):\n    return math.sqrt(2.0)",
    },
    "05.init_leaky_": {
        "slope ignored (ReLU gain)": _init_leaky(
            'nn.init.kaiming_normal_(m.weight, nonlinearity="relu")'
        ),
        "uniform distribution": _init_leaky(
            'nn.init.kaiming_uniform_(m.weight, a=negative_slope, nonlinearity="leaky_relu")'
        ),
        "fan_out": _init_leaky(
            "nn.init.kaiming_normal_("
            'm.weight, a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")'
        ),
        "gain without the square root": _init_leaky(
            "nn.init.normal_("
            "m.weight, 0.0, (2.0 / (1 + negative_slope ** 2)) / math.sqrt(m.weight[0].numel()))"
        ),
        "biases left alone": _init_leaky(
            'nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")',
            zero_bias=False,
        ),
        "every 1-D parameter zeroed (PReLU slopes too)": """
            def init_leaky_(module, negative_slope):
                for p in module.parameters():
                    if p.dim() > 1:
                        nn.init.kaiming_normal_(p, a=negative_slope, nonlinearity="leaky_relu")
                    else:
                        nn.init.zeros_(p)
                return module
        """,
    },
    "05.mismatch_growth": {
        "standard deviation, not second moment": (
            "def mismatch_growth(actual_slope, assumed_slope, depth):\n"
            "    return math.sqrt((1 + actual_slope ** 2) / (1 + assumed_slope ** 2)) ** depth"
        ),
        "slopes not squared": "def mismatch_growth(actual_slope, assumed_slope, depth):\n"
        "    return ((1 + abs(actual_slope)) / (1 + abs(assumed_slope))) ** depth",
        "ratio inverted": "def mismatch_growth(actual_slope, assumed_slope, depth):\n"
        "    return ((1 + assumed_slope ** 2) / (1 + actual_slope ** 2)) ** depth",
        "one layer only": "def mismatch_growth(actual_slope, assumed_slope, depth):\n"
        "    return (1 + actual_slope ** 2) / (1 + assumed_slope ** 2)",
    },
    "06.decayed_slope": {
        "exponential approximation": "def decayed_slope(a0, lr, weight_decay, steps):\n"
        "    return a0 * math.exp(-lr * weight_decay * steps)",
        "learning rate forgotten": "def decayed_slope(a0, lr, weight_decay, steps):\n"
        "    return a0 * (1 - weight_decay) ** steps",
        "linear decay": "def decayed_slope(a0, lr, weight_decay, steps):\n"
        "    return a0 * (1 - lr * weight_decay * steps)",
    },
    "06.no_decay_param_groups": {
        "by the name 'prelu'": """
            def no_decay_param_groups(model, weight_decay):
                decay, no_decay = [], []
                for name, param in model.named_parameters():
                    (no_decay if "prelu" in name.lower() or name.endswith("bias")
                     else decay).append(param)
                return [{"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}]
        """,
        "only PReLU exempt": _groups_from_exempt("""
            exempt = {id(p) for m in model.modules() if isinstance(m, nn.PReLU)
                      for p in m.parameters()}
        """),
        "norm layers decayed": _groups_from_exempt("""
            exempt = set()
            for m in model.modules():
                for name, p in m.named_parameters(recurse=False):
                    if isinstance(m, nn.PReLU) or name == "bias":
                        exempt.add(id(p))
        """),
        "generators instead of lists": """
            def no_decay_param_groups(model, weight_decay):
                slopes = {id(p) for m in model.modules()
                          if isinstance(m, (nn.PReLU, nn.BatchNorm1d)) for p in m.parameters()}
                slopes |= {id(m.bias) for m in model.modules()
                           if getattr(m, "bias", None) is not None}
                return [{"params": (p for p in model.parameters() if id(p) not in slopes),
                         "weight_decay": weight_decay},
                        {"params": (p for p in model.parameters() if id(p) in slopes),
                         "weight_decay": 0.0}]
        """,
        "decay everywhere": """
            def no_decay_param_groups(model, weight_decay):
                return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
        """,
    },
}

WRONG_CASES = [(item_id, label) for item_id, variants in WRONG.items() for label in variants]


# ---------------------------------------------------------------------------------------------
# Right answers


@pytest.fixture(scope="module")
def solutions() -> dict[str, dict]:
    threads = torch.get_num_threads()
    try:
        return {name: solution_namespace(name) for name in NOTEBOOKS}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("item", [i for i in AUTO if i.id != "03.comparison"], ids=lambda i: i.id)
@pytest.mark.parametrize("seed", GRADING_SEEDS)
def test_solution_passes_public_and_hidden_cases(solutions, item, seed):
    notebook = next(name for name in NOTEBOOKS if item in REGISTRY[name])
    ok, detail = run_item(item, solutions[notebook], seed)
    assert ok, detail


def test_solution_notebook_comparison_is_plausible():
    """The value the executed solution notebook stored passes its item (without retraining)."""
    cells = json.loads((SOLUTIONS / "03_negative_slope.ipynb").read_text())["cells"]
    outputs = [
        "".join("".join(o.get("text", "")) for o in c.get("outputs", []))
        for c in cells
        if c["cell_type"] == "code"
    ]
    table = next(text for text in outputs if "val. accuracy" in text)
    comparison = {}
    for line in table.splitlines()[1:]:
        name, accuracy, zeros = line.split()
        comparison[name] = {"val_accuracy": float(accuracy), "zero_fraction": float(zeros)}
    ok, detail = run_item(nb03.COMPARISON, {"comparison": comparison}, 0)
    assert ok, detail


# ---------------------------------------------------------------------------------------------
# Wrong answers


def test_every_auto_item_has_wrong_answers():
    assert sorted(WRONG) == sorted(item.id for item in AUTO)


@pytest.mark.parametrize(
    ("item_id", "label"), WRONG_CASES, ids=[f"{i}-{label}" for i, label in WRONG_CASES]
)
def test_wrong_answer_scores_zero(item_id, label):
    item = find_item(item_id)
    namespace = wrong_namespace(WRONG[item_id][label])
    for seed in GRADING_SEEDS:
        ok, _ = run_item(item, namespace, seed)
        assert not ok, f"{item_id}: the wrong answer ({label}) passed with grading seed {seed}"


def test_wrong_answers_fail_the_hidden_cases_too():
    """Answers that fit the public cases but not the definition are caught by hidden cases."""
    fits_public = {
        # Public slopes are all in [0, 1], where max(x, a x) is right.
        "02.leaky_relu_from_scratch": WRONG["02.leaky_relu_from_scratch"]["max(x, a x)"],
        # Public slopes are 0 or have |a| = 1 or small: ignoring the square root of 2 / (1 + a^2)
        # passes a = 1 and nothing else.
        "05.mismatch_growth": "def mismatch_growth(a, b, depth):\n"
        "    table = {(0.2, 0.2, 10): 1.0, (0.0, 1.0, 1): 0.5, (1.0, 0.0, 4): 16.0,\n"
        "             (0.3, 0.0, 20): 1.09 ** 20}\n"
        "    return table[(a, b, depth)]",
    }
    for item_id, source in fits_public.items():
        item = find_item(item_id)
        namespace = wrong_namespace(source)
        for case in item.public_cases():
            reply = probe.handle(namespace, item.request(case))
            assert item.compare(wire.decode(reply["output"]), item.reference(case))[0], item_id
        for seed in GRADING_SEEDS:
            assert not run_item(item, namespace, seed)[0], item_id


def test_comparison_accepts_plausible_results():
    good = _results(relu=(0.55, 0.55), leaky_relu=(0.57, 0.0), prelu=(0.575, 0.001))
    assert run_item(nb03.COMPARISON, {"comparison": good}, 0) == (True, "")


# ---------------------------------------------------------------------------------------------
# Hidden cases


@pytest.mark.parametrize("item", AUTO, ids=lambda i: i.id)
def test_hidden_cases_depend_on_the_grading_seed(item):
    first = item.hidden_cases(torch.Generator().manual_seed(1))
    again = item.hidden_cases(torch.Generator().manual_seed(1))
    other = item.hidden_cases(torch.Generator().manual_seed(2))
    if item.id in ("02.leaky_outputs", "03.comparison"):
        # Values worked out by hand or by training: there is nothing to draw.
        assert first == other == []
        return
    assert first, f"{item.id} has no hidden cases"
    assert _fingerprint(first) == _fingerprint(again)
    assert _fingerprint(first) != _fingerprint(other)


def _fingerprint(cases: list[Case]) -> str:
    def plain(value):
        if isinstance(value, torch.Tensor):
            return [str(value.dtype), list(value.shape), value.double().flatten().tolist()]
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return repr(value)

    return json.dumps([plain([c.args, dict(c.kwargs), c.inputs, c.seed]) for c in cases])


# ---------------------------------------------------------------------------------------------
# Notebook structure against the registry


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_solution_notebook_follows_the_contract(notebook):
    solution = json.loads((SOLUTIONS / f"{notebook}.ipynb").read_text())
    assert lint(solution, notebook, REGISTRY) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_points_stated_in_the_text_match_the_registry(notebook):
    cells = json.loads((SOLUTIONS / f"{notebook}.ipynb").read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for item in REGISTRY[notebook]:
        label = f"`{item.name}`" if item.name else "written answer"
        points = f"{item.points:g} point" + ("" if item.points == 1 else "s")
        if item.name:
            assert f"**({label}, {points})**" in text, (item.id, label, points)
        else:
            assert f"**Your answer ({points}, graded by hand):**" in text, item.id
    total = sum(item.points for item in REGISTRY[notebook])
    assert f"| **Total** | | **{total:g}** |" in text


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_exercise_page_links_to_its_notebook_and_chapter(notebook):
    first = "".join(json.loads((SOLUTIONS / f"{notebook}.ipynb").read_text())["cells"][0]["source"])
    assert f"{{download}}`{notebook}.ipynb <../exercises/{notebook}.ipynb>`" in first
    assert f"{{doc}}`../chapters/{notebook}`" in first


def test_totals():
    items = [item for name in NOTEBOOKS for item in REGISTRY[name]]
    assert sum(item.kind == "auto" for item in items) >= 15
    assert sum(item.kind == "manual" for item in items) >= 2


# ---------------------------------------------------------------------------------------------
# One real grading run over wrong answers


def _wrong_notebook(notebook: str) -> dict:
    """The solution notebook with every item's code replaced by its first wrong answer."""
    solution = json.loads((SOLUTIONS / f"{notebook}.ipynb").read_text())
    auto = {item.name: item for item in REGISTRY[notebook] if item.kind == "auto"}
    for cell in solution["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or BEGIN not in source:
            continue
        name = next(
            (n for n in auto if re.search(rf"^(def|class) {n}\b|^{n} = ", source, re.M)), None
        )
        if name is None:
            assert "comparison = {}" in source, source
            name = "comparison"
        wrong = next(iter(WRONG[auto[name].id].values()))
        cell["source"] = textwrap.dedent(wrong).strip()
        cell["outputs"], cell["execution_count"] = [], None
    return solution


@pytest.mark.slow
def test_real_grader_gives_wrong_answers_no_more_than_the_cases_they_pass(tmp_path):
    if not Path("/proc/self").exists():
        pytest.skip("the sandboxed grader needs Linux")
    from rectifiers.grading.engine import Grader

    student = tmp_path / "submissions" / "wrong"
    student.mkdir(parents=True)
    for notebook in NOTEBOOKS:
        (student / f"{notebook}.ipynb").write_text(json.dumps(_wrong_notebook(notebook)))
    with Grader(dict(REGISTRY), timeout=120, jobs=2) as grader:
        results = grader.grade(tmp_path / "submissions")
    assert sorted(r.notebook for r in results) == NOTEBOOKS
    for result in results:
        assert [row.exercise for row in result.rows] == [
            item.id for item in REGISTRY[result.notebook]
        ]
        for row in result.rows:
            if row.status == "manual":
                continue
            assert row.status in ("failed", "error"), row
            assert "not attempted" not in row.detail, row
            item = next(i for i in REGISTRY[result.notebook] if i.id == row.exercise)
            counted = re.match(r"(\d+) of (\d+) cases passed", row.detail)
            if item.credit == "all" or counted is None:
                assert row.points == 0, row
            else:  # partial credit: only the cases it got right, never the whole item
                passed, total = int(counted[1]), int(counted[2])
                assert passed < total and row.points == round(item.points * passed / total, 2)
    shutil.rmtree(tmp_path / "submissions")


# ---------------------------------------------------------------------------------------------
# Malformed outputs fail with a message instead of passing or crashing


def _module_state(module: nn.Module) -> wire.ModuleState:
    return wire.decode(wire.encode(module))


def _mlp_output(module: nn.Module, case: Case) -> dict:
    with torch.no_grad():
        outputs = [module(*inputs) for inputs in case.inputs]
    return {"module": _module_state(module), "outputs": outputs}


def _reference_mlp_with(activation: str, **changes) -> nn.Module:
    torch.manual_seed(0)
    module = nb03.reference_mlp(activation)
    with torch.no_grad():
        for name, value in changes.items():
            dict(module.named_parameters())[name].fill_(value)
    return module


def test_mlp_compare_rejects_malformed_outputs():
    item = find_item("03.mlp")
    case = item.public_cases()[2]  # "prelu"
    good = _mlp_output(_reference_mlp_with("prelu"), case)
    assert item.compare(good, item.reference(case)) == (True, "")
    integer_state = wire.ModuleState(
        "MLP", {k: t.long() for k, t in good["module"].state.items()}, good["module"].parameters
    )
    bad_outputs = {
        "not a dict": 3,
        "not a module": {"module": torch.zeros(3), "outputs": good["outputs"]},
        "missing outputs": {"module": good["module"], "outputs": []},
        "integer parameters": {"module": integer_state, "outputs": good["outputs"]},
        "slope not 0.25": _mlp_output(_reference_mlp_with("prelu", **{"1.weight": 0.1}), case),
    }
    for label, output in bad_outputs.items():
        ok, detail = item.compare(output, item.reference(case))
        assert not ok and detail, label


@pytest.mark.parametrize(
    "bad",
    [
        {"relu": [0.5, 0.5], "leaky_relu": {}, "prelu": {}},
        {name: {"val_accuracy": math.nan, "zero_fraction": 0.0} for name in nb03.ACTIVATIONS},
        {name: {"val_accuracy": True, "zero_fraction": 0.0} for name in nb03.ACTIVATIONS},
        {name: {"val_accuracy": 0.6, "zero_fraction": 1.5} for name in nb03.ACTIVATIONS},
    ],
)
def test_comparison_compare_rejects_malformed_values(bad):
    ok, detail = nb03.COMPARISON.compare(bad, None)
    assert not ok and detail


def test_init_compare_rejects_malformed_outputs():
    item = find_item("05.init_leaky_")
    case = item.public_cases()[0]
    spec, slope = case.args
    module = spec.build()
    torch.manual_seed(0)
    from rectifiers.init import kaiming_init_

    kaiming_init_(module, slope)
    expected = item.reference(case)
    assert item.compare({"output": None, "args": (_module_state(module), slope)}, expected) == (
        True,
        "",
    )
    shifted = spec.build()
    kaiming_init_(shifted, slope)
    with torch.no_grad():
        shifted[0].weight.add_(0.5 * expected["std"]["0.weight"])  # same spread, mean moved
    renamed = nn.Sequential(nn.Linear(300, 200))
    for output in (
        None,
        {"output": None, "args": ()},
        {"output": None, "args": (_module_state(renamed), slope)},
        {"output": None, "args": (_module_state(shifted), slope)},
    ):
        ok, detail = item.compare(output, expected)
        assert not ok and detail


def test_groups_compare_rejects_malformed_groups():
    from rectifiers.grading.items import nb06_regularisation as nb06

    refs = [wire.ParamRef("0.weight"), wire.ParamRef("0.bias")]
    expected = [
        {"params": refs[:1], "weight_decay": 0.1},
        {"params": refs[1:], "weight_decay": 0.0},
    ]
    assert nb06.compare_groups(expected, expected) == (True, "")
    for bad in (
        "groups",
        ["not a dict"],
        [{"params": refs, "weight_decay": "0.1"}],
        [{"params": [torch.zeros(2)], "weight_decay": 0.1}],
        [{"params": refs, "weight_decay": 0.1}, {"params": refs[1:], "weight_decay": 0.0}],
    ):
        ok, detail = nb06.compare_groups(bad, expected)
        assert not ok and detail, bad
