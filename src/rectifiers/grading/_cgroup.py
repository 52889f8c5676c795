"""One memory cgroup per job, so that the cap holds for a notebook's whole process tree.

A per-process address-space limit lets a notebook that forks hold processes x cap. A memory
cgroup counts every process of the job together (and the pages of its tmpfs), and the kernel's
OOM killer then picks inside the job, never the grader. The grader creates the cgroups under
its own one: cgroup v2 where the memory controller can be delegated there, else the v1 memory
hierarchy; where neither is writable (not root, no delegated systemd scope) ``MemoryCgroups``
says so and the grader falls back on a process-count limit (see ``JobPool``).

There is no maintained Python binding for the cgroup files that is smaller than these few
reads and writes, so they are done here by hand; each one is a documented interface file
(``Documentation/admin-guide/cgroup-v2.rst`` and ``cgroup-v1/memory.rst``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time


def _mounts() -> list[tuple[str, str, str, str]]:
    """``(root, mount point, fstype, super options)`` of every mount, from ``mountinfo``."""
    mounts = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 3:
                mounts.append((fields[3], fields[4], tail[0], tail[2]))
    return mounts


def _own_paths() -> dict[str, str]:
    """This process's cgroup per hierarchy: ``"0"`` (v2) or the v1 controller list."""
    paths = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            paths["0" if number == "0" and not controllers else controllers] = path
    return paths


def _write(path: str, text: str) -> None:
    """Write an existing interface file (never create one: a missing file is an error)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _inside(mount_root: str, mount_point: str, path: str) -> str:
    relative = os.path.relpath(path, mount_root) if mount_root != "/" else path.lstrip("/")
    return os.path.normpath(os.path.join(mount_point, relative))


class MemoryCgroups:
    """Creates, caps, empties and removes the jobs' memory cgroups.

    Args:
        limit_bytes: the memory cap of each job (swap is capped to nothing beyond it).

    Attributes:
        mode: ``"cgroup-v2"``, ``"cgroup-v1"`` or ``None`` (no writable memory cgroup).
        reason: why ``mode`` is ``None``.
    """

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.mode: str | None = None
        self.reason = ""
        self.base: str | None = None
        self._count = 0
        try:
            mounts, own = _mounts(), _own_paths()
        except OSError as error:
            self.reason = f"cannot read /proc ({error.strerror})"
            return
        reasons = []
        for attempt in (self._try_v2, self._try_v1):
            try:
                attempt(mounts, own)
                return
            except (OSError, LookupError, ValueError) as error:
                reasons.append(str(error))
                self._remove_base()
        self.reason = "; ".join(reasons)

    def _try_v2(self, mounts: list, own: dict) -> None:
        found = [(r, p) for r, p, fstype, _ in mounts if fstype == "cgroup2"]
        if not found or "0" not in own:
            raise LookupError("no cgroup v2 hierarchy")
        parent = _inside(*found[0], own["0"])
        with open(os.path.join(parent, "cgroup.controllers")) as handle:
            if "memory" not in handle.read().split():
                raise LookupError("cgroup v2 has no memory controller here")
        self.base = os.path.join(parent, f"grade-exercises-{os.getpid()}")
        os.mkdir(self.base, 0o755)
        self.mode = "cgroup-v2"
        try:
            # Needs a parent without processes of its own (or the root): else EBUSY.
            _write(os.path.join(parent, "cgroup.subtree_control"), "+memory")
            _write(os.path.join(self.base, "cgroup.subtree_control"), "+memory")
        except OSError as error:
            self.mode = None
            raise OSError(f"cgroup v2 memory controller not delegable ({error.strerror})") from None

    def _try_v1(self, mounts: list, own: dict) -> None:
        found = [
            (r, p)
            for r, p, fstype, options in mounts
            if fstype == "cgroup" and "memory" in options.split(",")
        ]
        key = next((k for k in own if "memory" in k.split(",")), None)
        if not found or key is None:
            raise LookupError("no cgroup v1 memory hierarchy")
        self.base = os.path.join(_inside(*found[0], own[key]), f"grade-exercises-{os.getpid()}")
        try:
            os.mkdir(self.base, 0o755)
        except OSError as error:
            self.base = None
            raise OSError(f"cgroup v1 memory hierarchy not writable ({error.strerror})") from None
        self.mode = "cgroup-v1"

    def create(self) -> tuple[str, int]:
        """A new capped cgroup: ``(path, fd of its cgroup.procs open for writing)``."""
        self._count += 1
        path = os.path.join(self.base, f"job{self._count}")
        os.mkdir(path, 0o755)
        if self.mode == "cgroup-v2":
            _write(os.path.join(path, "memory.max"), str(self.limit))
            with contextlib.suppress(FileNotFoundError):
                _write(os.path.join(path, "memory.swap.max"), "0")
        else:
            _write(os.path.join(path, "memory.limit_in_bytes"), str(self.limit))
            with contextlib.suppress(FileNotFoundError, PermissionError, OSError):
                _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(self.limit))
        return path, os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def oom_kills(self, path: str) -> int:
        """How many processes of the cgroup the OOM killer ended."""
        name = "memory.events" if self.mode == "cgroup-v2" else "memory.oom_control"
        try:
            with open(os.path.join(path, name)) as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self, path: str) -> None:
        """Kill whatever is left in the cgroup, then remove it (never raises)."""
        with contextlib.suppress(OSError):
            _write(os.path.join(path, "cgroup.kill"), "1")  # v2, Linux 5.14+
        for _ in range(100):
            try:
                with open(os.path.join(path, "cgroup.procs")) as handle:
                    pids = [int(p) for p in handle.read().split()]
            except (OSError, ValueError):
                pids = []
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)

    def _remove_base(self) -> None:
        if self.base is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.base)
            self.base = None

    def close(self) -> None:
        """Remove every cgroup this object created."""
        if self.base is None:
            return
        with contextlib.suppress(OSError):
            for name in os.listdir(self.base):
                if name.startswith("job"):
                    self.remove(os.path.join(self.base, name))
        self._remove_base()
