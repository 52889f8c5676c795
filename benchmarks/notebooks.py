"""Every notebook in ``chapters/`` and ``solutions/``: wall time and peak memory, fresh kernels.

Each run starts a new kernel (``nbclient``, the working folder is the notebook's own, as in
Jupyter and in the book build), executes every cell and shuts the kernel down. The notebooks are
run in rounds (all of them once, then again), so a burst of load from elsewhere on the machine
hits one run of several notebooks rather than every run of one. Nothing is written back.

Figures per notebook (medians over the runs): ``seconds``, the wall time from asking for a
kernel to the last cell's reply (what a learner waits for after "Restart and run all"), split
into ``startup_seconds`` and ``cells_seconds``; ``shutdown_seconds``, the kernel's shutdown
afterwards (not in ``seconds``); the peak resident memory of the kernel's process tree; and the
slowest cells of the median run.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time
from pathlib import Path

from ._core import Missing, Options, budget, load_average, median
from ._measure import TreeMemory, high_water_mark

FOLDERS = ("chapters", "solutions")
NOTEBOOK_BUDGET_S = 30.0
CHAPTERS_TOTAL_BUDGET_S = 150.0
CELL_TIMEOUT_S = 180  # as the book build's execute.timeout
SLOWEST_CELLS = 3
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def discover(repo: Path) -> list[Path]:
    """The notebooks measured: ``chapters/*.ipynb`` then ``solutions/*.ipynb``, sorted by name.

    Only the top level of each folder counts (``solutions/_src`` holds their generators).
    """
    found = []
    for folder in FOLDERS:
        found.extend(sorted((repo / folder).glob("*.ipynb")))
    return found


def _parse_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def cell_seconds(cell) -> float | None:
    """A code cell's run time from the timing ``nbclient`` records in its metadata, or ``None``.

    The interval is from the kernel starting to run the cell (``iopub.execute_input``) to its
    reply (``shell.execute_reply``).
    """
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        begin, end = timing["iopub.execute_input"], timing["shell.execute_reply"]
    except KeyError:
        return None
    return (_parse_time(end) - _parse_time(begin)).total_seconds()


def slowest_cells(nb, count: int = SLOWEST_CELLS) -> list[dict]:
    """The ``count`` slowest code cells of an executed notebook, slowest first.

    Each is ``{"index", "seconds", "source"}`` with the cell's index among all cells and the
    first line of its source (to find it again).
    """
    timed = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        seconds = cell_seconds(cell)
        if seconds is not None:
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            timed.append({"index": index, "seconds": round(seconds, 2), "source": first[:80]})
    timed.sort(key=lambda entry: -entry["seconds"])
    return timed[:count]


def run_once(path: Path, timeout: int = CELL_TIMEOUT_S) -> dict:
    """Execute the notebook at ``path`` once in a fresh kernel; the file is left untouched.

    Returns:
        ``{"seconds", "startup_seconds", "cells_seconds", "shutdown_seconds", "peak_rss_mib",
        "load_1min", "slowest_cells"}``: ``seconds`` runs from asking for a kernel to the last
        cell's reply (start-up plus cells, what a learner waits for after "Restart and run
        all"); the kernel's shutdown afterwards is timed apart.

    Raises:
        nbclient.exceptions.CellExecutionError: if a cell raises.
        nbclient.exceptions.CellTimeoutError: if a cell runs longer than ``timeout`` seconds.
        nbclient.exceptions.DeadKernelError: if the kernel dies.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}}
    )
    state: dict = {}

    def on_start(**_) -> None:
        # The kernel is up and its client connected: start the clock for the cells only.
        state["pid"] = client.km.provisioner.pid
        state["memory"] = TreeMemory(state["pid"]).__enter__()
        state["cells_start"] = time.perf_counter()

    def on_cell(**_) -> None:
        state["cells_end"] = time.perf_counter()
        # The kernel's own peak so far, read while it still exists (shutdown comes next).
        state["hwm"] = max(state.get("hwm", 0), high_water_mark(state["pid"]))

    client.on_notebook_start = on_start
    client.on_cell_executed = on_cell
    load = load_average()[0]
    start = time.perf_counter()
    try:
        # The kernel's own stderr (transport warnings, tracebacks of its shutdown after a failed
        # cell) would bury the benchmark's output; a cell's error is reported from its reply.
        client.execute(stderr=subprocess.DEVNULL)
    finally:
        if "memory" in state:
            state["memory"].__exit__(None, None, None)
    end = time.perf_counter()
    cells_end = state.get("cells_end", state["cells_start"])  # a notebook may have no code
    peak = max(state["memory"].peak_bytes, state.get("hwm", 0))
    return {
        "seconds": round(cells_end - start, 2),
        "startup_seconds": round(state["cells_start"] - start, 2),
        "cells_seconds": round(cells_end - state["cells_start"], 2),
        "shutdown_seconds": round(end - cells_end, 2),
        "peak_rss_mib": round(peak / 2**20, 1),
        "load_1min": load,
        "slowest_cells": slowest_cells(nb),
    }


def describe_error(error: Exception) -> str:
    """One line for a failed run: the cell's exception (``ename: evalue``) or the failure kind."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        text = f"{ename}: {evalue}"
    else:
        lines = [line for line in str(error).splitlines() if line.strip()]
        text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return _ANSI.sub("", text).strip()[:300]


def summarise(runs: list[dict]) -> dict:
    """One notebook's figures from its runs: medians, the largest peak, the median run's cells."""
    seconds = [run["seconds"] for run in runs]
    middle = sorted(runs, key=lambda run: run["seconds"])[(len(runs) - 1) // 2]
    return {
        "seconds": round(median(seconds), 2),
        "startup_seconds": round(median([run["startup_seconds"] for run in runs]), 2),
        "cells_seconds": round(median([run["cells_seconds"] for run in runs]), 2),
        "shutdown_seconds": round(median([run["shutdown_seconds"] for run in runs]), 2),
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
        "runs_seconds": seconds,
        "load_1min": [run["load_1min"] for run in runs],
        "slowest_cells": middle["slowest_cells"],
    }


def run(options: Options) -> tuple[dict, list[dict]]:
    """Measure every notebook ``options.runs`` times; see the module docstring."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    paths = discover(options.repo)
    if not paths:
        raise Missing("no notebooks in chapters/ or solutions/")
    names = [str(path.relative_to(options.repo)) for path in paths]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for _ in range(options.runs):
        for name, path in zip(names, paths, strict=True):
            if name in errors:
                continue  # a notebook that fails once is not timed again
            print(f"  notebook {name} ...", flush=True)
            try:
                runs[name].append(run_once(path))
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
                errors[name] = describe_error(error)
    results: dict = {"notebooks": {}, "totals": {}}
    for name in names:
        if name in errors:
            results["notebooks"][name] = {"error": errors[name]}
        else:
            results["notebooks"][name] = summarise(runs[name])

    budgets = []
    for name in names:
        figure = results["notebooks"][name].get("seconds")
        budgets.append(
            budget(
                f"notebook:{name}",
                f"{name}: wall time",
                figure,
                NOTEBOOK_BUDGET_S,
                "<=",
                "s",
                note=errors.get(name),
            )
        )
    for folder in FOLDERS:
        mine = [name for name in names if name.startswith(folder + "/")]
        timed = [results["notebooks"][name]["seconds"] for name in mine if name not in errors]
        total = round(sum(timed), 2) if mine and len(timed) == len(mine) else None
        results["totals"][folder] = {
            "notebooks": len(mine),
            "seconds": total,
            "failed": [name for name in mine if name in errors],
        }
    all_timed = [entry["seconds"] for entry in results["notebooks"].values() if "seconds" in entry]
    results["totals"]["all"] = {
        "notebooks": len(names),
        "seconds": round(sum(all_timed), 2) if len(all_timed) == len(names) else None,
        "failed": sorted(errors),
    }
    if results["totals"]["chapters"]["notebooks"]:
        failed = results["totals"]["chapters"]["failed"]
        budgets.append(
            budget(
                "notebooks:chapters_total",
                "all chapter notebooks together",
                results["totals"]["chapters"]["seconds"],
                CHAPTERS_TOTAL_BUDGET_S,
                "<=",
                "s",
                note=f"{len(failed)} failed" if failed else None,
            )
        )
    return results, budgets
