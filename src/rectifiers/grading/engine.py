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
import pwd
import queue
import secrets
import selectors
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from . import notebook as nbread
from . import wire
from ._runner import RUNNER_FAILED
from ._zygote import Zygote
from .item import AutoItem, Item

STATUSES = ("passed", "failed", "error", "timeout", "manual", "missing")

#: Modules the zygote imports once, so that no job pays for them (missing ones are skipped).
PRELOAD = [
    "numpy",
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "matplotlib",
    "matplotlib.pyplot",
    "IPython.core.interactiveshell",
    "IPython.display",
    "IPython.core.debugger",
    "tqdm",
    "tqdm.auto",
    "rectifiers",
    "rectifiers.grading",
    "rectifiers.grading.items",
    "rectifiers.grading._runner",
    # Imported lazily by the notebooks' first optimizer step (torch._dynamo, ~2 s) and by glue
    # (myst_nb.ext.glue pulls in nbformat and jsonschema, ~1.5 s): paid once here, not per notebook.
    "torch.optim",
    "torch._dynamo",
    "myst_nb.ext.glue",
]

OUTPUT_HEAD = 32 * 1024
OUTPUT_TAIL = 32 * 1024
MAX_RESTARTS = 3
FIRST_SANDBOX_UID = 61000
_MEMORY_WORDS = (
    "memoryerror",
    "can't allocate memory",
    "cannot allocate memory",
    "out of memory",
    "bad_alloc",
)
_SIGNALS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted, often an allocation failure in native code",
    signal.SIGKILL: "killed, possibly for using too much memory",
    signal.SIGXCPU: "CPU time limit",
    signal.SIGFPE: "arithmetic error",
    signal.SIGILL: "illegal instruction",
}


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


class _Timeout(Exception):
    pass


class _Lost(Exception):
    pass


class _Protocol(Exception):
    pass


class _CappedOutput:
    """Keeps the first and last bytes of an unbounded stream."""

    def __init__(self, head: int = OUTPUT_HEAD, tail: int = OUTPUT_TAIL):
        self.head, self.tail, self.total = bytearray(), bytearray(), 0
        self._head_limit, self._tail_limit = head, tail

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > self._tail_limit:
            del self.tail[: len(self.tail) - self._tail_limit]

    def value(self) -> bytes:
        skipped = self.total - len(self.head) - len(self.tail)
        middle = (
            f"\n[... {skipped} bytes of output not kept ...]\n".encode() if skipped > 0 else b""
        )
        return bytes(self.head) + middle + bytes(self.tail)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended without reporting a status"
    if code == RUNNER_FAILED:
        return (
            "could no longer answer the grader (its code broke the Python runtime the checks need)"
        )
    if code >= 0:
        return f"exited with code {code}"
    sig = -code
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    meaning = _SIGNALS.get(sig)
    return f"was killed by {name}" + (f" ({meaning})" if meaning else "")


