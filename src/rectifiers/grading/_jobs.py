"""The child-process plumbing of grading: the sandboxes, and the grader's end of each child.

``JobPool`` owns what the grading policy (``rectifiers.grading.engine``) runs submissions in:
the scratch folder, the pre-forked zygote (``rectifiers.grading._zygote``), one dedicated uid per
slot when the grader is root, and the job description each sandboxed child is forked with.
``Child`` is the grader's end of one such child: it sends frames (``rectifiers.grading.wire``),
collects the child's output within a bounded buffer, reads how it ended, and on ``close`` makes
sure every process of the job is gone. Nothing here decides a grade.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any

from . import wire
from ._isolation import IsolationError as IsolationError
from ._isolation import _bwrap_works, _remove_tree, _zygote_paths, bwrap_command
from ._runner import RUNNER_FAILED
from ._text import clean_line as _clean
from ._zygote import Zygote

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
FIRST_SANDBOX_UID = 61000
#: The environment of the zygote and of every job; ``JobPool`` adds the per-process entries.
BASE_ENV = {
    "LANG": "C.UTF-8",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_SIGNALS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted, often an allocation failure in native code",
    signal.SIGKILL: "killed, possibly for using too much memory",
    signal.SIGXCPU: "CPU time limit",
    signal.SIGFPE: "arithmetic error",
    signal.SIGILL: "illegal instruction",
}


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


class Child:
    """The grader's end of one sandboxed child: its socket, its output pipe and its status pipe."""

    def __init__(self, pool: JobPool, slot: int, workdir: str, cells: list[list]):
        self._pool = pool
        self._slot = slot
        # Frames go out before the fork: one too large for the wire is this submission's error.
        first = wire.dumps({"cells": cells})
        self.cgroup, cgroup_fd = pool.new_cgroup()
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        status_r, status_w = os.pipe()
        notebook_fd = os.open(
            pool.notebook_copy(workdir), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        )
        try:
            self.pid = pool.zygote.fork(
                pool.job_spec(slot, workdir),
                child_sock.fileno(),
                out_w,
                status_w,
                notebook_fd,
                cgroup_fd,
            )
        finally:
            child_sock.close()
            for fd in (out_w, status_w, notebook_fd) + ((cgroup_fd,) if cgroup_fd else ()):
                os.close(fd)
        self._sock = parent_sock
        self._sock.setblocking(False)
        self._out, self._status_fd = out_r, status_r
        os.set_blocking(out_r, False)
        os.set_blocking(status_r, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._selector.register(out_r, selectors.EVENT_READ)
        self._selector.register(status_r, selectors.EVENT_READ)
        self._reader = wire.FrameReader(max_bytes=MAX_REPLY_BYTES)
        self._large = False  # holds one of the run's LARGE_FRAME_SLOTS
        self._outgoing = bytearray()
        self._messages: list[Any] = []
        self._status_bytes = bytearray()
        self._sock_open = self._status_open = True
        self.output = pool.output_for(slot)
        self.exit_code: int | None = None
        self.oom_kills = 0
        self.setup_error: str | None = None
        self.closed = False
        self._outgoing += first
        self._flush()

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
                    self._take(data)
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

    def _take(self, data: bytes) -> None:
        """Feed received bytes to the frame reader, within the run's budget for large frames."""
        try:
            self._messages.extend(self._reader.feed(data))
        except wire.WireError as error:
            raise _Protocol(str(error)) from None
        finally:
            if self._large and self._reader.pending == 0:
                self._large = False
                self._pool.large_frames.release()
        if not self._large and self._reader.announced > LARGE_FRAME_BYTES:
            # Wait for a slot before receiving the rest: at most LARGE_FRAME_SLOTS frames over
            # LARGE_FRAME_BYTES are buffered at a time, whatever --jobs is.
            if not self._pool.large_frames.acquire(timeout=self._pool.timeout):
                raise _Protocol("no room to receive a large frame")
            self._large = True

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
        # Safe: the zygote has not reaped this job's first process, so its group id is not reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._pool.sweep(self._slot)
        self._pool.zygote.release(self.pid)
        if self._large:
            self._large = False
            self._pool.large_frames.release()
        if self.cgroup is not None:
            self.oom_kills = self._pool.cgroups.oom_kills(self.cgroup)
            self._pool.cgroups.remove(self.cgroup)
        end = time.monotonic() + 2.0
        while self._status_open and time.monotonic() < end:
            with contextlib.suppress(_Protocol):
                self._pump(min(0.2, end - time.monotonic()))
        self._selector.close()
        self._sock.close()
        os.close(self._out)
        os.close(self._status_fd)


def _search_path() -> str:
    return os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])


