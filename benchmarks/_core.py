"""What every benchmark shares: options, the machine record, budgets and small statistics."""

from __future__ import annotations

import dataclasses
import datetime
import math
import numbers
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# A budget compares a measured figure with a limit: "<=" for times, ">=" for speed-ups.
COMPARISONS = ("<=", ">=")
PASS, MISS, NOT_MEASURED = "pass", "miss", "not measured"


class Missing(Exception):
    """The subject of a benchmark does not exist (yet): recorded as missing, never measured."""


@dataclasses.dataclass(frozen=True)
class Options:
    """How a run of ``python -m benchmarks`` was asked to measure.

    Attributes:
        repo: the repository root (the folder with ``Makefile`` and ``_config.yml``).
        quick: smaller workloads and fewer repetitions, for iterating on the harness; the figures
            are marked as quick and are not comparable with the budgets' conditions.
        runs: repetitions of each timed run (the figure is their median).
    """

    repo: Path = REPO
    quick: bool = False
    runs: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.repo, Path):
            raise TypeError(f"repo must be a pathlib.Path, got {type(self.repo).__name__}")
        if not isinstance(self.quick, bool):
            raise TypeError(f"quick must be a bool, got {type(self.quick).__name__}")
        if isinstance(self.runs, bool) or not isinstance(self.runs, int):
            raise TypeError(f"runs must be an int, got {type(self.runs).__name__}")
        if self.runs < 1:
            raise ValueError(f"runs must be at least 1, got {self.runs}")


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def median(values) -> float:
    """The median of a non-empty sequence of finite real numbers (bools refused)."""
    values = list(values)
    if not values:
        raise ValueError("values must be non-empty")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"values[{i}] must be a real number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"values[{i}] must be finite, got {value!r}")
    return float(statistics.median(values))


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes; 2 means both cores busy)."""
    return [round(value, 2) for value in os.getloadavg()]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine a figure was measured on: CPU, cores, memory, Python, torch and its threads.

    ``torch_threads`` is the intra-op thread count of this process, which the notebook kernels
    and subprocesses inherit through ``OMP_NUM_THREADS`` (recorded too).
    """
    import psutil
    import torch

    return {
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        # None: OpenMP's default (spin, then sleep); `make bench` leaves it unset.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def git_state(repo: Path) -> dict:
    """The commit measured and whether the working tree differed from it (``None`` if unknown)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def budget(
    key: str,
    description: str,
    measured: float | None,
    limit: float,
    comparison: str,
    unit: str,
    note: str | None = None,
) -> dict:
    """One budget check: ``measured comparison limit``, or not measured when ``measured`` is None.

    Args:
        key: a stable id, e.g. ``"notebook:chapters/01_motivation.ipynb"``.
        description: what is measured, for the table.
        measured: the figure, or ``None`` if it could not be measured.
        limit: the budget.
        comparison: ``"<="`` (at most ``limit``) or ``">="`` (at least ``limit``).
        unit: unit of ``measured`` and ``limit`` (``"s"``, ``"x"``...).
        note: why it was not measured, or anything else a reader of the figure must know.

    Returns:
        A dict with ``id`` (= ``key``), the other arguments and ``status``: ``"pass"``,
        ``"miss"`` or ``"not measured"``.
    """
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {COMPARISONS}, got {comparison!r}")
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not math.isfinite(limit):
        raise TypeError(f"limit must be a finite real number, got {limit!r}")
    if measured is not None and (
        isinstance(measured, bool) or not isinstance(measured, numbers.Real) or math.isnan(measured)
    ):
        raise TypeError(f"measured must be a real number or None, got {measured!r}")
    if measured is None:
        status = NOT_MEASURED
    elif comparison == "<=":
        status = PASS if measured <= limit else MISS
    else:
        status = PASS if measured >= limit else MISS
    return {
        "id": key,
        "description": description,
        "measured": measured,
        "limit": limit,
        "comparison": comparison,
        "unit": unit,
        "status": status,
        "note": note,
    }


def python() -> str:
    """The interpreter running the benchmarks (the repository's ``.venv`` under ``make bench``)."""
    return sys.executable


def venv_bin(name: str) -> str:
    """A console script installed next to this interpreter (e.g. ``grade-exercises``)."""
    return str(Path(sys.executable).parent / name)
