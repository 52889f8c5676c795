"""Edit -> sync -> execute: the chapter and solution notebooks from their MyST sources.

Every notebook of ``chapters/`` and ``solutions/`` is a pair: ``NN_topic.md`` (a MyST Markdown
text notebook, jupytext format ``md:myst``; the file you edit and review) and ``NN_topic.ipynb``
(its executed twin, whose outputs nbval checks and the book renders). Usage, from the repository
root (``make notebook NB=...`` and ``make pairs`` call it)::

    .venv/bin/python tools/notebooks.py run chapters/01_motivation.md [...]   # sync + execute
    .venv/bin/python tools/notebooks.py sync chapters/01_motivation.md [...]  # prose-only edit
    .venv/bin/python tools/notebooks.py check [PATH ...]   # exit 1 when a pair is out of sync

``run`` reads the ``.md`` (the source wins, whatever the files' times), keeps the cell ids of the
``.ipynb`` twin for the cells that match, executes the notebook in a fresh ``python3`` kernel in
the notebook's own folder with the pinned thread count (``OMP_NUM_THREADS=2``, the outputs were
produced with it), strips what changes from run to run (per-cell timing, widget state, the
Python patch version) and writes both files, the ``.md`` normalised the way jupytext writes it.
``sync`` does the same without executing: the outputs of the twin's matching cells are kept, so
use it only when no code cell changed (nbval then proves the outputs are still what the code
prints). ``check`` compares each pair cell by cell (type, source, metadata).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("chapters", "solutions")
sys.path.insert(0, str(REPO / "src"))

from rectifiers.grading.generate import PAIRED_FORMATS, pair_problems, read_source  # noqa: E402

KERNEL = "python3"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": KERNEL}
CELL_TIMEOUT_S = 300
#: Environment of the kernel: the thread count the committed outputs were produced with.
PINNED_ENV = {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}


def discover(paths: list[str]) -> list[Path]:
    """The ``.md`` sources named by ``paths`` (a ``.md``, its ``.ipynb`` twin, or a folder).

    With no paths: every ``NN_topic.md`` of ``chapters/`` and ``solutions/``.
    """
    if not paths:
        return [md for folder in FOLDERS for md in sorted((REPO / folder).glob("[0-9]*.md"))]
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(path.glob("[0-9]*.md")))
        elif path.suffix in (".md", ".ipynb"):
            found.append(path.with_suffix(".md"))
        else:
            raise SystemExit(f"notebooks: {name}: expected a .md source, its .ipynb or a folder")
    return found


def _normalise(notebook: nbformat.NotebookNode) -> None:
    """Drop what changes from one execution to the next, keep what the pair needs."""
    notebook.metadata.pop("widgets", None)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata["jupytext"] = {"formats": PAIRED_FORMATS}
    info = notebook.metadata.get("language_info", {})
    info.pop("version", None)  # the Python patch version of whoever ran it last
    notebook.metadata["language_info"] = info or {"name": "python"}
    for cell in notebook.cells:
        for volatile in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(volatile, None)


def _write(notebook: nbformat.NotebookNode, md: Path) -> None:
    nbformat.validate(notebook)
    nbformat.write(notebook, md.with_suffix(".ipynb"))
    jupytext.write(notebook, md, fmt="md:myst")


def sync(md: Path) -> None:
    """Write ``md``'s twin from ``md``, keeping the twin's outputs for the matching cells."""
    notebook = read_source(md)
    _normalise(notebook)
    _write(notebook, md)


def run(md: Path, timeout: int = CELL_TIMEOUT_S) -> float:
    """Execute ``md`` in a fresh kernel and write the pair; returns the seconds it took.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised (nothing is written).
    """
    from nbclient import NotebookClient

    notebook = read_source(md)
    os.environ.update(PINNED_ENV)  # the kernel inherits it
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=KERNEL,
        record_timing=False,
        resources={"metadata": {"path": str(md.resolve().parent)}},
    ).execute()
    seconds = time.perf_counter() - start
    _normalise(notebook)
    _write(notebook, md)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "sync", "check"))
    parser.add_argument("paths", nargs="*", help="a .md source, its .ipynb, or a folder")
    args = parser.parse_args(argv)
    if args.command != "check" and not args.paths:
        parser.error(f"{args.command} needs the notebook(s), e.g. chapters/01_motivation.md")
    sources = discover(args.paths)
    status = 0
    for md in sources:
        if args.command == "check":
            for problem in pair_problems(md):
                print(f"notebooks: {problem}", file=sys.stderr)
                status = 1
        elif not md.is_file():
            print(f"notebooks: {md} does not exist", file=sys.stderr)
            status = 1
        elif args.command == "sync":
            sync(md)
            print(f"notebooks: {md.with_suffix('.ipynb')} synced from {md} (not executed)")
        else:
            seconds = run(md)
            print(f"notebooks: {md.with_suffix('.ipynb')} executed in {seconds:.1f} s")
    if args.command == "check" and status:
        print(
            "notebooks: edit the .md, then `make notebook NB=<the .md>` (CONTRIBUTING.md)",
            file=sys.stderr,
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
