"""``grade-exercises`` on one submission and on a class of 30, built from the solved notebooks.

A synthetic class: each student's folder holds a copy of every solution notebook in
``solutions/`` that the grader has items for (solved notebooks must earn every auto-graded
point, which is checked, so a grader that failed fast would not pass for a fast one).

- *One submission*: one student, ``--jobs 1``, timed ``runs`` times (median). Seconds per
  notebook is that time over the number of notebooks; it includes the grader's start-up.
- *A class*: 30 students, ``--jobs 2``, timed once. Also recorded: the grader's own mean time
  per notebook (``seconds_per_notebook`` in its ``run.json``) and the class's wall time per
  notebook.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

from ._core import Missing, Options, budget, load_average, median, venv_bin
from ._measure import run_command

STUDENTS, QUICK_STUDENTS = 30, 3
JOBS = 2
PER_NOTEBOOK_BUDGET_S = 10.0
# "Well under 5 minutes": at most 4 (a fifth of the time to spare).
CLASS_BUDGET_S = 240.0
TIMEOUT_S = 1800.0


def gradable_notebooks(repo: Path) -> list[str]:
    """Names (no ``.ipynb``) of the solution notebooks the grader has registered items for."""
    try:
        from rectifiers.grading.items import REGISTRY
    except ImportError as error:
        raise Missing(f"the grader's item registry cannot be imported: {error}") from error
    solved = {path.stem for path in (repo / "solutions").glob("*.ipynb")}
    return sorted(solved & set(REGISTRY))


def make_class(solutions: Path, notebooks: list[str], students: int, root: Path) -> list[str]:
    """Create ``root/student01 ...`` each holding a copy of the named solution notebooks."""
    if students < 1:
        raise ValueError(f"students must be at least 1, got {students}")
    names = [f"student{i:02d}" for i in range(1, students + 1)]
    for name in names:
        (root / name).mkdir(parents=True)
        for notebook in notebooks:
            shutil.copyfile(solutions / f"{notebook}.ipynb", root / name / f"{notebook}.ipynb")
    return names


def full_marks(summary_csv: Path) -> tuple[int, int]:
    """``(students with every auto-graded point, students)`` from the grader's ``summary.csv``."""
    with open(summary_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    full = sum(
        1
        for row in rows
        if float(row["points"]) == float(row["max_points"]) - float(row["manual_max_points"])
    )
    return full, len(rows)


def problems(grades_csv: Path, limit: int = 5) -> list[dict]:
    """The first ``limit`` rows of ``grades.csv`` that neither passed nor wait for manual marks.

    A solved notebook should have none: each one says why a point was lost (a timeout under
    load, a crash...), which is what makes a grading time suspect.
    """
    found = []
    with open(grades_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["status"] not in ("passed", "manual") and len(found) < limit:
                found.append(
                    {
                        key: row[key]
                        for key in ("student", "notebook", "exercise", "status", "detail")
                    }
                )
    return found


def status_counts(grades_csv: Path) -> dict[str, int]:
    """How many exercises got each status (``passed``, ``failed``, ``manual``...), from
    ``grades.csv``."""
    counts: dict[str, int] = {}
    with open(grades_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return dict(sorted(counts.items()))


def grade(submissions: Path, out: Path, notebooks: list[str], jobs: int) -> dict:
    """Run ``grade-exercises`` once; its timing, exit status and what it reported."""
    command = [
        venv_bin("grade-exercises"),
        str(submissions),
        "--out",
        str(out),
        "--jobs",
        str(jobs),
        "--notebooks",
        ",".join(notebooks),
    ]
    load = load_average()[0]
    outcome = run_command(command, cwd=submissions.parent, timeout=TIMEOUT_S, env=dict(os.environ))
    if outcome["returncode"] != 0:
        raise RuntimeError(
            f"grade-exercises exited with {outcome['returncode']}: {outcome['tail'][-5:]}"
        )
    report = json.loads((out / "run.json").read_text(encoding="utf-8"))
    full, students = full_marks(out / "summary.csv")
    return {
        "seconds": outcome["seconds"],
        "peak_rss_mib": outcome["peak_rss_mib"],
        "load_1min": load,
        "grader_seconds_per_notebook": report.get("seconds_per_notebook"),
        "sandbox": report.get("sandbox", {}).get("mode"),
        "students_full_marks": full,
        "students": students,
        "statuses": status_counts(out / "grades.csv"),
        "problems": problems(out / "grades.csv"),
    }


def run(options: Options) -> tuple[dict, list[dict]]:
    """Grade one submission and a class; see the module docstring."""
    if not Path(venv_bin("grade-exercises")).is_file():
        raise Missing("no grade-exercises command next to this Python")
    notebooks = gradable_notebooks(options.repo)
    if not notebooks:
        raise Missing("no solution notebook in solutions/ has registered grader items")
    class_size = QUICK_STUDENTS if options.quick else STUDENTS
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as temporary:
        root = Path(temporary)
        make_class(options.repo / "solutions", notebooks, 1, root / "one")
        singles = []
        for number in range(options.runs):
            print(f"  grading: one submission, run {number + 1} ...", flush=True)
            singles.append(grade(root / "one", root / f"out-one-{number}", notebooks, 1))
        make_class(options.repo / "solutions", notebooks, class_size, root / "class")
        print(f"  grading: a class of {class_size} with --jobs {JOBS} ...", flush=True)
        whole = grade(root / "class", root / "out-class", notebooks, JOBS)
    submission_s = median([single["seconds"] for single in singles])
    per_notebook = round(submission_s / len(notebooks), 2)
    results = {
        "notebooks": notebooks,
        "submission": {
            "seconds": round(submission_s, 2),
            "seconds_per_notebook": per_notebook,
            "runs": singles,
        },
        "class": {
            **whole,
            "jobs": JOBS,
            "wall_seconds_per_notebook": round(whole["seconds"] / (class_size * len(notebooks)), 2),
        },
        "all_full_marks": all(r["students_full_marks"] == r["students"] for r in [*singles, whole]),
    }
    budgets = [
        budget(
            "grading:seconds_per_notebook",
            "grading: seconds per exercise notebook (one submission, 1 job)",
            per_notebook,
            PER_NOTEBOOK_BUDGET_S,
            "<=",
            "s",
        ),
    ]
    suspect = None if results["all_full_marks"] else "solved submissions lost points"
    budgets[0]["note"] = suspect
    class_figure = whole["seconds"] if class_size == STUDENTS else None
    budgets.append(
        budget(
            "grading:class_of_30",
            f"grading: a class of {STUDENTS}, {JOBS} jobs",
            class_figure,
            CLASS_BUDGET_S,
            "<=",
            "s",
            note=suspect
            if class_figure is not None
            else f"a quick class has {class_size} students",
        )
    )
    return results, budgets
