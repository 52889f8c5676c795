"""Write (and by default execute) the solution notebooks from their sources in this folder.

Usage, from the repository root::

    .venv/bin/python solutions/_src/make.py [--no-execute] [01 02 ...]

Then regenerate the exercise notebooks with ``.venv/bin/make-exercises``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nbbuild import SOLUTIONS  # noqa: E402

SOURCES = sorted(p.stem for p in HERE.glob("s[0-9][0-9]_*.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook numbers to build (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write without executing")
    parser.add_argument(
        "--timing", action="store_true", help="execute, print the slowest cells, and write nothing"
    )
    args = parser.parse_args()
    for source in SOURCES:
        number = source[1:3]
        if args.only and number not in args.only:
            continue
        nb = importlib.import_module(source).build().notebook()
        path = SOLUTIONS / f"{source[1:]}.ipynb"
        if not args.no_execute:
            from nbclient import NotebookClient

            start = time.perf_counter()
            os.environ.setdefault("OMP_NUM_THREADS", "2")
            NotebookClient(
                nb,
                timeout=300,
                kernel_name="python3",
                record_timing=args.timing,
                resources={"metadata": {"path": str(SOLUTIONS)}},
            ).execute()
            print(f"{path.name}: executed in {time.perf_counter() - start:.1f} s")
            if args.timing:
                _print_timing(nb)
                continue
        nb.metadata.pop("widgets", None)
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, path)


def _print_timing(nb) -> None:
    from datetime import datetime

    rows = []
    for index, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in stamps and "shell.execute_reply" in stamps:
            begin = datetime.fromisoformat(stamps["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(stamps["shell.execute_reply"].replace("Z", "+00:00"))
            rows.append(((end - begin).total_seconds(), index, cell.source.splitlines()[0][:60]))
    for seconds, index, first in sorted(rows, reverse=True)[:6]:
        print(f"  {seconds:6.2f} s  cell {index:3d}  {first}")
    print(f"  total in cells: {sum(r[0] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
