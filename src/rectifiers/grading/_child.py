"""The grader's end of one sandboxed child: frames out, bounded frames and output in, the end.

``Child`` sends the child its cells and requests (``rectifiers.grading.wire`` frames), collects
what it prints within a bounded buffer (``_CappedOutput``), receives its replies within a bounded
budget (``MAX_REPLY_BYTES`` per frame; at most ``LARGE_FRAME_SLOTS`` frames over
``LARGE_FRAME_BYTES`` buffered at once in a whole run, whatever ``--jobs`` is), reads how it
ended, and on ``close`` makes sure every process of the job is gone. ``JobPool``
(``rectifiers.grading._jobs``) owns what it runs in.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from . import wire
from ._runner import RUNNER_FAILED
from ._text import clean_line as _clean

if TYPE_CHECKING:
    from ._jobs import JobPool

OUTPUT_HEAD = 32 * 1024
OUTPUT_TAIL = 32 * 1024
#: Frames from a child above this size need one of the run's ``LARGE_FRAME_SLOTS``.
LARGE_FRAME_BYTES = 1 << 20
LARGE_FRAME_SLOTS = 2
#: The largest frame the grader accepts from a child (answers are small; the encoder's
#: tensor limit still applies inside it).
MAX_REPLY_BYTES = 8 * 2**20


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
        self._workdir = workdir
        self._disk_checked = time.monotonic()
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
            self._check_disk()
        return self._messages.pop(0)

    def _check_disk(self) -> None:
        """Without namespaces the job writes to the host's disk: check its total every second."""
        if self._pool.namespaces or time.monotonic() - self._disk_checked < 1.0:
            return
        self._disk_checked = time.monotonic()
        if self._pool.disk_used(self._workdir) > self._pool.disk_mb * 2**20:
            raise _Lost(f"wrote more than the disk cap of {self._pool.disk_mb} MiB")

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
