"""``make-exercises``: generate ``exercises/NN_topic.ipynb`` from ``solutions/NN_topic.md``.

Usage::

    make-exercises [--check] [--solutions DIR] [--exercises DIR]

A solution notebook is a jupytext pair (CONTRIBUTING.md): ``NN_topic.md``, MyST Markdown, the
source that is edited, and ``NN_topic.ipynb``, its executed twin. The source is read through
jupytext; the cell ids come from the twin, so they stay the same from one generation to the
next, and the pair must be in sync (``make notebook NB=solutions/NN_topic.md`` syncs it). A
solution folder without ``.md`` files (a test fixture) is read from its ``.ipynb`` files.

What changes from a solution notebook to its exercise notebook:

- In code cells, every region from a line ``# BEGIN SOLUTION`` to a line ``# END SOLUTION``
  becomes one line ``raise NotImplementedError("Exercise <item id>: replace this line with your
  solution")`` at the indentation of the ``BEGIN`` line; the marker lines disappear. The item id
  is the cell's ``grading.id`` metadata if set, else the id in the next code cell when that is a
  check cell (``check("<item id>", globals())``). A line that mentions ``BEGIN SOLUTION`` or ``END
  SOLUTION`` without being exactly a marker, an unclosed or nested region, or a region without an
  item id stops the generation (a solution must never leak by a typo).
- Cells tagged ``solution`` (markdown rubrics and worked explanations, or code) are dropped.
- sphinx-exercise gated solutions (from the line opening a ``{solution-start}`` directive to the
  closing fence of the next ``{solution-end}`` directive, across cells): their markdown is dropped
  (text before the start and after the end is kept) and so are their code cells, except the
  exercise's own: a code cell with a solution region is kept, stubbed as above, and so is a check
  cell. So the book can show the worked solution and its code in a dropdown while the exercise
  notebook keeps only the stub. A ``{solution}`` directive block inside a markdown cell is cut
  out of the cell. A markdown cell left empty is dropped.
- Outputs and execution counts are cleared; cell metadata keeps only ``tags`` and ``grading``;
  check cells are marked non-editable and non-deletable; notebook metadata becomes a fixed
  Python 3 kernelspec; the file is written as nbformat 4.5 with sorted keys, one-space indents
  and a final newline. Generating twice gives byte-identical files.

``--check`` writes nothing: it exits 1 and names every exercise notebook that differs from what
would be generated, is missing, or has no solution notebook, and every problem :func:`lint`
finds in a solution. The lint holds what the solution notebooks promise the grader and the
reader: each auto-graded item has exactly one check cell, right after the cell that defines its
name; each written item exactly one answer cell followed by its rubric; the points in every
``{exercise}`` header, answer cell and points table are those of the item registry; and the
cell ids are valid and unique (the exercise notebook keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from . import notebook as nbread
from .exercise_lint import CELL_ID as _CELL_ID
from .exercise_lint import CHECK_CELL, CHECK_IMPORT, check_cell_id, lint

__all__ = [
    "CHECK_CELL",
    "CHECK_IMPORT",
    "GenerateError",
    "check_cell_id",
    "generate",
    "generate_file",
    "lint",
    "main",
    "pair_problems",
    "read_solution",
    "read_source",
]

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
STUB = 'raise NotImplementedError("Exercise {id}: replace this line with your solution")'
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
#: Every chapter and solution notebook is a jupytext pair: ``NN_topic.md`` (MyST, the source
#: one edits) and ``NN_topic.ipynb`` (its executed twin).
PAIRED_FORMATS = "ipynb,md:myst"
TEXT_FORMAT = "md:myst"
#: Cell metadata that lives only in the ``.ipynb`` twin (jupytext keeps it out of the text).
_IPYNB_ONLY_METADATA = (
    "autoscroll",
    "collapsed",
    "scrolled",
    "trusted",
    "execution",
    "ExecuteTime",
)
_DIRECTIVE = re.compile(
    r"^\s*(?P<fence>`{3,}|:{3,})\{(?P<name>solution|solution-start|solution-end)\}"
)


class GenerateError(ValueError):
    """A solution notebook that cannot become an exercise notebook; the message says where."""


def read_source(md: Path) -> Any:
    """The notebook that the MyST text notebook ``md`` describes, read through jupytext.

    Cell sources and metadata come from ``md``; cell ids and outputs come from the matching
    cells of its ``.ipynb`` twin when there is one, so ids stay stable across edits (a new cell
    gets a fresh id). Returns an ``nbformat.NotebookNode`` (a dict).
    """
    import jupytext
    from jupytext.combine import combine_inputs_with_outputs

    source = jupytext.read(md, fmt=TEXT_FORMAT)
    twin = md.with_suffix(".ipynb")
    if not twin.is_file():
        return source
    import nbformat

    return combine_inputs_with_outputs(source, nbformat.read(twin, as_version=4), TEXT_FORMAT)


def pair_problems(md: Path) -> list[str]:
    """What differs between the MyST source ``md`` and its ``.ipynb`` twin (empty when in sync).

    Compared cell by cell: type, source, and the metadata jupytext writes into the text (tags,
    ``mystnb``, ``grading``, ...); the twin must also declare the pairing (``jupytext.formats``).
    """
    import jupytext
    import nbformat

    twin = md.with_suffix(".ipynb")
    if not md.is_file() or not twin.is_file():
        missing = md if not md.is_file() else twin
        return [f"{missing} is missing: every notebook is a .md/.ipynb pair"]
    text = jupytext.read(md, fmt=TEXT_FORMAT)
    executed = nbformat.read(twin, as_version=4)
    problems = []
    formats = executed.metadata.get("jupytext", {}).get("formats")
    if formats != PAIRED_FORMATS:
        problems.append(f"{twin}: metadata jupytext.formats is {formats!r}, not {PAIRED_FORMATS!r}")
    if len(text.cells) != len(executed.cells):
        problems.append(f"{md} has {len(text.cells)} cells, {twin} has {len(executed.cells)}")
    for index, (ours, theirs) in enumerate(zip(text.cells, executed.cells, strict=False)):
        first = (ours.source.splitlines() or [""])[0][:60]
        meta = {k: v for k, v in theirs.metadata.items() if k not in _IPYNB_ONLY_METADATA}
        if ours.cell_type != theirs.cell_type or ours.source != theirs.source:
            problems.append(f"{md}, cell {index} ({first!r}) differs from {twin}")
        elif ours.metadata != meta:
            problems.append(f"{md}, cell {index} ({first!r}): metadata differs from {twin}")
        if len(problems) > 5:
            break
    if problems:
        problems.append(f"{md} and {twin} are out of sync")
    return problems


def strip_solution_regions(source: str, item_id: str | None, where: str) -> str:
    """Replace each ``BEGIN``/``END SOLUTION`` region of a code cell by the stub line."""
    output, inside = [], False
    for line in source.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise GenerateError(f"{where}: nested {BEGIN!r}")
            if item_id is None:
                raise GenerateError(
                    f"{where}: a solution region needs an item id: follow the cell with "
                    'check("<item id>", globals()) or set the cell metadata '
                    '{"grading": {"id": ...}}'
                )
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            output.append(indent + STUB.format(id=item_id) + ("\n" if line.endswith("\n") else ""))
        elif stripped == END:
            if not inside:
                raise GenerateError(f"{where}: {END!r} without {BEGIN!r}")
            inside = False
        elif "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            raise GenerateError(
                f"{where}: malformed marker line {stripped!r} (write exactly {BEGIN!r} or {END!r})"
            )
        elif not inside:
            output.append(line)
    if inside:
        raise GenerateError(f"{where}: {BEGIN!r} is never closed")
    text = "".join(output)
    return text[:-1] if text.endswith("\n") and not source.endswith("\n") else text


def _is_closing(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


class _GatedState:
    """Where we are with respect to sphinx-exercise solution directives, across cells."""

    def __init__(self) -> None:
        self.in_gated = False  # between solution-start and solution-end
        self.fence: str | None = None  # inside a directive block whose closing fence we await
        self.fence_name = ""

    def markdown(self, source: str, where: str) -> str:
        kept = []
        for line in source.splitlines(keepends=True):
            if self.fence is not None:
                if _is_closing(line, self.fence):
                    if self.fence_name == "solution-end":
                        self.in_gated = False
                    self.fence = None
                continue
            match = _DIRECTIVE.match(line)
            if match:
                name = match.group("name")
                if name == "solution-end" and not self.in_gated:
                    raise GenerateError(f"{where}: {{solution-end}} without {{solution-start}}")
                if name == "solution-start":
                    if self.in_gated:
                        raise GenerateError(f"{where}: nested {{solution-start}}")
                    self.in_gated = True
                self.fence, self.fence_name = match.group("fence"), name
                continue
            if not self.in_gated:
                kept.append(line)
        return "".join(kept)


def _has_region(source: str) -> bool:
    return any(line.strip() == BEGIN for line in source.splitlines())


def _exercise_code(cell: nbread.Cell) -> bool:
    """A code cell the learner needs: one with a solution region, or a check cell."""
    return cell.cell_type == "code" and (
        _has_region(cell.source) or check_cell_id(cell.source) is not None
    )


def _next_code_cell(cells: list[nbread.Cell], position: int) -> nbread.Cell | None:
    return next((c for c in cells[position + 1 :] if c.cell_type == "code"), None)


def _lines(source: str) -> list[str]:
    return source.splitlines(keepends=True)


def generate(solution: dict, where: str = "notebook") -> dict:
    """The exercise notebook for a parsed solution notebook (see the module docstring)."""
    cells = nbread.cells(solution)
    raw_cells = solution["cells"]
    gated = _GatedState()
    out: list[dict] = []
    used_ids: set[str] = set()
    for position, (cell, raw) in enumerate(zip(cells, raw_cells, strict=True)):
        here = f"{where}, cell {cell.index}"
        if cell.cell_type == "markdown":
            source = gated.markdown(cell.source, here)
            if gated.fence is not None:
                raise GenerateError(
                    f"{here}: a solution directive's fence is not closed in its cell"
                )
            if "solution" in cell.tags or not source.strip():
                continue
        elif gated.in_gated and not _exercise_code(cell):
            continue  # a worked solution inside a gated block; the exercise's own cells stay
        elif "solution" in cell.tags:
            continue
        else:
            source = cell.source
        metadata: dict[str, Any] = {}
        tags = [t for t in cell.tags if t != "solution"]
        if tags:
            metadata["tags"] = tags
        if isinstance(raw.get("metadata", {}).get("grading"), dict):
            metadata["grading"] = raw["metadata"]["grading"]
        new: dict[str, Any] = {"cell_type": cell.cell_type, "metadata": metadata}
        if cell.cell_type == "code":
            following = _next_code_cell(cells, position)
            item_id = cell.grading_id or (check_cell_id(following.source) if following else None)
            source = strip_solution_regions(source, item_id, here)
            if check_cell_id(source):
                metadata["editable"] = False
                metadata["deletable"] = False
            new.update(execution_count=None, outputs=[])
        elif "attachments" in raw and cell.cell_type == "markdown":
            new["attachments"] = raw["attachments"]
        new["source"] = _lines(source)
        cell_id = raw.get("id")
        if not (isinstance(cell_id, str) and _CELL_ID.match(cell_id)) or cell_id in used_ids:
            cell_id = f"cell-{len(out)}"
        used_ids.add(cell_id)
        new["id"] = cell_id
        out.append(new)
    if gated.in_gated:
        raise GenerateError(f"{where}: {{solution-start}} is never closed by {{solution-end}}")
    return {
        "cells": out,
        "metadata": {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def dumps(notebook: dict) -> str:
    """Deterministic text of a notebook (the layout Jupyter itself writes)."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def read_solution(path: Path) -> dict:
    """A solution notebook as a plain, checked nbformat-4 dict.

    A ``.md`` path is read through jupytext (:func:`read_source`) and must be in sync with its
    ``.ipynb`` twin, whose cell ids it takes; an ``.ipynb`` path is read as it is.

    Raises:
        GenerateError: the file cannot be read, or the pair is out of sync.
    """
    try:
        if path.suffix == ".md":
            problems = pair_problems(path)
            if problems:
                raise GenerateError(
                    f"{problems[0]}: run `make notebook NB={path}` to sync and execute it"
                )
            data = json.dumps(read_source(path)).encode("utf-8")
        else:
            data = path.read_bytes()
        return nbread.parse(data)
    except (nbread.NotebookError, OSError, ValueError) as error:
        if isinstance(error, GenerateError):
            raise
        raise GenerateError(f"{path}: {error}") from None


