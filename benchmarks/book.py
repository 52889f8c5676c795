"""A cached ``make book`` rebuild after a prose-only edit, on a copy of the book.

The repository is never modified. The book's sources (every file git tracks, plus new files
it does not ignore) and the existing ``_build/`` (executed-notebook cache, Sphinx environment
and HTML) are copied to a temporary folder with a link to the repository's ``.venv``. There:

1. ``make book`` once, untimed, so the copy's cache and environment match the current sources
   (its time is recorded as ``warmup_seconds``);
2. then ``runs`` times: append a sentence to a Markdown cell of the first chapter notebook in
   the table of contents (a prose-only edit: no code cell changes, so the execution cache must
   hold) and time ``make book``.

The budget is the median of step 2. The number of notebooks the rebuild executed is counted
from the build's log; it should be 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ._core import Missing, Options, budget, load_average, median
from ._measure import run_command

BUDGET_S = 20.0
TIMEOUT_S = 1200.0
# Folders of _build/ that the rebuild does not read.
SKIP_BUILD = {"screenshots", "bench.json", "bench.md"}
# MyST-NB logs one line per notebook it runs, and another per notebook taken from its cache.
EXECUTED = re.compile(r"Executed notebook in [0-9.]+ seconds")
FROM_CACHE = re.compile(r"Using cached notebook")


def source_files(repo: Path) -> list[str]:
    """Files git tracks or would track (not ignored), relative to ``repo``, that exist."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    names = sorted({name for name in listed.decode().split("\0") if name})
    return [name for name in names if (repo / name).is_file()]


def toc_files(toc: dict) -> list[str]:
    """Every document named in a Jupyter Book ``_toc.yml`` (``root`` first), in order."""
    found = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def edit_target(book: Path) -> Path:
    """The document a prose edit goes into: the first notebook in the table of contents.

    Falls back to the root document when the table of contents lists no notebook.

    Raises:
        Missing: if there is no ``_toc.yml`` or none of its documents exists.
    """
    import yaml

    toc_path = book / "_toc.yml"
    if not toc_path.is_file():
        raise Missing("no _toc.yml")
    documents = []
    for name in toc_files(yaml.safe_load(toc_path.read_text(encoding="utf-8"))):
        for suffix in ("", ".ipynb", ".md"):
            path = book / (name + suffix)
            if path.is_file():
                documents.append(path)
                break
    notebooks = [path for path in documents if path.suffix == ".ipynb"]
    if notebooks:
        return notebooks[0]
    if documents:
        return documents[0]
    raise Missing("none of the documents in _toc.yml exists")


def prose_edit(path: Path, number: int) -> None:
    """Append a sentence to the last Markdown cell of a notebook, or to a Markdown file.

    Code cells are left exactly as they are, so the notebook's execution-cache key (a hash of
    its code) does not change.
    """
    sentence = f"Benchmark prose edit number {number}."
    if path.suffix == ".ipynb":
        import nbformat

        nb = nbformat.read(path, as_version=4)
        markdown = [cell for cell in nb.cells if cell.cell_type == "markdown"]
        if not markdown:
            raise ValueError(f"{path} has no Markdown cell to edit")
        markdown[-1].source = markdown[-1].source.rstrip("\n") + "\n\n" + sentence
        nbformat.write(nb, path)
    else:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n" + sentence + "\n")


def copy_book(repo: Path, target: Path) -> None:
    """Copy the book's sources and ``_build/`` from ``repo`` into the empty folder ``target``."""
    for name in source_files(repo):
        if name.split("/", 1)[0] in (".venv", "_build"):
            continue  # linked and copied whole below, even where git does not ignore them
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, destination)
    build = repo / "_build"
    shutil.copytree(
        build,
        target / "_build",
        symlinks=True,
        ignore=lambda folder, names: [
            n for n in names if Path(folder) == build and n in SKIP_BUILD
        ],
    )
    os.symlink(repo / ".venv", target / ".venv")


def make_book(folder: Path) -> dict:
    """Run ``make book`` in ``folder``: :func:`run_command`'s dict and notebook counts."""
    # -o: never redo the .venv set-up from the copy (it is the repository's, linked).
    outcome = run_command(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "book"],
        cwd=folder,
        timeout=TIMEOUT_S,
        env=dict(os.environ),
        tail_lines=5000,
    )
    outcome["executed_notebooks"] = sum(1 for line in outcome["tail"] if EXECUTED.search(line))
    outcome["cached_notebooks"] = sum(1 for line in outcome["tail"] if FROM_CACHE.search(line))
    return outcome


def run(options: Options) -> tuple[dict, list[dict]]:
    """Time cached rebuilds after prose-only edits; see the module docstring."""
    repo = options.repo
    if not (repo / "_build" / "html").is_dir():
        raise Missing(
            "no _build/html: run make book first (the rebuild is measured from a built book)"
        )
    if not (repo / ".venv" / ".installed").is_file():
        raise Missing(".venv is not set up")
    with tempfile.TemporaryDirectory(prefix="bench-book-") as temporary:
        folder = Path(temporary)
        copy_book(repo, folder)
        target = edit_target(folder)
        print("  book: warm-up build of the copy ...", flush=True)
        warmup = make_book(folder)
        if warmup["returncode"] != 0:
            raise RuntimeError(f"make book failed on the copy: {warmup['tail'][-5:]}")
        rebuilds = []
        for number in range(1, options.runs + 1):
            prose_edit(target, number)
            load = load_average()[0]
            print(f"  book: rebuild {number} after a prose edit ...", flush=True)
            outcome = make_book(folder)
            if outcome["returncode"] != 0:
                raise RuntimeError(f"make book failed after a prose edit: {outcome['tail'][-5:]}")
            rebuilds.append(
                {
                    "seconds": outcome["seconds"],
                    "load_1min": load,
                    "executed_notebooks": outcome["executed_notebooks"],
                    "cached_notebooks": outcome["cached_notebooks"],
                }
            )
    seconds = round(median([r["seconds"] for r in rebuilds]), 2)
    results = {
        "edited": str(target.relative_to(folder)),
        "warmup_seconds": warmup["seconds"],
        "warmup_executed_notebooks": warmup["executed_notebooks"],
        "seconds": seconds,
        "runs": rebuilds,
        "executed_notebooks": max(r["executed_notebooks"] for r in rebuilds),
    }
    return results, [
        budget(
            "book:cached_rebuild",
            "cached make book after a prose-only edit",
            seconds,
            BUDGET_S,
            "<=",
            "s",
        )
    ]
