"""One Markdown feedback file per student, ready to hand back or upload.

For every graded notebook: the points, then each exercise with its points, its status and the
student-visible text (``Row.feedback``): which case failed and the hint, never a hidden case's
inputs or expected value, and for a written answer the hand mark and its comment. Nothing here
reads ``Row.detail``, the instructor's text.

Everything that came from a submission is escaped, so a student's text cannot add Markdown or
HTML to the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .engine import Row, SubmissionResult
from .names import display_name
from .report import WAITING, number

STATUS_WORDS = {
    "passed": "passed",
    "failed": "not passed",
    "error": "error",
    "timeout": "time limit",
    "manual": "written answer, not marked yet",
    "marked": "written answer, marked",
    "missing": "not handed in",
}
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~-])")


def escape(text: str) -> str:
    """Plain text as Markdown that shows exactly that text (one line)."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def feedback_markdown(
    student: str, results: Sequence[SubmissionResult], hints: Mapping[str, str] | None = None
) -> str:
    """The feedback file of one student.

    Args:
        student: the folder name.
        results: that student's results (with hand marks merged), in notebook order.
        hints: ``exercise id -> hint``, added to an exercise that did not pass when its
            feedback does not already end with it.

    Returns:
        Markdown text.
    """
    total = sum(r.points for result in results for r in result.rows)
    maximum = sum(r.max_points for result in results for r in result.rows)
    waiting = sum(r.max_points for result in results for r in result.rows if r.status in WAITING)
    lines = [
        f"# Feedback: {escape(display_name(student))}",
        "",
        f"**{number(total)} of {number(maximum)} points.**"
        + (
            f" Written answers worth {number(waiting)} points are still to be marked."
            if waiting
            else ""
        ),
        "",
        "Each exercise was checked on the public cases of its check cell and on hidden cases "
        "drawn at grading time; the hidden cases themselves are not shown.",
    ]
    for result in results:
        got = sum(r.points for r in result.rows)
        out_of = sum(r.max_points for r in result.rows)
        lines += [
            "",
            f"## {escape(result.notebook)}: {number(got)} of {number(out_of)} points",
            "",
            "| Exercise | Points | Status | Feedback |",
            "| --- | --- | --- | --- |",
        ]
        for row in result.rows:
            status = STATUS_WORDS.get(row.status, row.status)
            lines.append(
                f"| {escape(row.exercise)} | {number(row.points)} of {number(row.max_points)} "
                f"| {escape(status)} | {escape(_shown(row, (hints or {}).get(row.exercise)))} |"
            )
    return "\n".join(lines) + "\n"


def _shown(row: Row, hint: str | None) -> str:
    if row.status == "manual":
        # The answer is the student's own text; they have it. Say what happens next instead.
        return "to be marked by hand"
    if row.status in ("passed", "marked", "missing") or not hint or hint in row.feedback:
        return row.feedback
    return f"{row.feedback}. Hint: {hint}"
