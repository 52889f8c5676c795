"""A Canvas gradebook-import CSV: one row per student, one column per notebook.

Canvas imports a CSV shaped like its own gradebook export (*Grades → Import*): the columns
``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID`` and ``Section`` identify the student,
and every further column is an assignment; a column whose name matches no existing assignment
creates one. The second row, ``Points Possible``, gives each assignment's maximum. Canvas
matches students by ``ID``, ``SIS User ID`` or ``SIS Login ID``; this file fills
``SIS Login ID`` with the student's folder name (name the folders by login), and leaves ``ID``,
``SIS User ID`` and ``Section`` empty. Each notebook's column holds the student's points on it
(hand marks included); a notebook that was not graded for a student is left empty, which Canvas
reads as "no change".
"""

from __future__ import annotations

from collections.abc import Sequence

from .engine import SubmissionResult
from .names import display_name
from .report import guard, number, to_csv

IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def canvas_csv(results: Sequence[SubmissionResult], notebooks: Sequence[str]) -> bytes:
    """The Canvas import file.

    Args:
        results: every graded submission (hand marks merged).
        notebooks: the assignment columns, in order.

    Returns:
        CSV bytes: the header, the ``Points Possible`` row, one row per student.
    """
    points: dict[str, dict[str, float]] = {}
    possible: dict[str, float] = {}
    for result in results:
        if result.notebook not in notebooks:
            continue
        points.setdefault(result.student, {})[result.notebook] = sum(r.points for r in result.rows)
        possible[result.notebook] = max(
            possible.get(result.notebook, 0.0), sum(r.max_points for r in result.rows)
        )
    rows = [["Points Possible", "", "", "", ""] + [number(possible.get(n, 0)) for n in notebooks]]
    for student in sorted(points, key=display_name):
        shown = guard(display_name(student))
        rows.append(
            [shown, "", "", shown, ""]
            + [number(points[student][n]) if n in points[student] else "" for n in notebooks]
        )
    return to_csv(IDENTITY + tuple(notebooks), rows)
