"""Hand marks for written answers: a CSV the instructor keeps, checked, then merged.

The marks file has a header and one row per marked answer::

    student,notebook,exercise,points,comment
    alice,01_motivation,01.why_leaky,2.5,Names the zero gradient but not the fix.

``student`` is written as ``grades.csv`` shows it (a leading ``'`` that guards a formula is
allowed); ``comment`` is optional and goes to the student's feedback. ``read_marks`` checks the
whole file before anything uses it: an unknown column, student, notebook or exercise (only
written answers, ``ManualItem``, take hand marks), a duplicate row, or points that are not a
number between 0 and the item's maximum is an error that names the line, and nothing changes.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from .engine import Row, SubmissionResult
from .item import Item
from .names import display_name, folder_name
from .report import number

COLUMNS = ("student", "notebook", "exercise", "points", "comment")
REQUIRED = ("student", "notebook", "exercise", "points")
MAX_BYTES = 4 * 2**20
#: The status of a written answer once it has a hand mark.
MARKED = "marked"


# deliberately alike: notebook.py's NotebookError and Cell have this shape too (an error type,
# then a frozen record of five fields) but share no fields or logic with these.
class MarksError(ValueError):
    """A marks file that cannot be used; the message lists every problem with its line."""


@dataclass(frozen=True)
class Mark:
    """One hand mark: ``points`` for ``exercise`` of ``notebook`` by ``student`` (folder name)."""

    student: str
    notebook: str
    exercise: str
    points: float
    comment: str = ""


Key = tuple[str, str, str]


def _student(field: str) -> str:
    if field[:2] in ("'=", "'+", "'-", "'@"):  # the formula guard of grades.csv
        field = field[1:]
    return folder_name(field)


def read_marks(
    data: bytes,
    registry: Mapping[str, Sequence[Item]],
    students: Collection[str],
) -> dict[Key, Mark]:
    """Parse and check a marks file.

    Args:
        data: the file's bytes (UTF-8, an optional byte-order mark).
        registry: ``notebook -> items``: which written answers exist and their maximum points.
        students: the folder names of the students that can be marked.

    Returns:
        ``(student, notebook, exercise) -> Mark``.

    Raises:
        MarksError: listing every problem, each with its line number.

    Example:
        >>> from rectifiers.grading.item import ManualItem
        >>> registry = {"01_x": [ManualItem("01.why", 3)]}
        >>> marks = read_marks(b"student,notebook,exercise,points\\nann,01_x,01.why,2\\n",
        ...                    registry, ["ann"])
        >>> marks[("ann", "01_x", "01.why")].points
        2.0
    """
    if len(data) > MAX_BYTES:
        raise MarksError(f"the marks file is larger than {MAX_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise MarksError(f"the marks file is not UTF-8 text ({error})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise MarksError(f"the marks file is empty; expected the header {','.join(COLUMNS)}")
    header = [name.strip() for name in header]
    unknown = [name for name in header if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise MarksError(
            f"line 1: the header must have the columns {', '.join(REQUIRED)} and optionally "
            f"comment, each once; got {header}"
        )
    manual = {
        (notebook, item.id): item.points
        for notebook, items in registry.items()
        for item in items
        if item.kind == "manual"
    }
    students = set(students)
    marks: dict[Key, Mark] = {}
    problems: list[str] = []
    for line, fields in enumerate(reader, start=2):
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            problems.append(f"line {line}: {len(fields)} fields, expected {len(header)}")
            continue
        row = dict(zip(header, fields, strict=True))
        student = _student(row["student"])
        notebook, exercise = row["notebook"].strip(), row["exercise"].strip()
        where = f"line {line} ({display_name(student)}, {notebook}, {exercise})"
        if student not in students:
            problems.append(f"{where}: unknown student {row['student']!r}")
            continue
        if (notebook, exercise) not in manual:
            problems.append(
                f"{where}: not a written answer of a registered notebook (hand marks are for "
                "ManualItem exercises only)"
            )
            continue
        maximum = manual[(notebook, exercise)]
        try:
            points = float(row["points"])
        except ValueError:
            problems.append(f"{where}: points must be a number, got {row['points']!r}")
            continue
        if not math.isfinite(points) or not 0 <= points <= maximum:
            problems.append(
                f"{where}: points must be between 0 and {number(maximum)}, got {row['points']}"
            )
            continue
        key = (student, notebook, exercise)
        if key in marks:
            problems.append(f"{where}: marked twice")
            continue
        marks[key] = Mark(student, notebook, exercise, points, row.get("comment", "").strip())
    if problems:
        shown = problems[:20] + (
            [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        )
        raise MarksError("the marks file was not used:\n  " + "\n  ".join(shown))
    return marks


def apply_marks(
    results: Sequence[SubmissionResult], marks: Mapping[Key, Mark]
) -> tuple[list[SubmissionResult], list[str]]:
    """The results with each hand mark merged into its written-answer row.

    A marked row gets the mark's points and the status ``marked``; its detail and feedback gain
    the mark and the comment. A mark whose answer was not handed in (the row is ``missing``) is
    not applied, and is listed in the returned warnings.
    """
    used: set[Key] = set()
    merged = []
    for result in results:
        rows = []
        for row in result.rows:
            mark = marks.get((row.student, row.notebook, row.exercise))
            if mark is not None and row.status == "manual":
                used.add((row.student, row.notebook, row.exercise))
                rows.append(_marked(row, mark))
            else:
                rows.append(row)
        merged.append(replace(result, rows=rows))
    warnings = [
        f"hand mark for {display_name(key[0])}, {key[1]}, {key[2]} not applied: "
        "there is no written answer for it in the grade book (not handed in, or not graded yet)"
        for key in marks
        if key not in used
    ]
    return merged, warnings


def _marked(row: Row, mark: Mark) -> Row:
    said = f": {mark.comment}" if mark.comment else ""
    text = f"hand mark {number(mark.points)} of {number(row.max_points)}{said}"
    return replace(
        row,
        points=mark.points,
        status=MARKED,
        detail=f"{text} | {row.detail}",
        feedback=text,
    )
