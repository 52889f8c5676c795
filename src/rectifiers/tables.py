r"""Results tables for the book: real tables generated from the results, never aligned text.

A chapter cell that ends in :func:`table` shows a Markdown table. Jupyter Book (myst-nb),
JupyterLab and Colab render the ``text/markdown`` output as a table that wraps and scrolls like
the page's own tables; a terminal gets the plain-text form. The values are formatted here, from
one format per column, so a table cell and a glued number in the prose show the same rounding.

Example::

    >>> t = table(["activation", "share"], [["ReLU", 0.25], ["Leaky ReLU", 0.125]],
    ...           formats=[None, ".1%"])
    >>> print(t.markdown())
    | activation | share |
    |:---|---:|
    | ReLU | 25.0% |
    | Leaky ReLU | 12.5% |
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = ["Table", "table"]


def _cell(value: object, spec: str | None) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # a 0-d tensor or NumPy scalar
    if spec and isinstance(value, numbers.Real):
        return format(value, spec)
    text = str(value)
    # A "|" would end the Markdown cell early; a newline would end the row.
    return text.replace("|", r"\|").replace("\n", " ")


class Table:
    """A formatted table: ``columns`` (header strings) and ``rows`` (lists of cell strings).

    Numeric columns (every value a real number) are right-aligned. Build one with
    :func:`table`; display it as the last expression of a cell.
    """

    def __init__(self, columns: list[str], rows: list[list[str]], numeric: list[bool]):
        self.columns = columns
        self.rows = rows
        self.numeric = numeric

    def markdown(self) -> str:
        """The table as GitHub/MyST Markdown (``|`` separated, an alignment row)."""
        lines = ["| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---:" if n else ":---" for n in self.numeric) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        widths = [
            max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
            for i, c in enumerate(self.columns)
        ]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if n else c.ljust(w)
                for c, w, n in zip(cells, widths, self.numeric, strict=True)
            ).rstrip()

        return "\n".join([line(self.columns), *(line(r) for r in self.rows)])


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    formats: Sequence[str | None] | None = None,
) -> Table:
    """A table of results, shown as Markdown in the book, JupyterLab and Colab.

    Args:
        columns: the header, one string per column.
        rows: the rows, each a sequence with one value per column (numbers, 0-d tensors,
            strings; ``None`` shows as an empty cell).
        formats: one format spec per column (e.g. ``".1%"``, ``".3f"``, ``","``) applied to
            numeric values, or ``None`` to use ``str``. Default: ``str`` for every column.

    Returns:
        A :class:`Table`; its numeric columns are right-aligned.

    Raises:
        ValueError: a row or ``formats`` does not have one entry per column, or a format spec
            does not apply to a value of its column.
        TypeError: ``columns`` is not a sequence of strings.

    Example::

        >>> print(table(["slope", "dead"], [[0.0, 0.25], [0.1, 0.0]], [".2f", ".0%"]).markdown())
        | slope | dead |
        |---:|---:|
        | 0.00 | 25% |
        | 0.10 | 0% |
    """
    if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise TypeError(f"table: columns must be a sequence of strings, got {columns!r}")
    width = len(columns)
    specs = list(formats) if formats is not None else [None] * width
    if len(specs) != width:
        raise ValueError(
            f"table: formats has {len(specs)} entries, expected one per column ({width})"
        )
    cells, numeric = [], [True] * width
    for number, row in enumerate(rows):
        row = list(row)
        if len(row) != width:
            raise ValueError(
                f"table: row {number} has {len(row)} values, expected {width}: {row!r}"
            )
        formatted = []
        for column, (value, spec) in enumerate(zip(row, specs, strict=True)):
            plain = (
                value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value
            )
            if not isinstance(plain, numbers.Real) or isinstance(plain, bool):
                numeric[column] = False
            try:
                formatted.append(_cell(value, spec))
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"table: format {spec!r} of column {columns[column]!r} does not apply to "
                    f"{value!r} (row {number}): {error}"
                ) from None
        cells.append(formatted)
    if not cells:
        numeric = [False] * width
    return Table([_cell(c, None) for c in columns], cells, numeric)