def _clean(text: str, limit: int = 300) -> str:
    """One line of untrusted text, printable and bounded."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Child:
    """The grader's end of one sandboxed child: its socket, its output pipe and its status pipe."""

    def __init__(self, grader: Grader, slot: int, workdir: str, cells: list[list]):
        self._grader = grader
        self._slot = slot
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            self.pid = grader._zygote.fork(
                grader._job_spec(slot, workdir), child_sock.fileno(), out_w, status_w
            )
        finally:
            child_sock.close()
            os.close(out_w)
            os.close(status_w)
        self._sock = parent_sock
        self._sock.setblocking(False)
        self._out, self._status_fd = out_r, status_r
        os.set_blocking(out_r, False)
        os.set_blocking(status_r, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._selector.register(out_r, selectors.EVENT_READ)
        self._selector.register(status_r, selectors.EVENT_READ)
        self._reader = wire.FrameReader()
        self._outgoing = bytearray()
        self._messages: list[Any] = []
        self._status_bytes = bytearray()
        self._sock_open = self._status_open = True
        self.output = grader._output_for(slot)
        self.exit_code: int | None = None
        self.setup_error: str | None = None
        self.closed = False
        self.send({"cells": cells})

    # -- I/O ---------------------------------------------------------------------------------

    def send(self, message: Any) -> None:
        self._outgoing += wire.dumps(message)
        self._flush()

    def _flush(self) -> None:
        if not self._outgoing or not self._sock_open:
            return
        try:
            sent = self._sock.send(self._outgoing)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._outgoing.clear()
            return
        del self._outgoing[:sent]
        self._selector.modify(
            self._sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if self._outgoing else 0)
        )

    def _pump(self, timeout: float) -> None:
        for key, mask in self._selector.select(max(0.0, timeout)):
            if key.fileobj is self._sock:
                if mask & selectors.EVENT_WRITE:
                    self._flush()
                if mask & selectors.EVENT_READ:
                    try:
                        data = self._sock.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._sock_open = False
                        self._selector.unregister(self._sock)
                        continue
                    try:
                        self._messages.extend(self._reader.feed(data))
                    except wire.WireError as error:
                        raise _Protocol(str(error)) from None
            elif key.fileobj == self._out:
                data = os.read(self._out, 1 << 16)
                if data:
                    self.output.add(data)
                else:
                    self._selector.unregister(self._out)
            else:
                data = os.read(self._status_fd, 4096)
                if data and len(self._status_bytes) < 4096:
                    self._status_bytes += data
                elif not data:
                    self._status_open = False
                    self._selector.unregister(self._status_fd)
                    self._parse_status()

    def _parse_status(self) -> None:
        try:
            status = wire.loads(bytes(self._status_bytes)) if self._status_bytes else {}
        except wire.WireError:
            status = {}
        # The status comes from the supervisor (trusted code that never ran the submission).
        if isinstance(status, dict):
            if type(status.get("exit")) is int:
                self.exit_code = status["exit"]
            if isinstance(status.get("setup_error"), str):
                self.setup_error = _clean(status["setup_error"])

    def receive(self, deadline: float) -> Any:
        """The next message; raises ``_Timeout`` at the deadline, ``_Lost`` if the child is gone."""
        while not self._messages:
            if not self._sock_open:
                # Give the supervisor a moment to report how the child ended.
                end = time.monotonic() + 2.0
                while self._status_open and time.monotonic() < end:
                    self._pump(end - time.monotonic())
                raise _Lost(self.setup_error or _describe_exit(self.exit_code))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            self._pump(min(remaining, 1.0))
        return self._messages.pop(0)

    # -- ending ------------------------------------------------------------------------------

    def close(self, polite: bool) -> None:
        """Say bye (if ``polite``), then make sure every process of the job is gone."""
        if self.closed:
            return
        self.closed = True
        if polite and self._sock_open:
            try:
                self.send({"type": "bye"})
                end = time.monotonic() + 2.0
                while self._status_open and time.monotonic() < end:
                    self._pump(min(0.2, end - time.monotonic()))
            except (_Protocol, OSError):
                pass
        try:
            # Safe: the zygote has not reaped this job's first process, so its group id is not reused.
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._grader._sweep(self._slot)
        self._grader._zygote.release(self.pid)
        end = time.monotonic() + 2.0
        while self._status_open and time.monotonic() < end:
            try:
                self._pump(min(0.2, end - time.monotonic()))
            except _Protocol:
                pass
        self._selector.close()
        self._sock.close()
        os.close(self._out)
        os.close(self._status_fd)


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
        memory_mb: address-space limit of each submission's process, in MiB (at most 4096).
        call_timeout: seconds one call of the learner's code may take while checking.
        seed: derive every hidden case from this seed (to reproduce a grading run) instead of a
            fresh secret seed per submission.
        namespaces: use Linux namespaces when available (``False``: uid drop and limits only).

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
        self.want_namespaces = bool(namespaces)
        self._zygote: Zygote | None = None
        self._scratch: str | None = None
        self._hidden: list[str] = []
        self._outputs: dict[int, _CappedOutput] = {}
        self.sandbox: dict[str, Any] = {}

    # -- set-up ------------------------------------------------------------------------------

    def __enter__(self) -> Grader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pick_uids(self) -> list[int]:
        from . import _sandbox

        # Each sandbox uid's processes are all killed after every notebook, so two graders
        # running at once must not share one: start the scan at a per-process offset (and skip
        # uids that own processes). Offsets stay below 65534, "nobody".
        uids, candidate = [], FIRST_SANDBOX_UID + (os.getpid() % 512) * 8
        while len(uids) < self.jobs:
            try:
                pwd.getpwuid(candidate)
            except KeyError:
                if _sandbox.count_processes(candidate) == 0:
                    uids.append(candidate)
            candidate += 1
        return uids

    def start(self) -> None:
        """Create the scratch folder and start the zygote (imports torch once)."""
        if self._zygote is not None:
            return
        self.is_root = os.geteuid() == 0
        self._uids = self._pick_uids() if self.is_root else []
        self._scratch = tempfile.mkdtemp(prefix="grade-exercises-")
        os.chmod(self._scratch, 0o711)  # the sandbox uids may pass through, not list
        probe_dir = os.path.join(self._scratch, "probe")
        os.mkdir(probe_dir, 0o700)
        env = {
            "PATH": os.pathsep.join(
                [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]
            ),
            "HOME": os.environ.get("HOME", self._scratch),
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if "MPLCONFIGDIR" in os.environ:
            env["MPLCONFIGDIR"] = os.environ["MPLCONFIGDIR"]
        preload = PRELOAD + self._course_modules()
        self._zygote = Zygote(
            preload,
            env,
            namespaces=self.want_namespaces,
            userns=not self.is_root,
            probe_dir=probe_dir,
        )
        hello = self._zygote.hello
        self.namespaces = bool(hello["namespaces"])
        self.sandbox = {
            "mode": ("root" if self.is_root else "user")
            + ("+namespaces" if self.namespaces else ""),
            "uid_drop": self.is_root,
            "namespaces": self.namespaces,
            "namespace_note": hello["namespace_reason"],
            "zygote_seconds": round(self._zygote.start_seconds, 2),
            "zygote_threads": hello["threads"],
            "preload_failed": hello["failed"],
            "warnings": self._warnings(hello),
        }

    def _warnings(self, hello: dict) -> list[str]:
        from . import _sandbox

        warnings = []
        if not self.namespaces:
            who = (
                "a dedicated unprivileged uid"
                if self.is_root
                else "your own user, with your permissions"
            )
            warnings.append(
                f"Linux namespaces are unavailable ({hello['namespace_reason']}): submissions run as {who}, "
                "with network access and without a read-only file system"
            )
            closed = sorted({c for p in _python_paths() if (c := _sandbox.closed_ancestor(p))})
            if self.is_root and closed:
                warnings.append(
                    f"{', '.join(closed)} cannot be entered by other users, so submissions can import only "
                    "the modules the grader preloaded; make the Python installation world-readable"
                )
        if hello["failed"]:
            warnings.append(f"modules that failed to preload: {', '.join(sorted(hello['failed']))}")
        return warnings

    def _course_modules(self) -> list[str]:
        import pkgutil

        import rectifiers

        return [
            f"rectifiers.{info.name}"
            for info in pkgutil.iter_modules(rectifiers.__path__)
            if not info.name.startswith("_") and info.name != "grading"
        ]

    def close(self) -> None:
        """Stop the zygote and remove the scratch folder."""
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        if self._scratch is not None:
            _remove_tree(self._scratch)
            self._scratch = None

    def _job_spec(self, slot: int, workdir: str) -> dict:
        uid = self._uids[slot] if self.is_root else None
        return {
            "workdir": workdir,
            "env": {
                "PATH": os.pathsep.join(
                    [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]
                ),
                "HOME": workdir,
                "TMPDIR": os.path.join(workdir, "tmp"),
                "USER": "student",
                "LOGNAME": "student",
                "LANG": "C.UTF-8",
                "MPLBACKEND": "Agg",
                "MPLCONFIGDIR": os.path.join(workdir, ".matplotlib"),
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "TERM": "dumb",
            },
            "uid": uid,
            "gid": uid,
            "namespaces": self.namespaces,
            "userns": not self.is_root,
            "outer_uid": os.getuid(),
            "outer_gid": os.getgid(),
            "hidden": [
                p
                for p in self._hidden
                if not (workdir + os.sep).startswith(p.rstrip(os.sep) + os.sep)
            ],
            "expose": _python_paths(),
            "memory_bytes": self.memory_mb * 2**20,
            "file_bytes": 64 * 2**20,
            "cpu_seconds": int(self.timeout) + 10,
            "open_files": 1024,
            "processes": 64 if self.is_root else 256,
        }

    def _sweep(self, slot: int) -> None:
        if self.is_root and self._zygote is not None:
            self._zygote.sweep(self._uids[slot], self._uids[slot])

    def _output_for(self, slot: int) -> _CappedOutput:
        return self._outputs.setdefault(slot, _CappedOutput())

    # -- grading -----------------------------------------------------------------------------

    def grade(
        self,
        submissions_dir: str | os.PathLike,
        *,
        hide: Sequence[str | os.PathLike] = (),
        progress: Callable[[SubmissionResult], None] | None = None,
    ) -> list[SubmissionResult]:
        """Grade every student folder in ``submissions_dir`` against every registered notebook.

        Args:
            submissions_dir: one folder per student holding ``<notebook>.ipynb`` files.
            hide: further folders the submissions must not see (the output folder).
            progress: called with each result as it completes (from a worker thread).

        Returns:
            One result per student and notebook, sorted by student then notebook order.
        """
        self.start()
        root = os.path.realpath(submissions_dir)
        self._hidden = [root] + [os.path.realpath(p) for p in hide if os.path.isdir(p)]
        students = discover_students(root)
        tasks = [(student, notebook) for student in students for notebook in self.registry]
        slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.jobs):
            slots.put(slot)

        def run(task: tuple[str, str]) -> SubmissionResult:
            slot = slots.get()
            try:
                result = self._grade_one(root, task[0], task[1], slot)
            finally:
                slots.put(slot)
            if progress is not None:
                progress(result)
            return result

        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="grade") as pool:
            return list(pool.map(run, tasks))

    def _rows(self, student: str, notebook: str, outcomes: Mapping[str, _Outcome]) -> list[Row]:
        rows = []
        for item in self.registry[notebook]:
            outcome = outcomes[item.id]
            points = item.points if outcome.status == "passed" else 0.0
            rows.append(
                Row(student, notebook, item.id, points, item.points, outcome.status, outcome.detail)
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
            output = self._output_for(slot)
            output.__init__()
            result.runs = self._run_items(
                slot, notebook, data, code, auto, result.seed, started, outcomes
            )
            result.output = output.value()
        result.rows = self._rows(student, notebook, outcomes)
        result.seconds = time.monotonic() - started
        return result

    def _fresh_seed(self, student: str, notebook: str) -> int:
        """The submission's seed of hidden cases: secret and new, unless the grader has a ``seed``."""
        return (
            secrets.randbits(63)
            if self.seed is None
            else _derive_seed(self.seed, student, notebook)
        )

    def _new_workdir(self, slot: int, notebook: str, data: bytes) -> str:
        workdir = tempfile.mkdtemp(prefix=f"job{slot}-", dir=self._scratch)
        os.mkdir(os.path.join(workdir, "tmp"), 0o700)
        copy = os.path.join(workdir, f"{notebook}.ipynb")
        with open(copy, "wb") as handle:
            handle.write(data)
        if self.is_root:
            uid = self._uids[slot]
            for path in (workdir, os.path.join(workdir, "tmp"), copy):
                os.chown(path, uid, uid)
        os.chmod(copy, 0o400)
        return workdir

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
            workdir = self._new_workdir(slot, notebook, data)
            child = None
            try:
                child = _Child(self, slot, workdir, code)
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
            finally:
                if child is not None:
                    child.close(polite=False)
                _remove_tree(workdir)
        return runs

    def _execute(
        self, child: _Child, deadline: float, pending: list[AutoItem], outcomes: dict
    ) -> list | None:
        """Wait for the notebook to run; returns the cell errors, or ``None`` after marking ``pending``."""
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
        child: _Child,
        item: AutoItem,
        rng: torch.Generator,
        deadline: float,
        errors: list[dict],
    ) -> tuple[_Outcome, bool]:
        """``(outcome, child still usable)`` for one item: all its public then hidden cases."""
        try:
            cases = [("public", i, c) for i, c in enumerate(item.public_cases(), 1)]
            cases += [("hidden", i, c) for i, c in enumerate(item.hidden_cases(rng), 1)]
            requests = [item.request(case) for _, _, case in cases]
        except Exception as error:  # noqa: BLE001 - a bug in trusted item code must not stop the class
            return _item_bug(item, error), True
        for (kind, number, case), request in zip(cases, requests):
            label = f"{kind} case {number}: {item.describe(case)}"
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
                return _Outcome("timeout", f"{label}: no answer within {limit}"), False
            except _Lost as lost:
                note = _memory_note(
                    child.output.value().decode(errors="replace")[-4000:] + str(lost),
                    self.memory_mb,
                )
                return _Outcome("error", f"{label}: the notebook process {lost}{note}"), False
            except _Protocol as error:
                return _Outcome(
                    "error", f"the notebook process broke the grading protocol ({error})"
                ), False
            reply = message.get("reply") if isinstance(message, dict) else None
            if not (
                isinstance(message, dict)
                and message.get("type") == "reply"
                and message.get("nonce") == nonce
                and isinstance(reply, dict)
            ):
                return _Outcome(
                    "error", "the notebook process broke the grading protocol (unexpected reply)"
                ), False
            status = reply.get("status")
            if status == "missing":
                note = _cell_note(errors, self.memory_mb)
                return _Outcome(
                    "failed", f"not attempted: `{item.name}` is not defined{note}"
                ), True
            if status == "not_implemented":
                return _Outcome(
                    "failed", f"not attempted: `{item.name}` raises NotImplementedError"
                ), True
            if status == "error":
                text = f"{_clean(reply.get('type', 'Error'), 80)}: {_clean(reply.get('message', ''), 200)}"
                return _Outcome(
                    "error", f"{label}: raised {text}{_memory_note(text, self.memory_mb)}"
                ), True
            if status != "ok" or "output" not in reply:
                return _Outcome(
                    "error", "the notebook process broke the grading protocol (bad reply status)"
                ), False
            try:
                output = wire.decode(reply["output"])
            except wire.WireError as error:
                return _Outcome(
                    "error", f"{label}: the result cannot be checked ({_clean(error, 150)})"
                ), True
            try:
                expected = item.reference(case)
            except Exception as error:  # noqa: BLE001 - as above
                return _item_bug(item, error), True
            try:
                ok, detail = item.compare(output, expected)
            except Exception as error:  # noqa: BLE001 - a compare that chokes on odd output is a fail
                ok, detail = (
                    False,
                    f"the output could not be compared ({type(error).__name__}: {_clean(error, 150)})",
                )
            if not ok:
                hint = f" Hint: {item.hint}" if item.hint else ""
                return _Outcome("failed", f"{label}: {_clean(detail, 300)}.{hint}"), True
        return _Outcome("passed", f"all {len(cases)} case{'s' * (len(cases) != 1)} passed"), True


def _python_paths() -> list[str]:
    """Folders the submission's interpreter reads from: installation prefixes and ``sys.path``."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    paths.update(p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p))
    return sorted(os.path.realpath(p) for p in paths)


def _item_bug(item: AutoItem, error: Exception) -> _Outcome:
    """The outcome when the trusted item itself fails: an error to fix in the item, not a zero."""
    return _Outcome(
        "error",
        f"grader error in item {item.id} (not the submission's fault): {type(error).__name__}: {error}",
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


def _remove_tree(path: str) -> None:
    """Remove a scratch tree even if the submission removed permissions inside it."""

    def fix(function: Callable, target: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
        except OSError:
            pass
        try:
            function(target)
        except OSError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=fix)
