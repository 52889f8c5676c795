"""Partial credit where an item declares it, and what the student sees of a failed case.

An item with ``credit="cases"`` earns ``points * passed / total`` over its public and hidden
cases; one with ``credit="all"`` (the default) earns its points only when every case passes.
Every item of the course registry says which it uses.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch

from rectifiers.grading.engine import Grader
from rectifiers.grading.item import CREDITS, Case, FunctionItem
from rectifiers.grading.items import REGISTRY

pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="Linux only")


def _double(x):
    return 2 * x


def _cases(values):
    return [Case((torch.tensor([float(v)]),)) for v in values]


def _item(id, credit):
    return FunctionItem(
        id,
        3,
        "double",
        reference=_double,
        public=_cases([1, 3]),
        hidden=lambda rng: _cases([5, -1, 7, -2]),
        hint="Multiply by two.",
        credit=credit,
    )


# Right for positive inputs only: 2 public + 2 of 4 hidden cases pass.
SUBMISSION = """
import torch
def double(x):
    return torch.where(x > 0, 2 * x, 3 * x)
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    subs = tmp_path_factory.mktemp("credit") / "subs"
    (subs / "ann").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SUBMISSION)]
    (subs / "ann" / "99_credit.ipynb").write_text(nbformat.writes(nb))
    registry = {"99_credit": [_item("cr.cases", "cases"), _item("cr.all", "all")]}
    with Grader(registry, timeout=60) as grader:
        (result,) = grader.grade(subs)
    return {row.exercise: row for row in result.rows}


def test_partial_credit_is_in_proportion_to_the_cases_passed(graded):
    row = graded["cr.cases"]
    assert (row.status, row.points, row.max_points) == ("failed", 2.0, 3.0)  # 3 * 4 / 6
    assert row.detail.startswith("4 of 6 cases passed; first failure: hidden case 2: double(")
    assert "expected -2" in row.detail  # the instructor sees the hidden input's expected value


def test_all_or_nothing_items_stop_at_the_first_failure(graded):
    row = graded["cr.all"]
    assert (row.status, row.points) == ("failed", 0.0)
    assert row.detail.startswith("hidden case 2: double(")


def test_the_student_sees_which_case_failed_but_not_its_values(graded):
    assert graded["cr.cases"].feedback == (
        "4 of 6 cases passed; first failure: hidden case 2 of 4: wrong output. "
        "Hint: Multiply by two."
    )
    assert graded["cr.all"].feedback == "hidden case 2 of 4: wrong output. Hint: Multiply by two."


def test_credit_must_be_a_known_rule():
    with pytest.raises(ValueError, match="credit must be one of"):
        _item("cr.bad", "most")


def test_every_registry_item_declares_a_credit_rule():
    auto = [item for items in REGISTRY.values() for item in items if item.kind == "auto"]
    assert auto and all(item.credit in CREDITS for item in auto)
    # Items with several independent cases give partial credit; structural ones do not.
    assert {i.id for i in auto if i.credit == "cases"} >= {
        "01.born_dead_probability",
        "02.leaky_relu_from_scratch",
        "04.prelu_slope_grad",
    }
