"""``grade-exercises``: grade a class's notebooks into a grade book.

Usage::

    grade-exercises SUBMISSIONS_DIR --out OUT_DIR [--timeout SECONDS] [--jobs N] [--memory-mb MB]
                    [--notebooks NAME,...] [--seed N] [--include-examples]

Exit status: 0 when every submission was graded (whatever the scores), 2 for a usage error, 1 if
the grader itself failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

from .. import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grade-exercises",
        description=(
            "Grade every student's exercise notebooks in a sandbox, against checks the students "
            "can neither see nor change. SUBMISSIONS_DIR holds one folder per student with the "
            "completed notebooks named as in exercises/ (alice/01_motivation.ipynb)."
        ),
    )
    parser.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="one folder per student")
    parser.add_argument(
        "--out", required=True, metavar="OUT_DIR", help="where grades.csv and the rest go"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="per notebook (default 60)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="notebooks graded in parallel (default 1)"
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=4096,
        metavar="MB",
        help="memory cap per notebook, 512-4096 (default 4096)",
    )
    parser.add_argument(
        "--notebooks",
        metavar="NAME,...",
        help="grade only these notebooks (e.g. 01_motivation,02_derivatives)",
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", help="reproduce the hidden inputs of an earlier run"
    )
    parser.add_argument(
        "--include-examples",
        action="store_true",
        help="also grade the example set 00_examples (a demo of the grader)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    submissions = os.path.abspath(args.submissions)
    out = os.path.abspath(args.out)
    if not os.path.isdir(submissions):
        parser.error(f"SUBMISSIONS_DIR {args.submissions!r} is not an existing folder")
    if os.path.realpath(out) == os.path.realpath(submissions) or os.path.realpath(out).startswith(
        os.path.realpath(submissions) + os.sep
    ):
        parser.error("OUT_DIR must not be inside SUBMISSIONS_DIR (it would be graded as a student)")
    if os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"OUT_DIR {args.out!r} exists and is not a folder")
    if not args.timeout > 0 or args.timeout > 3600:
        parser.error(f"--timeout must be between 0 and 3600 seconds, got {args.timeout:g}")
    if not 1 <= args.jobs <= 64:
        parser.error(f"--jobs must be between 1 and 64, got {args.jobs}")
    if not 512 <= args.memory_mb <= 4096:
        parser.error(f"--memory-mb must be between 512 and 4096, got {args.memory_mb}")
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")

    from . import report
    from .engine import Grader, discover_students, skipped_entries
    from .items import EXAMPLES, REGISTRY, combined

    registry = combined(REGISTRY, EXAMPLES) if args.include_examples else dict(REGISTRY)
    if args.notebooks:
        wanted = [name.strip() for name in args.notebooks.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in registry]
        if unknown:
            parser.error(
                f"--notebooks: unknown notebook(s) {unknown}; registered: {sorted(registry)}"
            )
        registry = {name: registry[name] for name in registry if name in wanted}
    if not registry:
        parser.error(
            "no exercise notebooks are registered in rectifiers.grading.items "
            "(use --include-examples to try the grader)"
        )

    for entry in skipped_entries(submissions):
        print(f"grade-exercises: skipping {entry}", file=sys.stderr)
    students = discover_students(submissions)
    started = time.monotonic()
    try:
        from tqdm import tqdm

        bar = tqdm(
            total=len(students) * len(registry),
            unit="notebook",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            desc="grading",
        )
        with (
            bar,
            Grader(
                registry,
                timeout=args.timeout,
                jobs=args.jobs,
                memory_mb=args.memory_mb,
                seed=args.seed,
            ) as grader,
        ):
            for warning in grader.sandbox["warnings"]:
                bar.write(f"grade-exercises: warning: {warning}", file=sys.stderr)
            results = grader.grade(submissions, hide=[out], progress=lambda _result: bar.update(1))
            sandbox = dict(grader.sandbox)
        seconds = time.monotonic() - started
        graded = [r for r in results if r.runs]
        run = {
            "version": __version__,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "submissions_dir": submissions,
            "students": len(students),
            "notebooks": list(registry),
            "timeout": args.timeout,
            "jobs": args.jobs,
            "memory_mb": args.memory_mb,
            "seed": args.seed,
            "sandbox": sandbox,
            "seconds": round(seconds, 2),
            "seconds_per_notebook": round(sum(r.seconds for r in graded) / len(graded), 2)
            if graded
            else None,
        }
        report.write(out, results, run)
    except Exception as error:  # noqa: BLE001 - one clear line, not a traceback, for an internal failure
        print(f"grade-exercises: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(
        f"grade-exercises: graded {len(results)} notebooks of {len(students)} students in {seconds:.1f} s "
        f"({sandbox['mode']} sandbox); grades in {os.path.join(out, 'grades.csv')}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
