"""The pre-forked "zygote": one clean process that has imported torch once and forks every job.

Importing torch costs one to two seconds of CPU; a class of 30 students times 6 notebooks would
pay it 180 times. The zygote pays it once: it imports the heavy modules (without running a
single tensor operation, and with one thread, so forking it is safe), then waits for requests
from the grader on a private control socket. For each job it forks a child that confines itself
(``rectifiers.grading._sandbox``) and becomes the submission's process. The zygote never runs
submission code itself.

Process tree of one job::

    zygote ── C1: new session; unshares namespaces when available
               └─ C2: PID 1 of the new PID namespace; makes the filesystem read-only
                   └─ W: limits, unprivileged, runs the notebook (rectifiers.grading._runner)

Without namespaces there is no C2: C1 forks W directly. The supervisor (C2, else C1) waits for
W, reports W's exit status on the job's status pipe, then ends, taking W's leftover processes with
it (the PID namespace ends with its PID 1; without one the supervisor kills its process group).

``Zygote`` is the grader's handle on this process. The functions marked ``pragma: no
cover`` run only in the zygote and its forks, whose coverage is not collected; the grading tests
exercise them end to end.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from . import _sandbox

_MESSAGE_BYTES = 1 << 20
_STATUS_SETUP_FAILED = 70


def _send(sock: socket.socket, message: Any, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[Any, list[int]]:
    if max_fds:
        data, fds, _, _ = socket.recv_fds(sock, _MESSAGE_BYTES, max_fds)
    else:
        data, fds = sock.recv(_MESSAGE_BYTES), []
    if not data:
        raise EOFError("control channel closed")
    return json.loads(data), list(fds)


# --------------------------------------------------------------------------------------------
# Zygote process side


def _preload(modules: list[str]) -> tuple[list[str], dict[str, str]]:
    loaded, failed = [], {}
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as error:  # noqa: BLE001 - a broken optional module must not stop grading
            failed[name] = f"{type(error).__name__}: {error}"[:300]
    return loaded, failed


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def _try_namespaces(  # pragma: no cover - zygote process only
    trial_dir: str, userns: bool
) -> tuple[bool, str]:
    """Try the full namespace set-up in a throw-away child; ``(works, reason)``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.setsid()
            uid, gid = os.getuid(), os.getgid()  # inside a new user namespace they read as unmapped
            _sandbox.unshare(_sandbox.JOB_NAMESPACES | (_sandbox.CLONE_NEWUSER if userns else 0))
            if userns:
                _sandbox.map_ids(uid, gid)
            inner = os.fork()
            if inner == 0:
                try:
                    _sandbox.isolate_filesystem(trial_dir, [], new_proc=True)
                    os._exit(0)
                except BaseException as error:  # noqa: BLE001
                    os.write(write_end, f"{type(error).__name__}: {error}".encode()[:500])
                    os._exit(1)
            _, status = os.waitpid(inner, 0)
            os._exit(_exit_code(status) & 0xFF)
        except BaseException as error:  # noqa: BLE001
            os.write(write_end, f"{type(error).__name__}: {error}".encode()[:500])
            os._exit(1)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    reason = os.read(read_end, 1000).decode(errors="replace")
    os.close(read_end)
    return _exit_code(status) == 0, reason or (
        "ok" if _exit_code(status) == 0 else f"status {status}"
    )


def _worker(  # pragma: no cover - zygote process only
    job: dict, sock_fd: int, out_fd: int, processes: int | None
) -> None:
    """The submission's process: confine, then hand over to the runner. Never returns."""
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.dup2(sock_fd, 3)
        os.closerange(4, 65536)
        os.chdir(job["workdir"])
        os.umask(0o077)
        os.environ.clear()
        os.environ.update(job["env"])
        _sandbox.apply_limits(
            job["memory_bytes"], job["file_bytes"], job["cpu_seconds"], job["open_files"], processes
        )
        if job["uid"] is not None:
            _sandbox.drop_privileges(job["uid"], job["gid"])
        elif job["namespaces"] and job["userns"]:
            _sandbox.drop_capabilities()
        _sandbox.set_no_new_privs()
        _sandbox.block_keyrings()
        _sandbox.set_parent_death_signal()
        # Exceeding the file-size limit then fails the write (EFBIG) instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        # Line by line, so that what it printed reaches the log even if it is killed.
        sys.stdout.reconfigure(line_buffering=True)
        from . import _runner
    except BaseException:  # noqa: BLE001
        os.write(2, f"sandbox set-up failed:\n{traceback.format_exc()}".encode(errors="replace"))
        os._exit(_STATUS_SETUP_FAILED)
    _runner.main(3)


