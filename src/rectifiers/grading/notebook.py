"""Reading notebooks without trusting them: bounded size, strict structure, no symlinks.

The grader's parent process reads each submitted ``.ipynb`` here (never through a path that
could leave the student's folder), checks the nbformat-4 structure it relies on, and extracts
the code cells to run and the written answers. ``NotebookError`` carries a reason fit for
the grade book.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from typing import Any

MAX_NOTEBOOK_BYTES = 32 * 2**20
MAX_CELLS = 5000
CELL_TYPES = ("code", "markdown", "raw")
#: The tag of code cells the grader does not run (slow demonstrations no exercise depends on).
SKIP_TAG = "grading-skip"


class NotebookError(ValueError):
    """A notebook that cannot be graded; the message says why."""


@dataclass(frozen=True)
class Cell:
    """One cell, as far as grading needs it."""

    index: int
    cell_type: str
    source: str
    tags: tuple[str, ...]
    grading_id: str | None


def read_file_in(directory_fd: int, filename: str, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """Read the regular file ``filename`` in an open directory, refusing links and oversize files.

    Raises:
        FileNotFoundError: there is no such entry.
        NotebookError: the entry is a symbolic link, not a regular file, or too large.
    """
    if "/" in filename or filename in (".", ".."):
        raise NotebookError(f"{filename!r} is not a plain file name")
    try:
        fd = os.open(
            filename,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            dir_fd=directory_fd,
        )
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotebookError("the notebook is a symbolic link (not followed)") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotebookError("the notebook is not a regular file")
        if info.st_size > limit:
            raise NotebookError(f"the notebook is larger than {limit // 2**20} MiB")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise NotebookError(f"the notebook is larger than {limit // 2**20} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _source(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    raise NotebookError(f"{where}: source must be a string or a list of strings")


def parse(data: bytes) -> dict:
    """Parse and check a notebook's JSON (nbformat 4); raises ``NotebookError``."""
    try:
        notebook = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise NotebookError("the notebook is not UTF-8 text") from None
    except (ValueError, RecursionError) as error:
        raise NotebookError(f"the notebook is not valid JSON ({str(error)[:80]})") from None
    if not isinstance(notebook, dict):
        raise NotebookError("the notebook is not a JSON object")
    if notebook.get("nbformat") != 4 or type(notebook.get("nbformat")) is not int:
        raise NotebookError(f"unsupported nbformat {notebook.get('nbformat')!r:.20} (expected 4)")
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise NotebookError("the notebook has no list of cells")
    if len(cells) > MAX_CELLS:
        raise NotebookError(f"the notebook has more than {MAX_CELLS} cells")
    for index, cell in enumerate(cells):
        where = f"cell {index}"
        if not isinstance(cell, dict):
            raise NotebookError(f"{where} is not a JSON object")
        if cell.get("cell_type") not in CELL_TYPES:
            raise NotebookError(f"{where} has unknown cell_type {cell.get('cell_type')!r:.20}")
        _source(cell.get("source"), where)
        if not isinstance(cell.get("metadata", {}), dict):
            raise NotebookError(f"{where}: metadata must be an object")
    return notebook


def cells(notebook: dict) -> list[Cell]:
    """The cells of a notebook returned by ``parse``."""
    result = []
    for index, cell in enumerate(notebook["cells"]):
        metadata = cell.get("metadata", {})
        tags = metadata.get("tags", [])
        tags = tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()
        grading = metadata.get("grading")
        grading_id = grading.get("id") if isinstance(grading, dict) else None
        result.append(
            Cell(
                index=index,
                cell_type=cell["cell_type"],
                source=_source(cell["source"], f"cell {index}"),
                tags=tags,
                grading_id=grading_id if isinstance(grading_id, str) else None,
            )
        )
    return result


def manual_answers(notebook_cells: list[Cell]) -> dict[str, str]:
    """``item id -> answer text`` from the markdown cells tagged ``manual`` (first cell per id)."""
    answers: dict[str, str] = {}
    for cell in notebook_cells:
        if cell.cell_type == "markdown" and "manual" in cell.tags and cell.grading_id:
            answers.setdefault(cell.grading_id, cell.source)
    return answers
