"""The instructor's tables: ``grades.csv`` and ``summary.csv``, and the atomic file write.

- ``grades.csv``: one row per student x notebook x exercise, columns ``student, notebook,
  exercise, points, max_points, status, detail``. ``detail`` is the instructor's text: it names
  the hidden case that failed, with its inputs and the expected value.
- ``summary.csv``: one row per student: ``student, points, max_points, manual_max_points,
  notebooks_missing`` (``points`` counts auto-graded points and hand marks;
  ``manual_max_points`` is the part of ``max_points`` still waiting for a hand mark).

The ``student`` column is ``names.display_name`` of the folder: exact and one-to-one, so two
folders never share a row. Every field that a spreadsheet would run as a formula gets a leading
``'``. ``write_atomic`` writes a file under a temporary name in the same folder, flushes it to
disk and renames it into place, so a reader, or a run killed half-way, never leaves half a file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from .engine import Row, SubmissionResult
from .names import display_name

COLUMNS = ("student", "notebook", "exercise", "points", "max_points", "status", "detail")
SUMMARY_COLUMNS = ("student", "points", "max_points", "manual_max_points", "notebooks_missing")
#: Row statuses still waiting for the instructor: a written answer without a hand mark.
WAITING = ("manual",)
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def number(value: float) -> str:
    """A point value as the CSV files write it (``2``, ``1.33``)."""
    return f"{round(value, 2):g}"


def cell(text: str) -> str:
    """A CSV field that a spreadsheet will not run as a formula, on one line."""
    text = " ".join(str(text).split())
    return guard(text)


def guard(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would otherwise read it as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


_cell = cell  # the name the tests and older callers use


def student_cell(student: str) -> str:
    """The ``student`` field: the exact display name, guarded against formulas."""
    return guard(display_name(student))


def safe_name(name: str) -> str:
    """A file-system-safe folder name for a student (stable, distinct for distinct names)."""
    if _SAFE.match(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:60] or "student"
    return f"{cleaned}-{hashlib.sha256(name.encode(errors='surrogateescape')).hexdigest()[:10]}"


def write_atomic(path: str, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either the old or the new file.

    The rename makes it whole against a crash of this process; ``sync`` also flushes the data
    to disk first, so that it survives a crash of the machine.
    """
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


_write_atomic = write_atomic


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """CSV bytes (UTF-8, ``\\n`` line ends) with a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _all_rows(results: Sequence[SubmissionResult]) -> Iterable[Row]:
    return (row for result in results for row in result.rows)


def grades_csv(results: Sequence[SubmissionResult]) -> bytes:
    """The ``grades.csv`` bytes."""
    rows = [
        (
            student_cell(r.student),
            r.notebook,
            r.exercise,
            number(r.points),
            number(r.max_points),
            r.status,
            cell(r.detail),
        )
        for r in _all_rows(results)
    ]
    return to_csv(COLUMNS, rows)


def summary_csv(results: Sequence[SubmissionResult]) -> bytes:
    """The ``summary.csv`` bytes: one row per student, sorted by the shown name."""
    totals: dict[str, dict[str, Any]] = {}
    for result in results:
        total = totals.setdefault(
            result.student, {"points": 0.0, "max": 0.0, "manual": 0.0, "missing": []}
        )
        for row in result.rows:
            total["points"] += row.points
            total["max"] += row.max_points
            if row.status in WAITING:
                total["manual"] += row.max_points
        if result.rows and all(row.status == "missing" for row in result.rows):
            total["missing"].append(result.notebook)
    rows = [
        (
            student_cell(student),
            number(t["points"]),
            number(t["max"]),
            number(t["manual"]),
            " ".join(t["missing"]),
        )
        for student, t in sorted(totals.items(), key=lambda pair: display_name(pair[0]))
    ]
    return to_csv(SUMMARY_COLUMNS, rows)


def write(out_dir: str, results: Sequence[SubmissionResult], run: dict) -> None:
    """Record ``results`` in the grade book at ``out_dir`` and write every output file.

    Results for other students or notebooks already in ``out_dir`` are kept (see
    ``rectifiers.grading.gradebook``).
    """
    from .gradebook import Gradebook

    book = Gradebook(out_dir)
    for result in results:
        book.record(result)
    book.publish(run=run)
