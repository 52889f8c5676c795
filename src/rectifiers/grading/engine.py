"""The trusted side of grading: run each submission in a sandboxed child, check its answers here.

``Grader`` grades a folder of submissions (one folder per student, one ``.ipynb`` per
registered notebook) and returns one ``SubmissionResult`` per student and notebook. For
each submission it forks a confined child from the zygote (``rectifiers.grading._zygote``),
sends it the code cells, waits until they ran, then checks every auto-graded item on its public
and freshly drawn hidden inputs, one call at a time (``rectifiers.grading.checking``): the
expected outputs are computed here, from answers parsed strictly as plain data.
Nothing the child prints, writes or sends can award points: only correct outputs on inputs it
had never seen.

A child that runs past the notebook's deadline is killed with its whole process group (and,
as root, every process of its dedicated uid); a call that hangs or a child that dies while an
item is checked costs that item only: a fresh child re-runs the notebook for the remaining items
while time is left.
"""

from __future__ import annotations

import hashlib
import os
import queue
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from . import notebook as nbread
from ._child import Child, _Lost, _Protocol, _Timeout

# Re-exported: the tests drive the policy with stand-ins for these.
from ._child import _CappedOutput as _CappedOutput
from ._child import _describe_exit as _describe_exit
from ._jobs import IsolationError as IsolationError
from ._jobs import JobPool
from ._runner import RUNNER_FAILED as RUNNER_FAILED
from ._text import clean_line as _clean
from ._text import neutralise
from .checking import Outcome, _cell_error, _error_text, _memory_note, check_item
from .item import AutoItem, Item

MAX_RESTARTS = 3


