"""The trusted side of grading: run each submission in a sandboxed child, check its answers here.

``Grader`` grades a folder of submissions (one folder per student, one ``.ipynb`` per
registered notebook) and returns one ``SubmissionResult`` per student and notebook. For
each submission it forks a confined child from the zygote (``rectifiers.grading._zygote``),
sends it the code cells, waits until they ran, then for every auto-graded item sends the item's
public and freshly drawn hidden inputs one at a time, parses the child's plain-data answers
strictly (``rectifiers.grading.wire``), computes the expected outputs itself and compares.
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
from typing import Any

import torch

from . import notebook as nbread
from . import wire
from ._child import Child, _Lost, _Protocol, _Timeout

# Re-exported: the tests drive the policy with stand-ins for these.
from ._child import _CappedOutput as _CappedOutput
from ._child import _describe_exit as _describe_exit
from ._jobs import IsolationError as IsolationError
from ._jobs import JobPool
from ._runner import RUNNER_FAILED as RUNNER_FAILED
from ._text import clean_line as _clean
from ._text import neutralise
from .item import AutoItem, Item

MAX_RESTARTS = 3
_MEMORY_WORDS = (
    "memoryerror",
    "can't allocate memory",
    "cannot allocate memory",
    "out of memory",
    "bad_alloc",
)


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


@dataclass
class _Outcome:
    status: str
    detail: str = ""
    #: The student-visible text when it differs from ``detail`` (``None``: the same).
    public: str | None = None
    #: For a partial-credit item that did not pass: the fraction of its points earned.
    credit: float = 0.0


def _derive_seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _memory_note(text: str, memory_mb: int) -> str:
    lowered = text.lower()
    if any(word in lowered for word in _MEMORY_WORDS):
        return f" [memory limit {memory_mb} MB]"
    return ""


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
        outcomes = {item.id: _Outcome("error", reason) for item in self.registry[notebook]}
        return SubmissionResult(student, notebook, self._rows(student, notebook, outcomes))

    def _rows(self, student: str, notebook: str, outcomes: Mapping[str, _Outcome]) -> list[Row]:
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
                item.id: _Outcome("missing", f"{notebook}.ipynb was not handed in")
                for item in items
            }
            result.rows = self._rows(student, notebook, outcomes)
            return result
        except (nbread.NotebookError, OSError) as error:
            reason = f"the notebook cannot be graded: {_clean(error, 200)}"
            result.rows = self._rows(
                student, notebook, {item.id: _Outcome("error", reason) for item in items}
            )
            return result
        outcomes: dict[str, _Outcome] = {}
        answers = nbread.manual_answers(cells)
        for item in items:
            if item.kind == "manual":
                answer = _clean(answers.get(item.id, ""), 400)
                outcomes[item.id] = _Outcome(
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
        outcomes: dict[str, _Outcome],
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
                    outcomes[item.id] = _Outcome(
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
                    outcome, alive = self._check_item(child, item, rng, deadline, errors)
                    outcomes[item.id] = outcome
                    pending.pop(0)
                    if not alive:
                        break
                child.close(polite=True)
            except Exception as error:  # noqa: BLE001 - e.g. a frame too large, a full disk
                for item in pending:
                    outcomes[item.id] = _Outcome(
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
            outcome = _Outcome(
                "timeout", f"the notebook did not finish within {self.timeout:g} s{where}"
            )
        except _Lost as lost:
            where = f" during cell {current}" if current is not None else ""
            note = _memory_note(
                child.output.value().decode(errors="replace")[-4000:] + str(lost), self.memory_mb
            )
            outcome = _Outcome("error", f"the notebook process {lost}{where}{note}")
        except _Protocol as error:
            outcome = _Outcome(
                "error", f"the notebook process broke the grading protocol ({error})"
            )
        for item in pending:
            outcomes[item.id] = outcome
        pending.clear()
        return None

    def _check_item(
        self,
        child: Child,
        item: AutoItem,
        rng: torch.Generator,
        deadline: float,
        errors: list[dict],
    ) -> tuple[_Outcome, bool]:
        """``(outcome, child still usable)`` for one item: all its public then hidden cases.

        An all-or-nothing item stops at its first failed case; a partial-credit item
        (``credit == "cases"``) goes on while the child is usable and earns
        ``passed / total`` of its points.
        """
        try:
            cases = [("public", i, c) for i, c in enumerate(item.public_cases(), 1)]
            cases += [("hidden", i, c) for i, c in enumerate(item.hidden_cases(rng), 1)]
            requests = [item.request(case) for _, _, case in cases]
        except Exception as error:  # noqa: BLE001 - a bug in trusted item code must not stop the class
            return _item_bug(item, error), True
        partial = getattr(item, "credit", "all") == "cases"
        hidden_total = sum(kind == "hidden" for kind, _, _ in cases)
        passed, first, alive = 0, None, True
        for (kind, number, case), request in zip(cases, requests, strict=True):
            outcome, alive, final = self._check_case(
                child, item, (kind, number, hidden_total), case, request, deadline, errors
            )
            if outcome is None:
                passed += 1
                continue
            first = first or outcome
            if final or not partial or not alive:
                break
        if first is None:
            return _Outcome(
                "passed", f"all {len(cases)} case{'s' * (len(cases) != 1)} passed"
            ), True
        if partial and passed:
            summary = f"{passed} of {len(cases)} cases passed; first failure: "
            first.credit = passed / len(cases)
            first.public = summary + (first.detail if first.public is None else first.public)
            first.detail = summary + first.detail
        return first, alive

    def _check_case(
        self,
        child: Child,
        item: AutoItem,
        where: tuple[str, int, int],
        case: Any,
        request: dict,
        deadline: float,
        errors: list[dict],
    ) -> tuple[_Outcome | None, bool, bool]:
        """``(outcome or None when the case passed, child still usable, stop the item)``.

        For a hidden case the student-visible text (``_Outcome.public``) names the case by its
        number only: never its inputs, the expected value, or text the submission produced
        after it was given them (exception messages and type names, its output).
        """
        kind, number, hidden_total = where
        label = f"{kind} case {number}: {item.describe(case)}"
        shown = f"hidden case {number} of {hidden_total}" if kind == "hidden" else None

        def fail(status: str, detail: str, public: str | None = None) -> _Outcome:
            if shown is None:
                return _Outcome(status, detail)
            return _Outcome(status, detail, public if public is not None else shown)

        hint = f" Hint: {item.hint}" if item.hint else ""
        nonce = secrets.token_hex(8)
        call_deadline = min(deadline, time.monotonic() + self.call_timeout)
        try:
            child.send({"type": "probe", "nonce": nonce, "request": request})
            message = child.receive(call_deadline)
        except _Timeout:
            limit = (
                "the notebook's time limit"
                if call_deadline == deadline
                else f"{self.call_timeout:g} s"
            )
            return (
                fail(
                    "timeout",
                    f"{label}: no answer within {limit}",
                    f"{shown}: no answer within {limit}",
                ),
                False,
                True,
            )
        except _Lost as lost:
            note = _memory_note(
                child.output.value().decode(errors="replace")[-4000:] + str(lost), self.memory_mb
            )
            text = f"the notebook process {lost}{note}"
            return fail("error", f"{label}: {text}", f"{shown}: {text}"), False, True
        except _Protocol as error:
            text = f"the notebook process broke the grading protocol ({error})"
            return fail("error", text, text), False, True
        reply = message.get("reply") if isinstance(message, dict) else None
        if not (
            isinstance(message, dict)
            and message.get("type") == "reply"
            and message.get("nonce") == nonce
            and isinstance(reply, dict)
        ):
            text = "the notebook process broke the grading protocol (unexpected reply)"
            return fail("error", text, text), False, True
        status = reply.get("status")
        if status == "missing":
            detail = f"not attempted: `{item.name}` is not defined"
            public = detail + (" (a cell raised an exception)" if _cell_note(errors, 0) else "")
            return (
                _Outcome("failed", detail + _cell_note(errors, self.memory_mb), public),
                True,
                True,
            )
        if status == "not_implemented":
            text = f"not attempted: `{item.name}` raises NotImplementedError"
            return _Outcome("failed", text), True, True
        if status == "error":
            kind_text = _clean(reply.get("type", "Error"), 80)
            text = f"{kind_text}: {_clean(reply.get('message', ''), 200)}"
            detail = f"{label}: raised {text}{_memory_note(text, self.memory_mb)}"
            return fail("error", detail, f"{shown}: raised an exception.{hint}"), True, False
        if status != "ok" or "output" not in reply:
            text = "the notebook process broke the grading protocol (bad reply status)"
            return fail("error", text, text), False, True
        try:
            output = wire.decode(reply["output"])
        except Exception as error:  # noqa: BLE001 - any value that cannot be rebuilt is an error
            detail = f"{label}: the result cannot be checked ({_clean(error, 150)})"
            return fail("error", detail, f"{shown}: the result cannot be checked"), True, False
        try:
            expected = item.reference(case)
        except Exception as error:  # noqa: BLE001 - as above
            return _item_bug(item, error), True, True
        try:
            ok, detail = item.compare(output, expected)
        except Exception as error:  # noqa: BLE001 - a compare that chokes on odd output is a fail
            ok, detail = (
                False,
                f"the output could not be compared ({type(error).__name__}: {_clean(error, 150)})",
            )
        if ok:
            return None, True, False
        return (
            fail(
                "failed", f"{label}: {_clean(detail, 300)}.{hint}", f"{shown}: wrong output.{hint}"
            ),
            True,
            False,
        )


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {_clean(error, 200)}"


def _item_bug(item: AutoItem, error: Exception) -> _Outcome:
    """The outcome when the trusted item itself fails: an error to fix in the item, not a zero."""
    return _Outcome(
        "error",
        f"grader error in item {item.id} (not the submission's fault): "
        f"{type(error).__name__}: {error}",
        # The trusted code's message may quote a hidden case: the student gets none of it.
        "the grader could not check this item (not your fault; your instructor is told)",
    )


def _cell_error(entry: dict) -> dict:
    index = entry.get("index")
    return {
        "index": index if type(index) is int else -1,
        "type": _clean(entry.get("type", ""), 80),
        "message": _clean(entry.get("message", ""), 200),
    }


def _cell_note(errors: list[dict], memory_mb: int) -> str:
    """Mention the first cell that failed for another reason than an unfinished exercise."""
    for error in errors:
        if error["type"] != "NotImplementedError":
            text = f"{error['type']}: {error['message']}"
            return f" (cell {error['index']} raised {text}{_memory_note(text, memory_mb)})"
    return ""


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
