"""The grader's output folder, written only by the trusted parent, each file atomically.

``OUT_DIR/``

- ``grades.csv``: one row per student x notebook x exercise, columns ``student, notebook,
  exercise, points, max_points, status, detail``;
- ``summary.csv``: one row per student: ``student, points, max_points, manual_max_points,
  notebooks_missing`` (``points`` counts auto-graded points; ``manual_max_points`` is the part of
  ``max_points`` waiting for the instructor's marks);
- ``results/<student>/<notebook>.json``: the submission in Gradescope's autograder format;
- ``logs/<student>/<notebook>.log``: what the submission printed (first and last 32 KiB);
- ``run.json``: settings, sandbox mode, timings.

Each file is written to a temporary name in the same folder and renamed into place, so a reader
never sees half a file; ``results/`` and ``logs/`` are replaced as whole folders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from .engine import Row, SubmissionResult

COLUMNS = ("student", "notebook", "exercise", "points", "max_points", "status", "detail")
SUMMARY_COLUMNS = ("student", "points", "max_points", "manual_max_points", "notebooks_missing")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _number(value: float) -> str:
    return f"{value:g}"


def _cell(text: str) -> str:
    """A CSV field that a spreadsheet will not run as a formula, on one line."""
    text = " ".join(str(text).split())
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def safe_name(name: str) -> str:
    """A file-system-safe folder name for a student (stable, distinct for distinct names)."""
    if _SAFE.match(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:60] or "student"
    return f"{cleaned}-{hashlib.sha256(name.encode(errors='surrogateescape')).hexdigest()[:10]}"


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def grades_csv(results: Sequence[SubmissionResult]) -> bytes:
    """The ``grades.csv`` bytes."""
    rows = [
        (
            _cell(r.student),
            r.notebook,
            r.exercise,
            _number(r.points),
            _number(r.max_points),
            r.status,
            _cell(r.detail),
        )
        for result in results
        for r in result.rows
    ]
    return _csv(COLUMNS, rows)


def summary_csv(results: Sequence[SubmissionResult]) -> bytes:
    """The ``summary.csv`` bytes."""
    totals: dict[str, dict[str, Any]] = {}
    for result in results:
        total = totals.setdefault(
            result.student, {"points": 0.0, "max": 0.0, "manual": 0.0, "missing": []}
        )
        for row in result.rows:
            total["points"] += row.points
            total["max"] += row.max_points
            if row.status == "manual":
                total["manual"] += row.max_points
        if result.rows and all(row.status == "missing" for row in result.rows):
            total["missing"].append(result.notebook)
    rows = [
        (
            _cell(s),
            _number(t["points"]),
            _number(t["max"]),
            _number(t["manual"]),
            " ".join(t["missing"]),
        )
        for s, t in sorted(totals.items())
    ]
    return _csv(SUMMARY_COLUMNS, rows)


def gradescope(result: SubmissionResult) -> dict:
    """One submission in Gradescope's ``results.json`` format (manual items carry no status)."""
    tests = []
    for row in result.rows:
        test = {
            "name": row.exercise,
            "score": row.points,
            "max_score": row.max_points,
            "output": row.detail,
        }
        if row.status != "manual":
            test["status"] = "passed" if row.status == "passed" else "failed"
        tests.append(test)
    auto_max = sum(r.max_points for r in result.rows if r.status != "manual")
    manual_max = sum(r.max_points for r in result.rows if r.status == "manual")
    return {
        "score": sum(r.points for r in result.rows),
        "execution_time": round(result.seconds, 2),
        "output": (
            f"{result.notebook}: {_number(sum(r.points for r in result.rows))} of {_number(auto_max)} "
            f"auto-graded points"
            + (f"; {_number(manual_max)} points are graded by hand." if manual_max else ".")
        ),
        "tests": tests,
        "extra_data": {
            "student": result.student,
            "notebook": result.notebook,
            "statuses": {row.exercise: row.status for row in result.rows},
            "seed": result.seed,
            "runs": result.runs,
        },
    }


def write(out_dir: str, results: Sequence[SubmissionResult], run: dict) -> None:
    """Write every output file into ``out_dir`` (created if needed)."""
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(dir=out_dir, prefix=".staging-")
    try:
        os.chmod(staging, 0o755)
        for sub in ("results", "logs"):
            os.mkdir(os.path.join(staging, sub), 0o755)
        for result in results:
            folder = safe_name(result.student)
            for sub in ("results", "logs"):
                os.makedirs(os.path.join(staging, sub, folder), mode=0o755, exist_ok=True)
            with open(
                os.path.join(staging, "results", folder, f"{result.notebook}.json"), "w"
            ) as handle:
                json.dump(gradescope(result), handle, indent=1)
            if result.output:
                with open(
                    os.path.join(staging, "logs", folder, f"{result.notebook}.log"), "wb"
                ) as handle:
                    handle.write(result.output)
        for sub in ("results", "logs"):
            target = os.path.join(out_dir, sub)
            old = None
            if os.path.lexists(target):
                old = tempfile.mkdtemp(dir=out_dir, prefix=".old-")
                os.replace(target, os.path.join(old, sub))
            os.replace(os.path.join(staging, sub), target)
            if old:
                shutil.rmtree(old)
        _write_atomic(os.path.join(out_dir, "grades.csv"), grades_csv(results))
        _write_atomic(os.path.join(out_dir, "summary.csv"), summary_csv(results))
        _write_atomic(
            os.path.join(out_dir, "run.json"), json.dumps(run, indent=1, sort_keys=True).encode()
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def rows_from_csv(path: str) -> list[Row]:
    """Read ``grades.csv`` back (for tests and for merging manual marks)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [
            Row(
                r["student"],
                r["notebook"],
                r["exercise"],
                float(r["points"]),
                float(r["max_points"]),
                r["status"],
                r["detail"],
            )
            for r in reader
        ]
