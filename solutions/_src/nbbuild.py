"""Small helpers that write the solution notebooks with nbformat (the single source of truth).

Each ``sNN_<topic>.py`` next to this file describes one notebook as a sequence of calls below;
``make.py`` writes them to ``solutions/NN_<topic>.ipynb`` and executes them. The exercise
notebooks in ``exercises/`` are generated from the executed solutions by ``make-exercises``.

Conventions (the contract with the grader, see ``rectifiers.grading``):

- an exercise is a sphinx-exercise ``{exercise}`` block in a markdown cell, with its points;
- its solution sits between gated ``{solution-start}``/``{solution-end}`` markdown cells (a
  dropdown in the book); inside, the learner's code is marked ``# BEGIN SOLUTION``/
  ``# END SOLUTION``;
- the cell right after the cell that defines an auto-graded name is ``check("<id>", globals())``;
- a written answer is a markdown cell tagged ``manual`` with ``{"grading": {"id": ...}}``
  metadata, followed by its rubric in a markdown cell tagged ``solution``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat

from rectifiers.grading.items import REGISTRY

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
SOLUTIONS = Path(__file__).resolve().parent.parent


def _clean(text: str) -> str:
    return _separate_display_math(textwrap.dedent(text).strip("\n"))


def _separate_display_math(text: str) -> str:
    """Put a blank line before and after every ``$$ ... $$`` block: MyST only parses display
    math that stands in its own paragraph, and renders a block glued to text as broken inline
    math."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip().startswith("$$"):
            out.append(line)
            index += 1
            continue
        end = index
        single = line.strip() != "$$" and line.strip().endswith("$$") and len(line.strip()) > 4
        if not single:
            end = index + 1
            while end < len(lines) and not lines[end].strip().endswith("$$"):
                end += 1
        if out and out[-1].strip():
            out.append("")
        out.extend(lines[index : end + 1])
        if end + 1 < len(lines) and lines[end + 1].strip():
            out.append("")
        index = end + 1
    return "\n".join(out)


def _fence(body: str) -> str:
    """A backtick fence longer than any backtick run inside ``body`` (nested code blocks)."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _points(value: float) -> str:
    number = f"{value:g}"
    return f"{number} point" + ("" if value == 1 else "s")


class Notebook:
    """Collects the cells of one solution notebook."""

    def __init__(self, stem: str):
        self.stem = stem
        self.items = {item.id: item for item in REGISTRY[stem]}
        self.cells: list = []
        self._used: set[str] = set()

    # -- plain cells ----------------------------------------------------------------------------

    def md(self, text: str, *, tags: tuple[str, ...] = (), metadata: dict | None = None) -> None:
        cell = nbformat.v4.new_markdown_cell(_clean(text))
        meta = dict(metadata or {})
        if tags:
            meta["tags"] = list(tags)
        cell.metadata = meta
        self.cells.append(cell)

    def code(self, source: str, *, tags: tuple[str, ...] = ()) -> None:
        cell = nbformat.v4.new_code_cell(_clean(source))
        if tags:
            cell.metadata = {"tags": list(tags)}
        self.cells.append(cell)

    # -- exercise structure ---------------------------------------------------------------------

    def header(self, title: str, summary: str) -> None:
        """Title, links to the chapter and to the exercise notebook, how grading works, points."""
        self.md(
            f"""# {title}

{_clean(summary)}

These exercises go with the chapter {{doc}}`../chapters/{self.stem}`. To solve them, download
the exercise notebook {{download}}`{self.stem}.ipynb <../exercises/{self.stem}.ipynb>`: it is this
page without the solutions. Here in the book each solution is folded away under its exercise;
try first, unfold after."""
        )
        self.md(
            """## How this exercise set works

The downloaded notebook runs top to bottom in the course's environment (it imports the
`rectifiers` package). Each cell that raises `NotImplementedError` is yours to replace, and
under each exercise:

- Run your cell, then the check cell after it, `check("<item id>", globals())`. It tries a few
  fixed inputs and prints **PASS**, or **FAIL** with the first difference and a hint.
