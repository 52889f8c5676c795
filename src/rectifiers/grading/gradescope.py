"""One submission as Gradescope's autograder ``results.json``: what the student may see.

The format is Gradescope's (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
a top-level ``score``, ``execution_time``, ``output`` and a list of ``tests``, each with
``name``, ``score``, ``max_score``, ``status``, ``output`` and ``visibility``, one of
``visible``, ``hidden``, ``after_due_date`` and ``after_published``.

Every auto-graded exercise becomes two tests:

- ``<exercise>: public cases`` (0 of 0 points, ``visible``): how the public cases of the
  notebook's check cell fared in the grader, which the student can already see in the notebook;
- ``<exercise>`` (its points, ``after_due_date``): the score and what failed on the hidden cases,
  by number only, with the hint. Gradescope shows it once the due date has passed.

A written answer is one ``visible`` test: its hand mark and comment, or "to be marked by hand".
Every ``output`` is ``Row.feedback``: never a hidden case's inputs, its expected value, or what
the submission printed; those stay in the instructor's ``grades.csv`` and logs. The seed of the
hidden cases is not included either (with the package, which learners have, it re-creates the
hidden inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .engine import Row, SubmissionResult
from .item import Item
from .marks import MARKED
from .report import number

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
#: When the hidden-case results of an exercise are shown to the student.
HIDDEN_VISIBILITY = "after_due_date"


def _public_part(row: Row) -> tuple[str, str]:
    """``(status, output)`` of the public cases alone, from the row's student-visible text.

    Cases run public first, so a first failure on a hidden case means every public case passed.
    A partial-credit summary ("5 of 9 cases passed") is dropped: it counts hidden cases.
    """
    if row.status == "passed":
        return "passed", "passed the public cases"
    text = row.feedback.split("first failure: ", 1)[-1]
    if text.startswith("hidden case"):
        return "passed", "passed the public cases"
    return "failed", text or row.status


def results_json(result: SubmissionResult, items: Sequence[Item] | None = None) -> dict:
    """The ``results.json`` of one submission (hand marks already merged into its rows).

    Args:
        result: one student's notebook.
        items: the notebook's items, to know which exercises are written answers (default:
            judged from the row statuses).

    Returns:
        A JSON-serialisable dict in Gradescope's format.
    """
    kinds: Mapping[str, str] = {item.id: item.kind for item in items or ()}
    tests = []
    for row in result.rows:
        manual = kinds.get(row.exercise) == "manual" or row.status in ("manual", MARKED)
        if manual:
            output = (
                row.feedback if row.status == MARKED else "written answer: to be marked by hand"
            )
            if row.status == "missing":
                output = row.feedback
            tests.append(
                {
                    "name": f"{row.exercise} (written answer)",
                    "score": row.points,
                    "max_score": row.max_points,
                    "output": output,
                    "visibility": "visible",
                }
            )
            continue
        status, output = _public_part(row)
        tests.append(
            {
                "name": f"{row.exercise}: public cases",
                "score": 0,
                "max_score": 0,
                "status": status,
                "output": output,
                "visibility": "visible",
            }
        )
        tests.append(
            {
                "name": row.exercise,
                "score": row.points,
                "max_score": row.max_points,
                "status": "passed" if row.status == "passed" else "failed",
                "output": row.feedback,
                "visibility": HIDDEN_VISIBILITY,
            }
        )
    points = sum(r.points for r in result.rows)
    waiting = sum(r.max_points for r in result.rows if r.status == "manual")
    return {
        "score": round(points, 2),
        "execution_time": round(result.seconds, 2),
        "output": (
            f"{result.notebook}: {number(points)} of "
            f"{number(sum(r.max_points for r in result.rows))} points"
            + (f"; {number(waiting)} points are marked by hand later." if waiting else ".")
        ),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"notebook": result.notebook, "runs": result.runs},
    }


def merge(documents: Sequence[dict]) -> dict:
    """Several notebooks' ``results.json`` as one (a Gradescope assignment of several notebooks).

    Test names are prefixed with the notebook; scores and times add up.
    """
    tests = []
    for document in documents:
        notebook = document["extra_data"]["notebook"]
        for test in document["tests"]:
            tests.append({**test, "name": f"{notebook} / {test['name']}"})
    return {
        "score": round(sum(d["score"] for d in documents), 2),
        "execution_time": round(sum(d["execution_time"] for d in documents), 2),
        "output": " ".join(d["output"] for d in documents)
        + " Each exercise's result on the hidden cases is shown after the due date.",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"notebooks": [d["extra_data"]["notebook"] for d in documents]},
    }