def _course_modules() -> list[str]:
    import pkgutil

    import rectifiers

    return [
        f"rectifiers.{info.name}"
        for info in pkgutil.iter_modules(rectifiers.__path__)
        if not info.name.startswith("_") and info.name != "grading"
    ]


#: Frames from a child above this size need one of the run's ``LARGE_FRAME_SLOTS``.
LARGE_FRAME_BYTES = 1 << 20
LARGE_FRAME_SLOTS = 2
#: The largest frame the grader accepts from a child (answers are small; the encoder's
#: tensor limit still applies inside it).
MAX_REPLY_BYTES = 8 * 2**20


class JobPool:
    """The sandboxes one grader runs submissions in: scratch folder, zygote, uids, job specs.

    At start it detects what the machine allows and records it in ``sandbox``:

    - isolation: bubblewrap (``bwrap_command``) around the zygote, plus Linux namespaces per
      job, as root (a dedicated uid per slot) or not (user namespaces). Without both it refuses
      to start (``IsolationError``) unless ``weaker_isolation`` accepts what is lost;
    - memory: a memory cgroup per job (``rectifiers.grading._cgroup``) capping the notebook's
      whole process tree, else a process-count limit with the cap shared out between them;
    - disk: each job's folder (and ``/tmp``) is a tmpfs of ``disk_mb`` in its own namespace.

    Args:
        jobs: slots (notebooks run at the same time); each has its own uid as root.
        memory_mb: memory cap of each notebook (all its processes together), in MiB.
        timeout: wall-clock seconds per notebook (the CPU-time limit is derived from it).
        namespaces: use Linux namespaces when available.
        disk_mb: what each notebook may write in total, in MiB.
        weaker_isolation: grade even where no sandbox as strong as bubblewrap's is available.
    """

    def __init__(
        self,
        *,
        jobs: int,
        memory_mb: int,
        timeout: float,
        namespaces: bool,
        disk_mb: int = 256,
        weaker_isolation: bool = False,
    ):
        self.jobs, self.memory_mb, self.timeout = jobs, memory_mb, timeout
        self.disk_mb = disk_mb
        self.want_namespaces = namespaces
        self.weaker_isolation = weaker_isolation
        self.zygote: Zygote | None = None
        self.scratch: str | None = None
        self.hidden: list[str] = []
        self.cgroups = None
        self._outputs: dict[int, _CappedOutput] = {}
        self._notebooks: dict[str, str] = {}
        self.large_frames = threading.BoundedSemaphore(LARGE_FRAME_SLOTS)
        self.sandbox: dict[str, Any] = {}

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
        """Detect the isolation available, create the scratch folder and start the zygote."""
        if self.zygote is not None:
            return
        from ._cgroup import MemoryCgroups

        self.is_root = os.geteuid() == 0
        self._uids = self._pick_uids() if self.is_root else []
        self.scratch = tempfile.mkdtemp(prefix="grade-exercises-")
        os.chmod(self.scratch, 0o711)  # the sandbox uids may pass through, not list
        trial_dir = os.path.join(self.scratch, "trial")
        os.mkdir(trial_dir, 0o700)
        wrapper, bwrap_note = [], "namespaces disabled"
        program = shutil.which("bwrap")
        if self.want_namespaces:
            if program is None:
                bwrap_note = "bubblewrap (bwrap) is not installed"
            else:
                wrapper = bwrap_command(
                    self.is_root, self.scratch, trial_dir, _zygote_paths(), program
                )
                bwrap_note = _bwrap_works(wrapper[:-1])
                if bwrap_note is not None:
                    wrapper = []
        env = {
            **BASE_ENV,
            "PATH": _search_path(),
            "HOME": self.scratch,
            "MPLCONFIGDIR": os.path.join(self.scratch, ".matplotlib"),
        }
        self.zygote = Zygote(
            PRELOAD + _course_modules(),
            env,
            namespaces=self.want_namespaces,
            userns=not self.is_root,
            trial_dir=trial_dir,
            wrapper=wrapper,
        )
        hello = self.zygote.hello
        self.namespaces = bool(hello["namespaces"])
        strong = self.namespaces and bool(wrapper)
        who = "root" if self.is_root else "user"
        isolation = f"{who}+bwrap" if strong else who + ("+namespaces" if self.namespaces else "")
        self.cgroups = MemoryCgroups(self.memory_mb * 2**20) if self.is_root else None
        memory = self._memory_mode(getattr(self.cgroups, "reason", "not root"))
        self.sandbox = {
            "mode": isolation,
            "isolation": "strong" if strong else "weaker (accepted with weaker_isolation)",
            "uid_drop": self.is_root,
            "namespaces": self.namespaces,
            "namespace_note": hello["namespace_reason"],
            "bubblewrap": "in use" if wrapper else bwrap_note,
            "memory": memory,
            "disk": (
                f"tmpfs of {self.disk_mb} MiB per notebook"
                if self.namespaces
                else f"checked total of {self.disk_mb} MiB per notebook"
            ),
            "zygote_seconds": round(self.zygote.start_seconds, 2),
            "zygote_threads": hello["threads"],
            "preload_failed": hello["failed"],
            "warnings": self._warnings(hello, strong),
        }
        if not strong and not self.weaker_isolation:
            reason = bwrap_note if not wrapper else hello["namespace_reason"]
            self.close()
            raise IsolationError(
                f"no sandbox as strong as required on this machine ({reason}). Install "
                "bubblewrap (Debian: apt-get install bubblewrap) and allow unprivileged user "
                "namespaces, or accept weaker isolation explicitly (weaker_isolation=True, "
                f"--weaker-isolation), which gives up: {self._given_up()}"
            )

    def _memory_mode(self, reason: str) -> dict:
        if self.cgroups is not None and self.cgroups.mode is not None:
            return {
                "mode": self.cgroups.mode,
                "cap_mb": self.memory_mb,
                "note": "one memory cgroup per notebook: all its processes together",
            }
        self.cgroups = None
        # 2 GiB of address space each: a forked copy of the zygote (torch imported) maps ~1 GiB.
        processes = max(1, min(4, self.memory_mb // 2048))
        return {
            "mode": "process-limit",
            "cap_mb": self.memory_mb,
            "processes": processes,
            "per_process_mb": self.memory_mb // processes,
            "note": f"no writable memory cgroup ({reason}): at most {processes} processes "
            f"and threads, each with {self.memory_mb // processes} MiB of address space",
        }

    def _given_up(self) -> str:
        lost = [
            "submissions see every file your user (or, as root, any user) can read, including "
            "your home folder (non-root), the grader's scratch folder and the other "
            "submissions being graded at the same time",
            "Unix sockets in world-readable folders stay reachable (session bus, ssh-agent, X11)",
        ]
        if not self.namespaces:
            lost.append(
                "no namespaces: network access, no read-only file system, the disk cap is a "
                "checked total instead of a tmpfs"
            )
        return "; ".join(lost)

    def _warnings(self, hello: dict, strong: bool) -> list[str]:
        from . import _sandbox

        warnings = []
        if not strong:
            warnings.append(f"weaker isolation accepted: {self._given_up()}")
        if not self.namespaces:
            closed = sorted({c for p in _zygote_paths() if (c := _sandbox.closed_ancestor(p))})
            if self.is_root and closed:
                warnings.append(
                    f"{', '.join(closed)} cannot be entered by other users, so submissions can "
                    "import only the modules the grader preloaded; make the Python installation "
                    "world-readable"
                )
        if hello["failed"]:
            warnings.append(f"modules that failed to preload: {', '.join(sorted(hello['failed']))}")
        return warnings

    def close(self) -> None:
        """Stop the zygote, remove the cgroups and the scratch folder."""
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None
        if self.cgroups is not None:
            self.cgroups.close()
        if self.scratch is not None:
            _remove_tree(self.scratch)
            self.scratch = None

    def job_spec(self, slot: int, workdir: str) -> dict:
        """What the zygote needs to fork the sandboxed child of ``slot`` working in ``workdir``."""
        uid = self._uids[slot] if self.is_root else None
        memory, processes = self.memory_mb, 64
        if self.cgroups is None:
            processes = self.sandbox["memory"]["processes"]
            memory = self.sandbox["memory"]["per_process_mb"]
        return {
            "workdir": workdir,
            "scratch": self.scratch,
            "notebook": self._notebooks[workdir],
            "disk_bytes": self.disk_mb * 2**20,
            "env": {
                **BASE_ENV,
                "PATH": _search_path(),
                "HOME": workdir,
                "TMPDIR": os.path.join(workdir, "tmp"),
                "USER": "student",
                "LOGNAME": "student",
                "MPLCONFIGDIR": os.path.join(workdir, ".matplotlib"),
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
                for p in self.hidden
                if not (workdir + os.sep).startswith(p.rstrip(os.sep) + os.sep)
            ],
            "expose": _zygote_paths(),
            "memory_bytes": memory * 2**20,
            "file_bytes": min(64, self.disk_mb) * 2**20,
            "cpu_seconds": int(self.timeout) + 10,
            "open_files": 1024,
            "processes": processes,
        }

    def new_workdir(self, slot: int, notebook: str, data: bytes) -> str:
        """A fresh working folder for ``slot`` holding a read-only copy of the notebook.

        With namespaces the job sees only its own tmpfs (``_sandbox.private_workdir``), into
        which it copies this notebook; this folder on the host then never holds more.
        """
        workdir = tempfile.mkdtemp(prefix=f"job{slot}-", dir=self.scratch)
        os.mkdir(os.path.join(workdir, "tmp"), 0o700)
        copy = os.path.join(workdir, f"{notebook}.ipynb")
        with open(copy, "wb") as handle:
            handle.write(data)
        if self.is_root:
            uid = self._uids[slot]
            for path in (workdir, os.path.join(workdir, "tmp"), copy):
                os.chown(path, uid, uid)
        os.chmod(copy, 0o400)
        self._notebooks[workdir] = notebook
        return workdir

    def notebook_copy(self, workdir: str) -> str:
        """The path of the notebook copy in ``workdir``."""
        return os.path.join(workdir, f"{self._notebooks[workdir]}.ipynb")

    def remove_workdir(self, workdir: str) -> list[str]:
        """Remove a job's folder; returns the problems met (never raises)."""
        self._notebooks.pop(workdir, None)
        try:
            return _remove_tree(workdir)
        except Exception as error:  # noqa: BLE001 - clean-up must never stop the batch
            return [f"{type(error).__name__}: {error}"]

    def disk_used(self, workdir: str) -> int:
        """Bytes written under ``workdir`` (without namespaces, the disk cap is checked so)."""
        total, stack = 0, [workdir]
        while stack:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
        return total

    def new_cgroup(self) -> tuple[str | None, int | None]:
        """A capped memory cgroup for the next job, or ``(None, None)`` without cgroups."""
        if self.cgroups is None:
            return None, None
        return self.cgroups.create()

    def sweep(self, slot: int) -> None:
        """Kill every process of ``slot``'s uid (root only: elsewhere the job's group and
        PID namespace hold them all)."""
        if self.is_root and self.zygote is not None:
            self.zygote.sweep(self._uids[slot], self._uids[slot])

    def output_for(self, slot: int) -> _CappedOutput:
        """The output buffer of ``slot`` (reused by each of its jobs)."""
        return self._outputs.setdefault(slot, _CappedOutput())