- A PASS is necessary, not sufficient: when the notebook is graded, your code is called again
  on inputs drawn at random at grading time, so code that only fits the inputs shown here fails.
- Written answers go in the cell marked for them and are graded by hand against a rubric, which
  the book folds away with the solutions.
- Keep the names, the check cells and the order of the cells as they are."""
        )
        self.points_table()

    def points(self, item_id: str) -> str:
        """``"2 points"`` for the item, from the trusted registry (so the text cannot drift)."""
        return _points(self.items[item_id].points)

    def exercise(self, label: str, title: str, item_ids: list[str], body: str) -> None:
        """An ``{exercise}`` block; its first line lists the graded items and their points."""
        parts = []
        for item_id in item_ids:
            item = self.items[item_id]
            what = f"`{item.name}`" if item.name else "written answer"
            parts.append(f"{what}, {_points(item.points)}")
        header = "**(" + "; ".join(parts) + ")**" if parts else ""
        fence = _fence(body)
        self.md(
            f"{fence}{{exercise}} {title}\n:label: {label}\n\n{header}\n\n{_clean(body)}\n{fence}"
        )

    def solution_start(self, label: str, text: str = "") -> None:
        """Open a folded solution of exercise ``label``; ``text`` is shown inside it first."""
        body = f"```{{solution-start}} {label}\n:class: dropdown\n```"
        if text:
            body += "\n\n" + _clean(text)
        self.md(body)

    def solution_end(self, text: str = "") -> None:
        body = (_clean(text) + "\n\n" if text else "") + "```{solution-end}\n```"
        self.md(body)

    def solution(self, label: str, source: str, *, text: str = "", after: str = "") -> None:
        """A folded solution of exercise ``label``: optional markdown ``text``, one code cell
        (whose learner part is marked ``# BEGIN SOLUTION``/``# END SOLUTION``) and optional
        markdown ``after`` it."""
        if "# BEGIN SOLUTION" not in source or "# END SOLUTION" not in source:
            raise ValueError(f"{label}: the solution cell has no BEGIN/END SOLUTION markers")
        self.solution_start(label, text)
        self.code(source)
        self.solution_end(after)

    def check(self, item_id: str) -> None:
        if item_id not in self.items or self.items[item_id].kind != "auto":
            raise KeyError(f"{item_id} is not an auto-graded item of {self.stem}")
        self._used.add(item_id)
        self.code(f'check("{item_id}", globals())')

    def written(self, item_id: str, label: str, rubric: str) -> None:
        """The learner's answer cell and, folded, the model answer with its rubric."""
        item = self.items[item_id]
        if item.kind != "manual":
            raise KeyError(f"{item_id} is not a written item")
        self._used.add(item_id)
        self.md(
            f"**Your answer ({_points(item.points)}, graded by hand):** _replace this line with "
            "your answer._",
            tags=("manual",),
            metadata={"grading": {"id": item_id}},
        )
        fence = _fence(rubric)
        self.md(
            f"{fence}{{solution}} {label}\n:class: dropdown\n:label: {label}-rubric\n\n{_clean(rubric)}\n{fence}",
            tags=("solution",),
        )

    def points_table(self) -> None:
        rows = ["| Exercise item | Kind | Points |", "|---|---|---|"]
        for item in self.items.values():
            what = f"`{item.name}`" if item.name else f"written answer `{item.id}`"
            kind = "checked automatically" if item.kind == "auto" else "graded by hand"
            rows.append(f"| {what} | {kind} | {item.points:g} |")
        total = sum(item.points for item in self.items.values())
        rows.append(f"| **Total** | | **{total:g}** |")
        self.md("\n".join(rows))

    # -- output ---------------------------------------------------------------------------------

    def notebook(self) -> nbformat.NotebookNode:
        missing = set(self.items) - self._used
        if missing:
            raise ValueError(
                f"{self.stem}: items without a check or answer cell: {sorted(missing)}"
            )
        nb = nbformat.v4.new_notebook()
        nb.cells = self.cells
        nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
        for index, cell in enumerate(nb.cells):
            cell.id = f"{self.stem.split('_')[0]}-{index:03d}"
        return nb