@dataclass
class Row:
    """One line of ``grades.csv``."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str
    detail: str
    #: What the student may see: ``detail`` without hidden inputs, expected values or text the
    #: submission produced after it saw them (feedback files, Gradescope results).
    feedback: str = ""


@dataclass
class SubmissionResult:
    """Everything graded for one student and one notebook."""

    student: str
    notebook: str
    rows: list[Row]
    seconds: float = 0.0
    seed: int | None = None
    output: bytes = b""
    runs: int = 0


def _derive_seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class Grader:
    """Grades submissions against a registry of items, each notebook in its own sandboxed process.

    Use it as a context manager (the zygote starts on entry and stops on exit), or call
    ``start`` and ``close``.

    Args:
        registry: ``notebook name -> items`` (default: the course registry).
        timeout: wall-clock seconds per notebook, everything included.
        jobs: notebooks graded at the same time.
        memory_mb: memory cap of each notebook, in MiB (512 to 4096): all its processes
            together in a memory cgroup where the grader can create one, else a process-count
            limit that shares the cap out (``sandbox["memory"]`` says which).
        call_timeout: seconds one call of the learner's code may take while checking.
        seed: derive every hidden case from this seed (to reproduce a grading run) instead of a
            fresh secret seed per submission.
        namespaces: use Linux namespaces when available (``False``: uid drop and limits only).
        disk_mb: what one notebook may write in total, in MiB (16 to 4096).
        weaker_isolation: grade even where no sandbox as strong as bubblewrap's is available
            (``start`` raises ``IsolationError`` otherwise, naming what would be given up).

    Example:
        >>> with Grader(EXAMPLES, timeout=30) as grader:            # doctest: +SKIP
        ...     results = grader.grade("submissions")
    """

    def __init__(
        self,
        registry: Mapping[str, Sequence[Item]] | None = None,
        *,
        timeout: float = 60.0,
        jobs: int = 1,
        memory_mb: int = 4096,
        call_timeout: float = 10.0,
        seed: int | None = None,
        namespaces: bool = True,
        disk_mb: int = 256,
        weaker_isolation: bool = False,
    ):
        from .. import _validation as v

        if registry is None:
            from .items import REGISTRY as registry
        if not isinstance(registry, Mapping):
            raise TypeError(
                f"registry must map notebook names to lists of items, got {type(registry).__name__}"
            )
        self.registry = {name: list(items) for name, items in registry.items()}
        self.timeout = v.check_real("timeout", timeout)
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.jobs = v.check_positive_int("jobs", jobs)
        if self.jobs > 64:
            raise ValueError(f"jobs must be at most 64, got {jobs!r}")
        self.memory_mb = v.check_positive_int("memory_mb", memory_mb)
        if not 512 <= self.memory_mb <= 4096:
            raise ValueError(f"memory_mb must be between 512 and 4096, got {memory_mb!r}")
        self.call_timeout = v.check_real("call_timeout", call_timeout)
        if self.call_timeout <= 0:
            raise ValueError(f"call_timeout must be positive, got {call_timeout!r}")
        self.seed = None if seed is None else v.check_non_negative_int("seed", seed)
        #: What the clean-up of job folders could not remove (it never stops the batch).
        self.cleanup_problems: list[str] = []
        self.want_namespaces = bool(namespaces)
        self.disk_mb = v.check_positive_int("disk_mb", disk_mb)
        if not 16 <= self.disk_mb <= 4096:
            raise ValueError(f"disk_mb must be between 16 and 4096, got {disk_mb!r}")
        self._pool = JobPool(
            jobs=self.jobs,
            memory_mb=self.memory_mb,
            timeout=self.timeout,
            namespaces=self.want_namespaces,
            disk_mb=self.disk_mb,
            weaker_isolation=bool(weaker_isolation),
        )

    # -- set-up ------------------------------------------------------------------------------

    def __enter__(self) -> Grader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the scratch folder and start the zygote (imports torch once)."""
        self._pool.start()
        self.is_root = self._pool.is_root
        self.namespaces = self._pool.namespaces

    def close(self) -> None:
        """Stop the zygote and remove the scratch folder."""
        self._pool.close()

    @property
    def sandbox(self) -> dict:
        """How submissions are confined (``mode``, ``namespaces``, ``warnings``...) once started."""
        return self._pool.sandbox

    @property
    def _zygote(self):
        return self._pool.zygote

    def grade(
        self,
        submissions_dir: str | os.PathLike,
        *,
        hide: Sequence[str | os.PathLike] = (),
        progress: Callable[[SubmissionResult], None] | None = None,
        only: Callable[[str, str], bool] | None = None,
    ) -> list[SubmissionResult]:
        """Grade every student folder in ``submissions_dir`` against every registered notebook.

        Args:
            submissions_dir: one folder per student holding ``<notebook>.ipynb`` files.
            hide: further folders the submissions must not see (the output folder).
            progress: called with each result as it completes (from a worker thread).
            only: ``only(student, notebook)`` says which submissions to grade (default: all);
                re-grading a subset and resuming an interrupted run use it.

        Returns:
            One result per student and notebook, sorted by student then notebook order.
        """
        self.start()
        root = os.path.realpath(submissions_dir)
        self._pool.hidden = [root] + [os.path.realpath(p) for p in hide if os.path.isdir(p)]
        students = discover_students(root)
        tasks = [
            (student, notebook)
            for student in students
            for notebook in self.registry
            if only is None or only(student, notebook)
        ]
        slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.jobs):
            slots.put(slot)

        def run(task: tuple[str, str]) -> SubmissionResult:
            slot = slots.get()
            try:
                result = self._grade_one(root, task[0], task[1], slot)
            except Exception as error:  # noqa: BLE001 - one submission must never stop the batch
                result = self._failed(task[0], task[1], error)
            finally:
                slots.put(slot)
            if progress is not None:
                progress(result)
            return result

        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="grade") as pool:
            return list(pool.map(run, tasks))

    def _failed(self, student: str, notebook: str, error: Exception) -> SubmissionResult:
        """Every item of a submission whose handling failed unexpectedly: an error, with why."""
        reason = f"the grader could not handle this submission ({_error_text(error)})"
        outcomes = {item.id: Outcome("error", reason) for item in self.registry[notebook]}
        return SubmissionResult(student, notebook, self._rows(student, notebook, outcomes))

    def _rows(self, student: str, notebook: str, outcomes: Mapping[str, Outcome]) -> list[Row]:
        rows = []
        for item in self.registry[notebook]:
            outcome = outcomes[item.id]
            fraction = 1.0 if outcome.status == "passed" else outcome.credit
            points = round(item.points * fraction, 2)
            public = outcome.detail if outcome.public is None else outcome.public
            rows.append(
                Row(
                    student,
                    notebook,
                    item.id,
                    points,
                    item.points,
                    outcome.status,
                    outcome.detail,
                    public,
                )
            )
        return rows

    def _grade_one(self, root: str, student: str, notebook: str, slot: int) -> SubmissionResult:
        started = time.monotonic()
        items = self.registry[notebook]
        result = SubmissionResult(student, notebook, [])
        try:
            data = _read_submission(root, student, f"{notebook}.ipynb")
            parsed = nbread.parse(data)
            cells = nbread.cells(parsed)
        except FileNotFoundError:
            outcomes = {
                item.id: Outcome("missing", f"{notebook}.ipynb was not handed in") for item in items
            }
            result.rows = self._rows(student, notebook, outcomes)
            return result
        except (nbread.NotebookError, OSError) as error:
            reason = f"the notebook cannot be graded: {_clean(error, 200)}"
            result.rows = self._rows(
                student, notebook, {item.id: Outcome("error", reason) for item in items}
            )
            return result
        outcomes: dict[str, Outcome] = {}
        answers = nbread.manual_answers(cells)
        for item in items:
            if item.kind == "manual":
                answer = _clean(answers.get(item.id, ""), 400)
                outcomes[item.id] = Outcome(
                    "manual", f"answer: {answer}" if answer else "no answer found"
                )
        auto = [item for item in items if isinstance(item, AutoItem)]
        if auto:
            result.seed = self._fresh_seed(student, notebook)
            code = [
                [c.index, c.source]
                for c in cells
                if c.cell_type == "code" and nbread.SKIP_TAG not in c.tags
            ]
            output = self._pool.output_for(slot)
            output.__init__()
            result.runs = self._run_items(
                slot, notebook, data, code, auto, result.seed, started, outcomes
            )
            result.output = neutralise(output.value())
        result.rows = self._rows(student, notebook, outcomes)
        result.seconds = time.monotonic() - started
        return result

    def _fresh_seed(self, student: str, notebook: str) -> int:
        """The submission's seed of hidden cases: secret and new, unless the grader has ``seed``."""
        return (
            secrets.randbits(63)
            if self.seed is None
            else _derive_seed(self.seed, student, notebook)
        )

    def _run_items(
        self,
        slot: int,
        notebook: str,
        data: bytes,
        code: list[list],
        items: list[AutoItem],
        seed: int,
        started: float,
        outcomes: dict[str, Outcome],
    ) -> int:
        deadline = started + self.timeout
        pending = list(items)
        runs = 0
        while pending:
            if time.monotonic() >= deadline or runs > MAX_RESTARTS:
                reason = (
                    "the time limit ran out" if time.monotonic() >= deadline else "too many crashes"
                )
                for item in pending:
                    outcomes[item.id] = Outcome(
                        "timeout" if "time" in reason else "error", f"not checked: {reason}"
                    )
                break
            runs += 1
            workdir = self._pool.new_workdir(slot, notebook, data)
            child = None
            try:
                child = Child(self._pool, slot, workdir, code)
                executed = self._execute(child, deadline, pending, outcomes)
                if executed is None:
                    break
                errors = executed
                while pending:
                    item = pending[0]
                    rng = torch.Generator().manual_seed(_derive_seed(seed, item.id))
                    outcome, alive = check_item(
                        child,
                        item,
                        rng,
                        deadline,
                        errors,
                        call_timeout=self.call_timeout,
                        memory_mb=self.memory_mb,
                    )
                    outcomes[item.id] = outcome
                    pending.pop(0)
                    if not alive:
                        break
                child.close(polite=True)
            except Exception as error:  # noqa: BLE001 - e.g. a frame too large, a full disk
                for item in pending:
                    outcomes[item.id] = Outcome(
                        "error", f"not checked: the grader could not run it ({_error_text(error)})"
                    )
                break
            finally:
                try:
                    if child is not None:
                        child.close(polite=False)
                finally:
                    problems = self._pool.remove_workdir(workdir)
                if problems:
                    self.cleanup_problems.extend(problems[:5])
        return runs

    def _execute(
        self, child: Child, deadline: float, pending: list[AutoItem], outcomes: dict
    ) -> list | None:
        """Wait for the notebook to run: its cell errors, or ``None`` after marking ``pending``."""
        current = None
        try:
            while True:
                message = child.receive(deadline)
                if not isinstance(message, dict):
                    raise _Protocol("a message that is not an object")
                if message.get("type") == "cell" and type(message.get("index")) is int:
                    current = message["index"]
                elif message.get("type") == "executed" and isinstance(message.get("errors"), list):
                    return [_cell_error(e) for e in message["errors"][:1000] if isinstance(e, dict)]
                else:
                    raise _Protocol("an unexpected message")
        except _Timeout:
            where = f" while running cell {current}" if current is not None else ""
            outcome = Outcome(
                "timeout", f"the notebook did not finish within {self.timeout:g} s{where}"
            )
        except _Lost as lost:
            where = f" during cell {current}" if current is not None else ""
            note = _memory_note(
                child.output.value().decode(errors="replace")[-4000:] + str(lost), self.memory_mb
            )
            outcome = Outcome("error", f"the notebook process {lost}{where}{note}")
        except _Protocol as error:
            outcome = Outcome("error", f"the notebook process broke the grading protocol ({error})")
        for item in pending:
            outcomes[item.id] = outcome
        pending.clear()
        return None


def discover_students(root: str) -> list[str]:
    """Student folder names in ``root``: real folders only (no links), hidden names skipped."""
    students = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                students.append(entry.name)
    return sorted(students)


def skipped_entries(root: str) -> list[str]:
    """Entries of ``root`` that ``discover_students`` ignores, with the reason."""
    skipped = []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_symlink():
                skipped.append(f"{entry.name} (symbolic link, not followed)")
            elif not entry.name.startswith(".") and not entry.is_dir(follow_symlinks=False):
                skipped.append(f"{entry.name} (not a folder)")
    return skipped


def _read_submission(root: str, student: str, filename: str) -> bytes:
    """Read ``root/student/filename`` without following a link anywhere on the way."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        student_fd = os.open(
            student, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd
        )
        try:
            return nbread.read_file_in(student_fd, filename)
        finally:
            os.close(student_fd)
    finally:
        os.close(root_fd)
