"""The whole ``make test``, from a warm ``.venv``, timed once (it takes minutes), part by part.

``make test`` runs its parts one after the other (``$(MAKE) unit``, ``$(MAKE) notebooks``, ...)
and fails if any failed. This benchmark reads that list from the ``test`` recipe of the
Makefile and runs the same parts the same way, each as ``make <part>`` in the repository
itself, so every part added to ``make test`` is timed on its own and none is missed; the total
is their sum. Like ``make test`` it rebuilds the book into ``_build/``. A failing part is still
timed and the next one still runs; the first non-zero exit status is recorded. A ``test``
recipe that calls no parts is timed as one part, ``test``.
"""

from __future__ import annotations

import os
import re

from ._core import Missing, Options, budget, load_average
from ._measure import run_command

BUDGET_S = 480.0  # issue 15: make test at most 8 minutes
TIMEOUT_S = 1800.0
# Lines that say what failed: pytest's short summary and totals, make's own errors.
FAILURE = re.compile(r"^(FAILED|ERROR) |\b\d+ (failed|errors?)\b|^make(\[\d+\])?: \*\*\*")
# The recipe of the test target, and the parts it runs as $(MAKE) [options] <target>.
RECIPE = re.compile(r"^test:[^\n]*\n((?:\t[^\n]*(?:\n|$))+)", re.MULTILINE)
PART = re.compile(r"\$\(MAKE\)(?:\s+-[-\w]+)*\s+([A-Za-z][-\w]*)")


def parts(makefile: str) -> list[str]:
    """The targets ``make test`` runs, in order, from its recipe (``["test"]`` if it runs none)."""
    recipe = RECIPE.search(makefile)
    if recipe is None:
        raise Missing("the Makefile has no test target")
    return PART.findall(recipe.group(1)) or ["test"]


def failure_lines(lines: list[str], limit: int = 20) -> list[str]:
    """The first ``limit`` output lines that name a failure (see ``FAILURE``)."""
    return [line for line in lines if FAILURE.search(line)][:limit]


def run(options: Options) -> tuple[dict, list[dict]]:
    """Run ``make test`` once in the repository; see the module docstring."""
    if not (options.repo / "Makefile").is_file():
        raise Missing("no Makefile in the repository")
    if not (options.repo / ".venv" / ".installed").is_file():
        raise Missing(
            ".venv is not set up (run make book or make test once first): the budget "
            "is for a warm .venv"
        )
    load = load_average()
    names = parts((options.repo / "Makefile").read_text(encoding="utf-8"))
    phases, tail, failures = {}, [], []
    returncode, timed_out, peak = 0, False, 0.0
    for name in names:
        print(f"  make test: {name} ...", flush=True)
        outcome = run_command(
            ["make", "--no-print-directory", name],
            cwd=options.repo,
            timeout=TIMEOUT_S,
            env=dict(os.environ),
            tail_lines=100_000,
        )
        phases[name] = outcome["seconds"]
        timed_out = timed_out or outcome["timed_out"]
        if returncode == 0 and outcome["returncode"] != 0:
            returncode = outcome["returncode"]
        peak = max(peak, outcome["peak_rss_mib"] or 0.0)
        failures += failure_lines(outcome["tail"])
        tail = outcome["tail"][-15:]
    seconds = round(sum(phases.values()), 1)
    results = {
        "seconds": seconds,
        "returncode": returncode,
        "passed": returncode == 0 and not timed_out,
        "timed_out": timed_out,
        "phases_seconds": phases,
        "peak_rss_mib": peak,
        "load_average_before": load,
        "load_average_after": load_average(),
        "failures": failures[:20],
        "tail": tail,
    }
    measured = None if timed_out else seconds
    return results, [
        budget("make_test:seconds", "make test, warm .venv", measured, BUDGET_S, "<=", "s")
    ]