def _job(  # pragma: no cover - zygote process only
    job: dict,
    ctl_fd: int,
    sock_fd: int,
    out_fd: int,
    status_fd: int,
    notebook_fd: int,
    cgroup_fd: int | None = None,
) -> None:
    """C1 (see the module docstring). Never returns."""
    try:
        os.close(ctl_fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _sandbox.set_parent_death_signal()
        os.setsid()
        if cgroup_fd is not None:
            # First, before anything forks: every process of the job is then under the cap.
            _sandbox.join_cgroup(cgroup_fd)
        processes = job["processes"]
        if job["uid"] is None and not (job["namespaces"] and job["userns"]):
            # Same uid, no user namespace: RLIMIT_NPROC counts all of the grader's own
            # processes, so add to them. (In a user namespace the count is the job's own.)
            processes += _sandbox.count_processes(os.getuid())
        if job["namespaces"]:
            _sandbox.unshare(
                _sandbox.JOB_NAMESPACES | (_sandbox.CLONE_NEWUSER if job["userns"] else 0)
            )
            if job["userns"]:
                _sandbox.map_ids(job["outer_uid"], job["outer_gid"])
            init = os.fork()
            if init:
                for fd in (sock_fd, out_fd, status_fd):
                    os.close(fd)
                os.waitpid(init, 0)
                os._exit(0)
            _sandbox.set_parent_death_signal()
            own = _sandbox.private_workdir(
                job["scratch"],
                job["workdir"],
                notebook_fd,
                job["notebook"],
                job["uid"],
                job["disk_bytes"],
                job["expose"],
            )
            _sandbox.isolate_filesystem(
                job["workdir"],
                job["hidden"],
                new_proc=True,
                expose=job["expose"] if job["uid"] is not None else [],
                writable=own,
            )
        else:
            os.close(notebook_fd)  # the grader wrote the working folder on the host
        worker = os.fork()
        if worker == 0:
            os.close(status_fd)
            _worker(job, sock_fd, out_fd, processes)
        os.close(sock_fd)
        os.close(out_fd)
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == worker:
                break
        os.write(status_fd, json.dumps({"exit": _exit_code(status)}).encode())
        os.close(status_fd)
        if not job["namespaces"]:
            os.killpg(0, signal.SIGKILL)
        os._exit(0)
    except BaseException as error:  # noqa: BLE001
        try:
            os.write(
                status_fd,
                json.dumps({"setup_error": f"{type(error).__name__}: {error}"[:500]}).encode(),
            )
        finally:
            os._exit(_STATUS_SETUP_FAILED)


def _sweep(uid: int, gid: int) -> None:  # pragma: no cover - zygote process only
    """Kill every process owned by ``uid`` (a job's dedicated uid), from a helper running as it."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            for _ in range(3):
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    break
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def main(ctl_fd: int) -> None:  # pragma: no cover - zygote process only
    """Zygote entry point (started by ``Zygote``)."""
    _sandbox.set_parent_death_signal()
    ctl = socket.socket(fileno=ctl_fd)
    config, _ = _receive(ctl)
    loaded, failed = _preload(config["preload"])
    if config["namespaces"]:
        namespaces, reason = _try_namespaces(config["trial_dir"], config["userns"])
    else:
        namespaces, reason = False, "disabled"
    _send(
        ctl,
        {
            "loaded": loaded,
            "failed": failed,
            "namespaces": namespaces,
            "namespace_reason": reason,
            "threads": len(os.listdir("/proc/self/task")),
        },
    )
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            request, fds = _receive(ctl, max_fds=5)
        except (EOFError, ConnectionError):
            break
        if request["op"] == "fork":
            pid = os.fork()
            if pid == 0:
                _job(request["job"], ctl_fd, *fds)
            for fd in fds:
                os.close(fd)
            _send(ctl, {"pid": pid})
        elif request["op"] == "sweep":
            _sweep(request["uid"], request["gid"])
            _send(ctl, {"ok": True})
        elif request["op"] == "release":
            # Reaped only now: until then its pid, which is also the job's process group id,
            # cannot be recycled, so the grader's kill of that group cannot hit another job.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(request["pid"], 0)
            _send(ctl, {"ok": True})
        else:
            break
    os._exit(0)


# --------------------------------------------------------------------------------------------
# Grader side


class ZygoteError(RuntimeError):
    """The zygote could not be started or stopped answering."""


class Zygote:
    """The grader's handle on a zygote process (thread-safe).

    Args:
        preload: modules to import before forking.
        env: the zygote's environment (jobs get their own).
        namespaces: try namespaces (the zygote tries them once in a throw-away child).
        userns: add a user namespace (when the grader is not root).
        trial_dir: an empty folder for that trial.
        wrapper: a command line that runs the zygote confined (bubblewrap's, see
            ``rectifiers.grading._jobs.bwrap_command``); empty: run it directly.
        start_timeout: seconds to wait for the imports.
    """

    def __init__(
        self,
        preload: list[str],
        env: dict[str, str],
        *,
        namespaces: bool,
        userns: bool,
        trial_dir: str,
        wrapper: list[str] = (),
        start_timeout: float = 300,
    ):
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        paths = [p for p in sys.path if p and os.path.isabs(p)]
        bootstrap = (
            "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
            "from rectifiers.grading._zygote import main; main(int(sys.argv[2]))"
        )
        self._lock = threading.Lock()
        self._sock = parent_end
        self.process = subprocess.Popen(
            [
                *wrapper,
                sys.executable,
                "-I",
                "-c",
                bootstrap,
                json.dumps(paths),
                str(child_end.fileno()),
            ],
            pass_fds=[child_end.fileno()],
            env=env,
            cwd=trial_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        child_end.close()
        started = time.monotonic()
        _send(
            self._sock,
            {
                "preload": preload,
                "namespaces": namespaces,
                "userns": userns,
                "trial_dir": trial_dir,
            },
        )
        self._sock.settimeout(start_timeout)
        try:
            self.hello, _ = _receive(self._sock)
        except (OSError, EOFError, ValueError) as error:
            self.close()
            raise ZygoteError(f"the grading zygote did not start: {error}") from None
        self._sock.settimeout(60)
        self.start_seconds = time.monotonic() - started

    def _request(self, message: dict, fds: list[int] = ()) -> dict:
        with self._lock:
            try:
                _send(self._sock, message, fds)
                reply, _ = _receive(self._sock)
            except (OSError, EOFError, ValueError) as error:
                raise ZygoteError(f"the grading zygote stopped answering: {error}") from None
        return reply

    def fork(
        self,
        job: dict,
        sock_fd: int,
        out_fd: int,
        status_fd: int,
        notebook_fd: int,
        cgroup_fd: int | None = None,
    ) -> int:
        """Start a job; returns C1's pid (also its process group id).

        ``notebook_fd`` reads the notebook to copy into the job's folder; ``cgroup_fd`` is the
        job's ``cgroup.procs`` file, open for writing, when its memory is capped by a cgroup.
        """
        fds = [sock_fd, out_fd, status_fd, notebook_fd]
        if cgroup_fd is not None:
            fds.append(cgroup_fd)
        return self._request({"op": "fork", "job": job}, fds)["pid"]

    def sweep(self, uid: int, gid: int) -> None:
        """Kill every process owned by ``uid``."""
        self._request({"op": "sweep", "uid": uid, "gid": gid})

    def release(self, pid: int) -> None:
        """Reap a job's first process once the grader has killed its process group."""
        self._request({"op": "release", "pid": pid})

    def close(self) -> None:
        """Stop the zygote (its jobs die with it)."""
        try:
            self._sock.close()
        finally:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
