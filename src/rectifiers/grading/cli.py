"""``grade-exercises``: grade a class's notebooks into a grade book; build a Gradescope autograder.

Usage::

    grade-exercises SUBMISSIONS_DIR --out OUT_DIR [--students NAME,...] [--notebooks NAME,...]
                    [--resume] [--marks MARKS.csv] [--timeout SECONDS] [--jobs N]
                    [--memory-mb MB] [--seed N] [--include-examples]
    grade-exercises --out OUT_DIR --marks MARKS.csv      # merge hand marks, grade nothing
    grade-exercises gradescope --out autograder.zip [--notebooks NAME,...] [...]

The instructor's guide is the book's "Grading exercises" page (``chapters/grading.md``).
Exit status: 0 when every submission was graded (whatever the scores), 2 for a usage error
(including a rejected marks file), 1 if the grader itself failed.
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
            "can neither see nor change, into a grade book that re-grading only updates. "
            "SUBMISSIONS_DIR holds one folder per student with the completed notebooks named as "
            "in exercises/ (alice/01_motivation.ipynb). `grade-exercises gradescope --help` "
            "builds a Gradescope autograder instead."
        ),
    )
    parser.add_argument(
        "submissions",
        metavar="SUBMISSIONS_DIR",
        nargs="?",
        help="one folder per student (leave out to only merge --marks into OUT_DIR)",
    )
    parser.add_argument(
        "--out", required=True, metavar="OUT_DIR", help="the grade book: grades.csv and the rest"
    )
    _grading_options(parser)
    parser.add_argument(
        "--students",
        metavar="NAME,...",
        help="grade only these students (names as grades.csv shows them); the others' rows stay",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip submissions already in OUT_DIR with the same content (after a crash or a kill)",
    )
    parser.add_argument(
        "--marks",
        metavar="MARKS.csv",
        help="hand marks for written answers: student,notebook,exercise,points[,comment]",
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", help="reproduce the hidden inputs of an earlier run"
    )
    return parser


def _grading_options(parser: argparse.ArgumentParser) -> None:
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
        "--include-examples",
        action="store_true",
        help="also grade the example set 00_examples (a demo of the grader)",
    )
    parser.add_argument(
        "--weaker-isolation",
        action="store_true",
        help="grade even where no sandbox as strong as bubblewrap's is available "
        "(the grader says what that gives up)",
    )


def _check_limits(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.timeout > 0 or args.timeout > 3600:
        parser.error(f"--timeout must be between 0 and 3600 seconds, got {args.timeout:g}")
    if not 1 <= args.jobs <= 64:
        parser.error(f"--jobs must be between 1 and 64, got {args.jobs}")
    if not 512 <= args.memory_mb <= 4096:
        parser.error(f"--memory-mb must be between 512 and 4096, got {args.memory_mb}")


def _registry(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
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
    return registry


def _say(text: str) -> None:
    print(f"grade-exercises: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gradescope"]:
        from .autograder import main as gradescope_main

        return gradescope_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"OUT_DIR {args.out!r} exists and is not a folder")
    if args.submissions is None:
        if not args.marks:
            parser.error("give SUBMISSIONS_DIR to grade, or --marks to merge hand marks")
        return _merge_marks(parser, args, out)
    submissions = os.path.abspath(args.submissions)
    if not os.path.isdir(submissions):
        parser.error(f"SUBMISSIONS_DIR {args.submissions!r} is not an existing folder")
    if os.path.realpath(out) == os.path.realpath(submissions) or os.path.realpath(out).startswith(
        os.path.realpath(submissions) + os.sep
    ):
        parser.error("OUT_DIR must not be inside SUBMISSIONS_DIR (it would be graded as a student)")
    _check_limits(parser, args)
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    registry = _registry(parser, args)

    from .engine import discover_students
    from .gradebook import Gradebook
    from .marks import MarksError
    from .names import display_name, folder_name, is_exact, skipped_entries

    for name, reason in skipped_entries(submissions):
        _say(f"skipping {name} ({reason})")
    everyone = discover_students(submissions)
    for student in everyone:
        if not is_exact(student):
            _say(f"note: the folder {os.fsencode(student)!r} is shown as {display_name(student)}")
    students = everyone
    if args.students:
        wanted = [folder_name(n.strip()) for n in args.students.split(",") if n.strip()]
        unknown = [display_name(n) for n in wanted if n not in everyone]
        if unknown:
            parser.error(f"--students: no such student folder(s) {unknown}")
        students = [s for s in everyone if s in wanted]
    book = Gradebook(out)
    try:
        if args.marks:
            with open(args.marks, "rb") as handle:
                marks = handle.read()
            book.check_marks(marks, also=everyone)
        else:
            book.marks()  # the kept marks.csv must still fit the class
    except OSError as error:
        parser.error(f"--marks: cannot read {args.marks!r}: {error.strerror}")
    except MarksError as error:
        _say(f"error: {error}")
        return 2
    if args.marks:
        book.save_marks(marks)
    return _grade(args, registry, submissions, out, students, book)


def _merge_marks(parser: argparse.ArgumentParser, args: argparse.Namespace, out: str) -> int:
    from .gradebook import Gradebook
    from .marks import MarksError

    book = Gradebook(out)
    if not book.students():
        parser.error(f"OUT_DIR {args.out!r} holds no graded submissions to mark")
    try:
        with open(args.marks, "rb") as handle:
            marks = handle.read()
        book.check_marks(marks)
    except OSError as error:
        parser.error(f"--marks: cannot read {args.marks!r}: {error.strerror}")
    except MarksError as error:
        _say(f"error: {error}")
        return 2
    book.save_marks(marks)
    for warning in book.publish():
        _say(f"warning: {warning}")
    _say(f"hand marks merged; grades in {os.path.join(out, 'grades.csv')}")
    return 0


def _grade(args, registry, submissions, out, students, book) -> int:
    from .engine import Grader, IsolationError, _read_submission
    from .gradebook import digest

    contents: dict[tuple[str, str], str | None] = {}
    for student in students:
        for notebook in registry:
            try:
                data = _read_submission(submissions, student, f"{notebook}.ipynb")
            except FileNotFoundError:
                data = None
            except (OSError, ValueError):
                contents[(student, notebook)] = None  # unreadable: always graded (an error row)
                continue
            contents[(student, notebook)] = digest(data)
    recorded = book.digests() if args.resume else {}
    todo = {
        key for key, content in contents.items() if content is None or recorded.get(key) != content
    }
    if args.resume:
        _say(f"resuming: {len(contents) - len(todo)} submissions already graded, {len(todo)} to go")
    started = time.monotonic()
    run = {
        "version": __version__,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "state": "running",
        "submissions_dir": submissions,
        "students": len(students),
        "notebooks": list(registry),
        "timeout": args.timeout,
        "jobs": args.jobs,
        "memory_mb": args.memory_mb,
        "seed": args.seed,
        "resume": args.resume,
        "graded": len(todo),
    }
    try:
        import json

        from tqdm import tqdm

        from .report import write_atomic

        os.makedirs(out, exist_ok=True)
        write_atomic(os.path.join(out, "run.json"), json.dumps(run, indent=1).encode())
        bar = tqdm(
            total=len(todo),
            unit="notebook",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
            desc="grading",
        )

        def progress(result) -> None:
            book.record(result, contents.get((result.student, result.notebook)))
            book.publish_tables()
            bar.update(1)

        with (
            bar,
            Grader(
                registry,
                timeout=args.timeout,
                jobs=args.jobs,
                memory_mb=args.memory_mb,
                seed=args.seed,
                weaker_isolation=args.weaker_isolation,
            ) as grader,
        ):
            for warning in grader.sandbox["warnings"]:
                bar.write(f"grade-exercises: warning: {warning}", file=sys.stderr)
            results = grader.grade(
                submissions,
                hide=[out],
                progress=progress,
                only=lambda student, notebook: (student, notebook) in todo,
            )
            sandbox = dict(grader.sandbox)
        seconds = time.monotonic() - started
        graded = [r for r in results if r.runs]
        run.update(
            state="finished",
            finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            sandbox=sandbox,
            seconds=round(seconds, 2),
            seconds_per_notebook=round(sum(r.seconds for r in graded) / len(graded), 2)
            if graded
            else None,
        )
        warnings = book.publish(run=run)
    except IsolationError as error:
        _say(f"error: {error}")
        return 2
    except Exception as error:  # noqa: BLE001 - one clear line, not a traceback, for an internal failure
        _say(f"error: {type(error).__name__}: {error}")
        _say(f"what was graded before the failure is kept in {os.path.join(out, 'records')}")
        return 1
    for warning in warnings:
        _say(f"warning: {warning}")
    _say(
        f"graded {len(results)} notebooks of {len(students)} students in {seconds:.1f} s "
        f"({sandbox['mode']} sandbox); grades in {os.path.join(out, 'grades.csv')}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
