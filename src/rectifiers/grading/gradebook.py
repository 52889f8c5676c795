"""The output folder as a grade book that grows: checkpointed, merged, never wiped.

``OUT_DIR/``

- ``records/<student>/<notebook>.json``: the checkpoint, one file per graded submission,
  written (atomically) the moment it is graded. Everything else is derived from the records
  and the hand marks, so a crash or a kill keeps every submission graded so far, and
  re-grading some students or notebooks replaces their records only.
- ``grades.csv``, ``summary.csv`` (``rectifiers.grading.report``), rewritten after every graded
  submission and at the end of the run;
- ``results/<student>/<notebook>.json``: Gradescope's format, what the student may see
  (``rectifiers.grading.gradescope``);
- ``feedback/<student>.md``: one file per student (``rectifiers.grading.feedback``);
- ``canvas.csv``: the Canvas import file (``rectifiers.grading.canvas``);
- ``marks.csv``: the hand marks in use, a checked copy of ``--marks``
  (``rectifiers.grading.marks``);
- ``logs/<student>/<notebook>.log``: what the submission printed (first and last 32 KiB);
- ``run.json``: the last run's settings, sandbox mode, timings and state.

``<student>`` is ``report.safe_name`` of the folder name. Every file is replaced atomically
(``report.write_atomic``): at any moment each is either its old or its new version.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict

from .canvas import canvas_csv
from .engine import Row, SubmissionResult
from .feedback import feedback_markdown
from .gradescope import results_json
from .item import Item
from .marks import Key, Mark, apply_marks, read_marks
from .names import display_name
from .report import grades_csv, safe_name, summary_csv, write_atomic

FORMAT = 1
MISSING = "missing"


class GradebookError(RuntimeError):
    """The grade book folder cannot be used; the message says why."""


def digest(data: bytes | None) -> str:
    """What identifies a handed-in notebook's content (``"missing"`` when not handed in)."""
    return MISSING if data is None else hashlib.sha256(data).hexdigest()


