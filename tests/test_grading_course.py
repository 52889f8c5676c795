"""Every solution notebook earns full marks and every generated exercise notebook earns zero.

Parametrised over the grader's fixture notebook and whatever ``solutions/*.ipynb`` exist, so the
course's notebooks are picked up as soon as they are written. One grading run (two students:
``solved`` hands in the solutions, ``blank`` the untouched exercises) serves every test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rectifiers.grading.engine import Grader
from rectifiers.grading.items import EXAMPLES, REGISTRY, combined

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "grading"
PAIRS = {
    "00_examples": (
        FIXTURES / "solutions" / "00_examples.ipynb",
        FIXTURES / "exercises" / "00_examples.ipynb",
    )
}
PAIRS.update(
    {
        path.stem: (path, REPO / "exercises" / path.name)
        for path in sorted((REPO / "solutions").glob("*.ipynb"))
    }
)
ALL = combined(REGISTRY, EXAMPLES)
pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="Linux only")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    missing = [name for name in PAIRS if name not in ALL]
    assert not missing, f"solution notebooks without registered items: {missing}"
    subs = tmp_path_factory.mktemp("course") / "submissions"
    for student, index in (("solved", 0), ("blank", 1)):
        (subs / student).mkdir(parents=True)
        for name, pair in PAIRS.items():
            if pair[index].exists():
                shutil.copy(pair[index], subs / student / f"{name}.ipynb")
    registry = {name: ALL[name] for name in PAIRS}
    with Grader(registry, timeout=120, jobs=2) as grader:
        results = grader.grade(subs)
    return {(r.student, r.notebook): r for r in results}


@pytest.mark.parametrize("notebook", list(PAIRS))
def test_solution_notebook_gets_full_marks(graded, notebook):
    result = graded[("solved", notebook)]
    for row in result.rows:
        if row.status == "manual":
            assert row.points == 0 and row.max_points > 0
        else:
            assert (row.status, row.points) == ("passed", row.max_points), (
                f"{row.exercise}: {row.status}: {row.detail}"
            )


@pytest.mark.parametrize("notebook", list(PAIRS))
def test_generated_exercise_notebook_scores_zero_with_the_same_items(graded, notebook):
    assert PAIRS[notebook][1].exists(), f"{PAIRS[notebook][1]} is missing: run `make exercises`"
    solved, blank = graded[("solved", notebook)], graded[("blank", notebook)]
    assert (
        [r.exercise for r in blank.rows]
        == [r.exercise for r in solved.rows]
        == [i.id for i in ALL[notebook]]
    )
    for row in blank.rows:
        if row.status != "manual":
            assert row.points == 0 and row.status == "failed" and "not attempted" in row.detail, row
