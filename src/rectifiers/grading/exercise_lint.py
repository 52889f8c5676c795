"""The contract of a solution notebook, checked by ``make-exercises`` (:func:`lint`).

What the solution notebooks promise the grader and the reader, and what the former notebook
generator (a Python DSL) used to guarantee by construction:

- each auto-graded item has exactly one check cell, ``check("<item id>", globals())`` alone in
  its cell, right after the cell that defines the item's name, and after the check import;
- each written item has exactly one answer cell (markdown, tagged ``manual``, with ``grading.id``
  metadata) followed by its rubric (a markdown cell tagged ``solution``);
- the points written in the notebook are the registry's: the ``**(`name`, N points; ...)**``
  line that opens every ``{exercise}`` block (each auto-graded item in exactly one), the
  ``(N points, graded by hand)`` of each answer cell, and the points table with its total;
- every cell id is valid and unique, so the exercise notebook keeps the solution's ids.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import notebook as nbread

__all__ = ["CELL_ID", "CHECK_CELL", "CHECK_IMPORT", "check_cell_id", "lint"]

CHECK_CELL = re.compile(r'^check\("([A-Za-z0-9][A-Za-z0-9_.-]{0,63})", globals\(\)\)$')
CHECK_IMPORT = "from rectifiers.grading import check"
#: A cell id that nbformat accepts and the exercise notebook keeps.
CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_cell_id(source: str) -> str | None:
    """The item id if ``source`` is exactly a check cell, else ``None``."""
    match = CHECK_CELL.match(source.strip())
    return match.group(1) if match else None


def _previous_code_cell(cells: list[nbread.Cell], position: int) -> nbread.Cell | None:
    return next((c for c in reversed(cells[:position]) if c.cell_type == "code"), None)


def _top_level_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
    return names


def lint(solution: dict, notebook: str, registry: Mapping[str, Sequence[Any]]) -> list[str]:
    """Problems of a parsed solution notebook against the format contract and the item registry."""
    problems = []
    items = {item.id: item for item in registry.get(notebook, [])}
    if not items:
        return [f"{notebook}: no items are registered for this notebook"]
    cells = nbread.cells(solution)
    checks: dict[str, int] = {}
    manual: dict[str, int] = {}
    imported = False
    for position, cell in enumerate(cells):
        if cell.cell_type == "code" and CHECK_IMPORT in cell.source:
            imported = True
        item_id = check_cell_id(cell.source) if cell.cell_type == "code" else None
        if item_id is not None:
            checks[item_id] = checks.get(item_id, 0) + 1
            if not imported:
                problems.append(f"cell {cell.index}: check cell before {CHECK_IMPORT!r}")
            item = items.get(item_id)
            if item is None:
                problems.append(
                    f"cell {cell.index}: check id {item_id!r} is not a registered item of "
                    f"{notebook}"
                )
            elif item.kind != "auto":
                problems.append(
                    f"cell {cell.index}: {item_id!r} is a written item, it takes no check cell"
                )
            else:
                previous = _previous_code_cell(cells, position)
                if previous is None or item.name not in _top_level_names(previous.source):
                    problems.append(
                        f"cell {cell.index}: the cell before check({item_id!r}) must define "
                        f"`{item.name}`"
                    )
                elif nbread.SKIP_TAG in previous.tags:
                    problems.append(
                        f"cell {previous.index}: defines `{item.name}` but is tagged "
                        f"{nbread.SKIP_TAG}"
                    )
        elif (
            cell.cell_type == "code" and "check(" in cell.source and "def check" not in cell.source
        ):
            for line in cell.source.splitlines():
                if line.strip().startswith("check(") and check_cell_id(line) is None:
                    problems.append(
                        f'cell {cell.index}: a check call must be exactly check("<id>", '
                        "globals()) alone in its cell"
                    )
        if cell.cell_type == "markdown" and "manual" in cell.tags:
            if cell.grading_id is None:
                problems.append(
                    f"cell {cell.index}: a cell tagged manual needs metadata "
                    '{"grading": {"id": ...}}'
                )
                continue
            manual[cell.grading_id] = manual.get(cell.grading_id, 0) + 1
            item = items.get(cell.grading_id)
            if item is None or item.kind != "manual":
                problems.append(
                    f"cell {cell.index}: {cell.grading_id!r} is not a registered written item "
                    f"of {notebook}"
                )
            following = cells[position + 1] if position + 1 < len(cells) else None
            if (
                following is None
                or following.cell_type != "markdown"
                or "solution" not in following.tags
            ):
                problems.append(
                    f"cell {cell.index}: the written answer {cell.grading_id!r} must be "
                    "followed by its rubric "
                    "(a markdown cell tagged solution)"
                )
    for item in items.values():
        seen = (checks if item.kind == "auto" else manual).get(item.id, 0)
        if seen != 1:
            kind = "check cell" if item.kind == "auto" else "manual cell"
            problems.append(f"item {item.id!r} has {seen} {kind}s (expected exactly 1)")
    return problems + _points_problems(cells, items) + _id_problems(solution["cells"])


_EXERCISE = re.compile(r"^\s*(`{3,}|:{3,})\{exercise\}")
_HEADER = re.compile(r"^\*\*\((?P<parts>.*)\)\*\*\s*$")
_HEADER_PART = re.compile(r"^(?:`(?P<name>[^`]+)`|written answer), (?P<points>[0-9.]+) points?$")
_ANSWER_POINTS = re.compile(r"\((?P<points>[0-9.]+) points?, graded by hand\)")
_TABLE_ROW = re.compile(
    r"^\|\s*(?:`(?P<name>[^`]+)`|written answer `(?P<id>[^`]+)`|\*\*Total\*\*)\s*\|"
    r"[^|]*\|\s*(?:\*\*)?(?P<points>[0-9.]+)(?:\*\*)?\s*\|\s*$"
)


def _exercise_header(source: str) -> str | None:
    """The ``**(...)**`` points line of the first ``{exercise}`` block in ``source``, if any."""
    lines = source.splitlines()
    for number, line in enumerate(lines):
        if _EXERCISE.match(line):
            for following in lines[number + 1 :]:
                if following.strip() and not following.lstrip().startswith(":"):
                    match = _HEADER.match(following.strip())
                    return match.group("parts") if match else ""
            return ""
    return None


def _points_problems(cells: list[nbread.Cell], items: dict[str, Any]) -> list[str]:
    """Points written in the notebook that are not the registry's (the registry is the truth).

    A notebook that writes no points at all (no exercise points line, no answer cell with
    points; a minimal fixture) has nothing to contradict the registry and is not checked; once
    it writes some, every exercise block and answer cell must carry them.
    """
    declares = any(
        cell.cell_type == "markdown"
        and (_exercise_header(cell.source) or _ANSWER_POINTS.search(cell.source))
        for cell in cells
    )
    if not declares:
        return []
    problems = []
    by_name = {item.name: item for item in items.values() if item.kind == "auto"}
    headed: dict[str, int] = {}
    written: list[tuple[int, float]] = []  # (cell, points) announced by exercise headers
    table_rows = 0
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        parts = _exercise_header(cell.source)
        if parts == "":
            problems.append(
                f"cell {cell.index}: an {{exercise}} block must start with its points line, "
                "**(`name`, N points; ...)**"
            )
        for part in (parts or "").split("; ") if parts else []:
            match = _HEADER_PART.match(part.strip())
            if match is None:
                problems.append(f"cell {cell.index}: cannot read {part!r} in the exercise header")
                continue
            points = float(match.group("points"))
            if match.group("name") is None:
                written.append((cell.index, points))
                continue
            item = by_name.get(match.group("name"))
            if item is None:
                problems.append(
                    f"cell {cell.index}: the exercise header names `{match.group('name')}`, "
                    "which is no auto-graded item of this notebook"
                )
            else:
                headed[item.id] = headed.get(item.id, 0) + 1
                if points != item.points:
                    problems.append(
                        f"cell {cell.index}: the exercise header gives `{item.name}` {points:g} "
                        f"points, the registry {item.points:g}"
                    )
        if "manual" in cell.tags and cell.grading_id in items:
            item = items[cell.grading_id]
            match = _ANSWER_POINTS.search(cell.source)
            if match is None or float(match.group("points")) != item.points:
                problems.append(
                    f"cell {cell.index}: the answer cell of {item.id!r} must say "
                    f"'({item.points:g} point{'s' * (item.points != 1)}, graded by hand)'"
                )
            if not written:
                problems.append(
                    f"cell {cell.index}: no exercise header announces the written answer "
                    f"{item.id!r}"
                )
            elif written.pop(0)[1] != item.points:
                problems.append(
                    f"cell {cell.index}: the exercise header's points for the written answer "
                    f"{item.id!r} are not the registry's {item.points:g}"
                )
        for line in cell.source.splitlines():
            row = _TABLE_ROW.match(line.strip())
            if row is None:
                continue
            table_rows += 1
            points = float(row.group("points"))
            if row.group("name") is not None:
                item = by_name.get(row.group("name"))
            elif row.group("id") is not None:
                item = items.get(row.group("id"))
            else:
                total = sum(item.points for item in items.values())
                if points != total:
                    problems.append(
                        f"cell {cell.index}: the points table's total is {points:g}, "
                        f"the registry's {total:g}"
                    )
                continue
            if item is None or item.points != points:
                problems.append(
                    f"cell {cell.index}: points table row {line.strip()!r} is not "
                    "a registered item with those points"
                )
    for index, points in written:
        problems.append(f"cell {index}: a written answer ({points:g} points) has no answer cell")
    for item in by_name.values():
        if headed.get(item.id, 0) != 1:
            problems.append(
                f"item {item.id!r} is named in {headed.get(item.id, 0)} exercise headers "
                "(expected exactly 1)"
            )
    if table_rows and table_rows != len(items) + 1:
        problems.append(
            f"the points table has {table_rows} rows, expected one per item and a total "
            f"({len(items) + 1})"
        )
    return problems


def _id_problems(raw_cells: list[dict]) -> list[str]:
    """Cell ids that the exercise notebook could not keep: missing, malformed or repeated."""
    problems, seen = [], set()
    for index, cell in enumerate(raw_cells):
        cell_id = cell.get("id")
        if not (isinstance(cell_id, str) and CELL_ID.match(cell_id)):
            problems.append(f"cell {index}: id {cell_id!r} is missing or not [A-Za-z0-9_-]{{1,64}}")
        elif cell_id in seen:
            problems.append(f"cell {index}: id {cell_id!r} repeats an earlier cell's")
        seen.add(cell_id)
    return problems
