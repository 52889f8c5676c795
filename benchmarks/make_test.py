"""The whole ``make test``, from a warm ``.venv``, timed once (it takes minutes).

It runs in the repository itself, exactly as a developer or CI runs it, so it rebuilds the
book into ``_build/`` as ``make test`` always does. The time of each part (``unit``,
``notebooks``, ``book-strict``, ``browser``) is taken from when ``make`` echoes the part's
command. A failing ``make test`` is still timed; its exit status is recorded next to the time.
"""

from __future__ import annotations

import os
import re

from ._core import Missing, Options, budget, load_average
from ._measure import run_command

BUDGET_S = 360.0
TIMEOUT_S = 1800.0
# Lines that say what failed: pytest's short summary and totals, make's own errors.
FAILURE = re.compile(r"^(FAILED|ERROR) |\b\d+ (failed|errors?)\b|^make(\[\d+\])?: \*\*\*")
# (part, text of the command make echoes when the part starts), in the order make test runs them.
PHASES = [
    ("unit", '-m pytest tests -m "not browser"'),
    ("notebooks", "--nbval"),
    ("book-strict", " -W -n"),
    ("browser", "-m pytest tests -m browser"),
]


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
    print("  make test (minutes) ...", flush=True)
    outcome = run_command(
        ["make", "--no-print-directory", "test"],
        cwd=options.repo,
        timeout=TIMEOUT_S,
        env=dict(os.environ),
        markers=PHASES,
        tail_lines=100_000,
    )
    results = {
        "seconds": outcome["seconds"],
        "returncode": outcome["returncode"],
        "passed": outcome["returncode"] == 0,
        "timed_out": outcome["timed_out"],
        "phases_seconds": outcome["phases"],
        "peak_rss_mib": outcome["peak_rss_mib"],
        "load_average_before": load,
        "failures": failure_lines(outcome["tail"]),
        "tail": outcome["tail"][-15:],
    }
    measured = None if outcome["timed_out"] else outcome["seconds"]
    return results, [
        budget("make_test:seconds", "make test, warm .venv", measured, BUDGET_S, "<=", "s")
    ]