class Gradebook:
    """The grade book in ``out_dir`` (created when needed).

    Args:
        out_dir: the output folder.
        registry: ``notebook -> items``, for the notebook order and the written answers (default:
            the course registry and the examples).

    Example:
        >>> book = Gradebook("grades")                      # doctest: +SKIP
        >>> book.record(result, digest(data))               # doctest: +SKIP
        >>> book.publish(run={"seconds": 52.0})             # doctest: +SKIP
    """

    def __init__(
        self, out_dir: str | os.PathLike, registry: Mapping[str, Sequence[Item]] | None = None
    ):
        if registry is None:
            from .items import EXAMPLES, REGISTRY, combined

            registry = combined(REGISTRY, EXAMPLES)
        self.out = os.path.abspath(out_dir)
        self.registry = dict(registry)
        self._lock = threading.Lock()
        self.warnings: list[str] = []
        self._digests: dict[tuple[str, str], str | None] = {}
        # The records, read from disk once and then kept up to date by ``record``, so that a
        # checkpoint after every graded submission does not read the whole folder again.
        self._cache: dict[tuple[str, str], SubmissionResult] | None = None

    # -- records -------------------------------------------------------------------------------

    def _folder(self, *parts: str) -> str:
        path = os.path.join(self.out, *parts)
        os.makedirs(path, mode=0o755, exist_ok=True)
        return path

    def record(self, result: SubmissionResult, content: str | None = None) -> None:
        """Checkpoint one graded submission (thread-safe); ``content`` is its ``digest``."""
        folder = safe_name(result.student)
        payload = {
            "format": FORMAT,
            "student": display_name(result.student),
            "student_bytes": os.fsencode(result.student).hex(),
            "notebook": result.notebook,
            "digest": content,
            "graded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(result.seconds, 3),
            "seed": result.seed,
            "runs": result.runs,
            "rows": [
                {k: v for k, v in asdict(row).items() if k not in ("student", "notebook")}
                for row in result.rows
            ],
        }
        data = json.dumps(payload, indent=1, ensure_ascii=True).encode()
        with self._lock:
            self._load_all()
            target = self._folder("records", folder)
            # No fsync: the rename alone survives a crash or a kill of the grader, which is
            # what a checkpoint is for; publish() syncs the files a reader relies on.
            write_atomic(os.path.join(target, f"{result.notebook}.json"), data, sync=False)
            if result.output:
                logs = self._folder("logs", folder)
                write_atomic(
                    os.path.join(logs, f"{result.notebook}.log"), result.output, sync=False
                )
            key = (result.student, result.notebook)
            self._cache[key] = SubmissionResult(
                result.student,
                result.notebook,
                list(result.rows),
                result.seconds,
                result.seed,
                b"",
                result.runs,
            )
            self._digests[key] = content

    def _load_all(self) -> None:
        if self._cache is not None:
            return
        self._cache, self.warnings, self._digests = {}, [], {}
        records = os.path.join(self.out, "records")
        if not os.path.isdir(records):
            return
        for folder in sorted(os.listdir(records)):
            path = os.path.join(records, folder)
            if folder.startswith(".") or not os.path.isdir(path):
                continue
            for name in sorted(os.listdir(path)):
                if name.endswith(".json") and not name.startswith("."):
                    loaded = self._load(os.path.join(path, name))
                    if loaded is not None:
                        self._cache[(loaded.student, loaded.notebook)] = loaded

    def results(self) -> list[SubmissionResult]:
        """Every recorded submission, sorted by student (as shown) and notebook order."""
        self._load_all()
        results = list(self._cache.values())
        order = {name: index for index, name in enumerate(self.registry)}
        results.sort(
            key=lambda r: (display_name(r.student), order.get(r.notebook, len(order)), r.notebook)
        )
        return results

    def _load(self, path: str) -> SubmissionResult | None:
        try:
            with open(path, encoding="utf-8") as handle:
                payload = json.load(handle)
            student = os.fsdecode(bytes.fromhex(payload["student_bytes"]))
            notebook = payload["notebook"]
            rows = [Row(student, notebook, **row) for row in payload["rows"]]
            result = SubmissionResult(
                student, notebook, rows, payload["seconds"], payload["seed"], b"", payload["runs"]
            )
            self._digests[(student, notebook)] = payload.get("digest")
            return result
        except (OSError, ValueError, KeyError, TypeError) as error:
            self.warnings.append(
                f"{os.path.relpath(path, self.out)} is unreadable and was left out ({error}); "
                "re-grade that submission"
            )
            return None

    def digests(self) -> dict[tuple[str, str], str | None]:
        """``(student, notebook) -> digest`` of every recorded submission."""
        self.results()
        return dict(self._digests)

    # -- hand marks ----------------------------------------------------------------------------

    def students(self) -> set[str]:
        """The folder names of every recorded student."""
        return {r.student for r in self.results()}

    def check_marks(self, data: bytes, also: Sequence[str] = ()) -> dict[Key, Mark]:
        """Parse and check a marks file against this grade book (and the students in ``also``)."""
        return read_marks(data, self.registry, self.students() | set(also))

    def save_marks(self, data: bytes) -> None:
        """Keep a checked marks file as ``marks.csv``, used by every later ``publish``."""
        os.makedirs(self.out, exist_ok=True)
        write_atomic(os.path.join(self.out, "marks.csv"), data)

    def marks(self) -> dict[Key, Mark]:
        """The hand marks in ``marks.csv`` (none if there is no such file)."""
        path = os.path.join(self.out, "marks.csv")
        if not os.path.exists(path):
            return {}
        with open(path, "rb") as handle:
            return self.check_marks(handle.read())

    # -- derived files -------------------------------------------------------------------------

    def publish_tables(self) -> None:
        """Rewrite ``grades.csv`` and ``summary.csv``: the checkpoint a reader sees mid-run."""
        with self._lock:
            results, _ = apply_marks(self.results(), self.marks())
            os.makedirs(self.out, exist_ok=True)
            for name, data in (
                ("grades.csv", grades_csv(results)),
                ("summary.csv", summary_csv(results)),
            ):
                write_atomic(os.path.join(self.out, name), data, sync=False)

    def publish(self, run: dict | None = None) -> list[str]:
        """Write every derived file from the records and the hand marks; returns warnings."""
        with self._lock:
            results, warnings = apply_marks(self.results(), self.marks())
            warnings = self.warnings + warnings
            os.makedirs(self.out, exist_ok=True)
            write_atomic(os.path.join(self.out, "grades.csv"), grades_csv(results))
            write_atomic(os.path.join(self.out, "summary.csv"), summary_csv(results))
            notebooks = [n for n in self.registry if any(r.notebook == n for r in results)]
            notebooks += sorted({r.notebook for r in results} - set(notebooks))
            write_atomic(os.path.join(self.out, "canvas.csv"), canvas_csv(results, notebooks))
            by_student: dict[str, list[SubmissionResult]] = {}
            for result in results:
                by_student.setdefault(result.student, []).append(result)
                folder = self._folder("results", safe_name(result.student))
                document = results_json(result, self.registry.get(result.notebook))
                write_atomic(
                    os.path.join(folder, f"{result.notebook}.json"),
                    json.dumps(document, indent=1).encode(),
                )
            feedback = self._folder("feedback")
            hints = {item.id: item.hint for items in self.registry.values() for item in items}
            for student, mine in by_student.items():
                write_atomic(
                    os.path.join(feedback, f"{safe_name(student)}.md"),
                    feedback_markdown(student, mine, hints).encode(),
                )
            if run is not None:
                run = {**run, "warnings": warnings}
                write_atomic(
                    os.path.join(self.out, "run.json"),
                    json.dumps(run, indent=1, sort_keys=True, default=str).encode(),
                )
        return warnings

    def checkpoint(self) -> Callable[[SubmissionResult, str | None], None]:
        """A callback that records a result and refreshes the tables."""

        def save(result: SubmissionResult, content: str | None = None) -> None:
            self.record(result, content)
            self.publish_tables()

        return save