def generate_file(solution_path: Path) -> str:
    """Text of the exercise notebook for the solution notebook at ``solution_path``."""
    return dumps(generate(read_solution(solution_path), str(solution_path)))


def solution_sources(solutions: Path) -> dict[str, Path]:
    """``{stem: path}`` of the solution notebooks: the ``.md`` sources, or the ``.ipynb`` files
    of a folder that has no ``.md`` source."""
    sources = {p.stem: p for p in sorted(solutions.glob("*.md"))}
    if not sources:
        sources = {p.stem: p for p in sorted(solutions.glob("*.ipynb"))}
    return sources


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make-exercises",
        description="Generate exercises/*.ipynb from the solutions (solutions/*.md, the single "
        "source).",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if exercises/ is not up to date"
    )
    parser.add_argument(
        "--solutions", default="solutions", metavar="DIR", help="default: ./solutions"
    )
    parser.add_argument(
        "--exercises", default="exercises", metavar="DIR", help="default: ./exercises"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    solutions, exercises = Path(args.solutions), Path(args.exercises)
    if not solutions.is_dir():
        parser.error(
            f"no solutions folder {str(solutions)!r}: run from the repository root or pass "
            "--solutions"
        )
    from .items import EXAMPLES, REGISTRY, combined

    registry = combined(REGISTRY, EXAMPLES)
    sources = solution_sources(solutions)
    try:
        parsed = {stem: read_solution(path) for stem, path in sources.items()}
        generated = {
            f"{stem}.ipynb": dumps(generate(parsed[stem], str(path)))
            for stem, path in sources.items()
        }
    except GenerateError as error:
        print(f"make-exercises: error: {error}", file=sys.stderr)
        return 1
    lint_problems = [
        f"{sources[stem]}: {problem}"
        for stem, solution in parsed.items()
        for problem in lint(solution, stem, registry)
    ]
    existing = sorted(p.name for p in exercises.glob("*.ipynb")) if exercises.is_dir() else []
    orphans = [name for name in existing if name not in generated]
    if args.check:
        stale = []
        for name, text in generated.items():
            target = exercises / name
            if not target.is_file():
                stale.append(f"{target} is missing")
            elif target.read_bytes() != text.encode("utf-8"):
                stale.append(f"{target} differs from what {sources[target.stem]} generates")
        stale += [f"{exercises / name} has no solution notebook in {solutions}" for name in orphans]
        for problem in stale + lint_problems:
            print(f"make-exercises: {problem}", file=sys.stderr)
        if stale:
            print("make-exercises: run `make exercises` and commit the result", file=sys.stderr)
        return 1 if stale or lint_problems else 0
    exercises.mkdir(parents=True, exist_ok=True)
    for name, text in generated.items():
        target = exercises / name
        if not target.is_file() or target.read_bytes() != text.encode("utf-8"):
            temporary = target.with_name(f".{name}.tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, target)
            print(f"make-exercises: wrote {target}", file=sys.stderr)
    for problem in lint_problems:
        print(f"make-exercises: warning: {problem}", file=sys.stderr)
    for name in orphans:
        print(
            f"make-exercises: warning: {exercises / name} has no solution notebook; delete it",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
