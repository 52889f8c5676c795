"""The install phase of ``make book`` from a fresh clone: pip (before) against uv (after).

For each installer (``make INSTALLER=pip`` and the default ``INSTALLER=uv``), in a fresh clone
of the repository's committed state, ``make .venv/.installed`` is timed twice:

1. *cold*: with an empty download cache (``PIP_CACHE_DIR``/``UV_CACHE_DIR`` pointed at a new
   folder);
2. *warm*: in another fresh clone, with the cache the cold run filled.

Each figure is one run (an install takes minutes and fills gigabytes). The machine's own pip
configuration stays in effect for both installers (the Makefile passes pip's find-links on to
uv): where it names a local torch wheel, as on this project's CI machines, even a cold install
does not download torch. The installed torch is recorded: it must be the CPU build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ._core import Missing, Options, budget, load_average
from ._measure import run_command

INSTALLERS = ("pip", "uv")
#: uv's install of the lock; cold depends on the network, warm on the disk and the CPU.
UV_WARM_BUDGET_S = 60.0
UV_COLD_BUDGET_S = 180.0
TIMEOUT_S = 1800.0


def install(repo: Path, work: Path, installer: str, cache: Path) -> dict:
    """Clone ``repo`` into ``work`` and time ``make .venv/.installed`` with ``installer``."""
    subprocess.run(["git", "clone", "--quiet", str(repo), str(work)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MAKEFLAGS")}
    env.update(PIP_CACHE_DIR=str(cache / "pip"), UV_CACHE_DIR=str(cache / "uv"))
    load = load_average()
    run = run_command(
        ["make", "--no-print-directory", ".venv/.installed", f"INSTALLER={installer}"],
        cwd=work,
        timeout=TIMEOUT_S,
        env=env,
    )
    if run["returncode"] != 0:
        raise RuntimeError(f"make INSTALLER={installer} failed: {run['tail'][-5:]}")
    torch = subprocess.run(
        [str(work / ".venv" / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {
        "seconds": round(run["seconds"], 1),
        "load_average_before": load,
        "torch": torch.stdout.strip() or torch.stderr.strip()[-200:],
    }


def run(options: Options) -> tuple[dict, list[dict]]:
    """Measure; returns ``(results, budgets)`` as ``benchmarks/__main__.py`` expects."""
    if shutil.which("make") is None or shutil.which("git") is None:
        raise Missing("make and git are needed to set up a fresh clone")
    installers = ("uv",) if options.quick else INSTALLERS
    results: dict = {"installers": {}}
    with tempfile.TemporaryDirectory(prefix="bench-setup-") as folder:
        for installer in installers:
            cache = Path(folder) / f"cache-{installer}"
            figures = {}
            for state in ("cold", "warm"):
                work = Path(folder) / f"{installer}-{state}"
                figures[state] = install(options.repo, work, installer, cache)
                shutil.rmtree(work)  # gigabytes each; the cache is what the warm run reuses
            results["installers"][installer] = figures
    uv = results["installers"]["uv"]
    if "pip" in results["installers"]:
        pip = results["installers"]["pip"]
        results["speedup_warm"] = round(pip["warm"]["seconds"] / uv["warm"]["seconds"], 1)
        results["speedup_cold"] = round(pip["cold"]["seconds"] / uv["cold"]["seconds"], 1)
    cpu = all(
        f["torch"].endswith("+cpu") for i in results["installers"].values() for f in i.values()
    )
    note = None if cpu else "an install did not get the CPU build of torch"
    budgets = [
        budget(
            "setup:uv:warm",
            "set-up: `make .venv/.installed` from a fresh clone, warm cache (uv)",
            uv["warm"]["seconds"],
            UV_WARM_BUDGET_S,
            "<=",
            "s",
            note,
        ),
        budget(
            "setup:uv:cold",
            "set-up: `make .venv/.installed` from a fresh clone, empty cache (uv)",
            uv["cold"]["seconds"],
            UV_COLD_BUDGET_S,
            "<=",
            "s",
            note,
        ),
    ]
    return results, budgets


def render(results: dict) -> list[str]:
    """The Markdown block of ``bench.md``: both installers, both caches."""
    rows = [
        "| Installer | Empty cache (s) | Warm cache (s) | torch installed |",
        "|---|---|---|---|",
    ]
    labels = {"pip": "pip (before: `make INSTALLER=pip`)", "uv": "uv (after: the default)"}
    for installer, figures in results["installers"].items():
        rows.append(
            f"| {labels.get(installer, installer)} | {figures['cold']['seconds']} | "
            f"{figures['warm']['seconds']} | `{figures['warm']['torch']}` |"
        )
    lines = [
        "The install phase of `make book` (`make .venv/.installed`) in a fresh clone: the "
        "pinned lock, then the package in editable mode. One run per figure.",
        "",
        *rows,
    ]
    if "speedup_warm" in results:
        lines += [
            "",
            f"uv is **{results['speedup_cold']}x** faster than pip with an empty cache and "
            f"**{results['speedup_warm']}x** with a warm one.",
        ]
    return lines
