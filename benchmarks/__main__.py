"""``python -m benchmarks``: run the benchmarks, write ``_build/bench.json`` and the tables.

See ``benchmarks/README.md``. The exit status is 0 once the results are written, whatever they
are (this is a measurement, not a test); missed budgets and failed benchmarks are printed loudly
at the end. ``--strict`` makes them exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import _report
from ._core import REPO, Missing, Options, git_state, load_average, machine, now

# Slowest last: make test takes minutes and rebuilds _build/ in the repository.
RUN_ORDER = [
    "notebooks",
    "training",
    "layers",
    "kernels",
    "microtimings",
    "book",
    "grading",
    "setup",
    "make_test",
]
# Skipped by --quick unless named in --only: they cannot be made quick.
SLOW = {"make_test", "setup"}


def names(text: str) -> list[str]:
    """Parse ``--only``/``--skip``: comma-separated benchmark names (``argparse`` type)."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in RUN_ORDER]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {unknown or [text]}; choose from {', '.join(RUN_ORDER)}"
        )
    return chosen


def parser() -> argparse.ArgumentParser:
    """The command line (see ``benchmarks/README.md``)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        type=names,
        metavar="NAME,...",
        help=f"run only these ({', '.join(RUN_ORDER)}); other results in bench.json are kept",
    )
    p.add_argument("--skip", type=names, default=[], metavar="NAME,...", help="do not run these")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small workloads, 1 run each, no make test unless named in --only "
        "(for working on the harness; marked as quick everywhere)",
    )
    p.add_argument(
        "--runs",
        type=int,
        metavar="N",
        help="repetitions per timed figure, median reported (default 3, quick 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="intra-op threads for this process and its children (sets "
        "OMP_NUM_THREADS; default: OMP_NUM_THREADS, else 2 as in the Makefile)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "_build" / "bench.json",
        metavar="PATH",
        help="where bench.json goes (bench.md is written next to it)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard earlier results in --out instead of merging into them",
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="also write the tables to benchmarks/results.md (the book's Performance "
        "page includes that file)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if a budget is missed or a benchmark fails or is missing",
    )
    return p


def selected(args: argparse.Namespace) -> list[str]:
    """The benchmarks to run, in run order."""
    chosen = args.only or [n for n in RUN_ORDER if not (args.quick and n in SLOW)]
    return [n for n in RUN_ORDER if n in chosen and n not in args.skip]


def measure(name: str, options: Options, git: dict) -> dict:
    """Run one benchmark module; its ``bench.json`` section, whatever happened."""
    module = importlib.import_module(f"benchmarks.{name}")
    section = {
        "status": "ok",
        "measured_at": now(),
        "quick": options.quick,
        "runs": options.runs,
        "machine": machine(),
        "git": git,
        "load_average_before": load_average(),
    }
    start = time.perf_counter()
    try:
        results, budgets = module.run(options)
        section.update(results=results, budgets=budgets)
    except Missing as missing:
        section.update(status="missing", reason=str(missing), budgets=[])
    except Exception as error:  # noqa: BLE001 - recorded, and the other benchmarks still run
        traceback.print_exc()
        section.update(status="error", reason=f"{type(error).__name__}: {error}", budgets=[])
    section["load_average_after"] = load_average()
    section["harness_seconds"] = round(time.perf_counter() - start, 1)
    return section


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = parser()
    args = p.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        p.error(f"--runs must be at least 1, got {args.runs}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    # Before torch is imported anywhere: the same environment as `make` gives the notebooks.
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    options = Options(quick=args.quick, runs=args.runs or (1 if args.quick else 3))
    todo = selected(args)
    if not todo:
        p.error("nothing to run: --skip removed every selected benchmark")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = None if args.fresh else _report.load(args.out)
    git = git_state(options.repo)
    sections: dict = {}
    bench = None
    for name in todo:
        print(f"[bench] {name} (load average {load_average()})", flush=True)
        sections[name] = measure(name, options, git)
        print(
            f"[bench] {name}: {sections[name]['status']} in {sections[name]['harness_seconds']} s",
            flush=True,
        )
        # Written after every benchmark, so an interrupted run keeps what it measured.
        bench = _report.merge(previous, sections, machine(), git)
        args.out.write_text(json.dumps(bench, indent=1) + "\n", encoding="utf-8")

    markdown = _report.render(bench)
    args.out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    if args.publish:
        (options.repo / "benchmarks" / "results.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(
        f"[bench] wrote {args.out} and {args.out.with_suffix('.md')}"
        + (" and benchmarks/results.md" if args.publish else "")
    )
    problems = _report.misses(bench)
    if problems:
        banner = "!" * 78
        print(
            f"\n{banner}\n{len(problems)} BUDGET(S) MISSED OR BENCHMARK(S) NOT MEASURED:",
            file=sys.stderr,
        )
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        print(banner, file=sys.stderr)
    counts = bench["budget_counts"]
    print(
        f"[bench] budgets: {counts['pass']} pass, {counts['miss']} missed, "
        f"{counts['not measured']} not measured"
    )
    return 1 if args.strict and problems else 0


if __name__ == "__main__":
    sys.exit(main())
