"""The child-process plumbing of grading: the sandboxes the children run in.

``JobPool`` owns what the grading policy (``rectifiers.grading.engine``) runs submissions in:
the scratch folder, the pre-forked zygote (``rectifiers.grading._zygote``), one dedicated uid per
slot when the grader is root, and the job description each sandboxed child is forked with.
``Child`` (``rectifiers.grading._child``) is the grader's end of one such child. Nothing here
decides a grade.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sys
import tempfile
import threading
from typing import Any

from ._child import LARGE_FRAME_SLOTS, _CappedOutput
from ._isolation import IsolationError as IsolationError
from ._isolation import _bwrap_works, _remove_tree, _zygote_paths, bwrap_command
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


def _search_path() -> str:
    return os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])


def _matplotlib_cache(folder: str) -> str:
    """``folder``, holding a copy of the instructor's matplotlib font list if there is one.

    The zygote cannot see the instructor's home; without the list matplotlib would rebuild it
    (seconds of font scanning) every time a grader starts.
    """
    os.mkdir(folder, 0o700)
    home = os.path.expanduser("~")
    for cache in (
        os.environ.get("MPLCONFIGDIR", ""),
        os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.join(home, ".cache")), "matplotlib"),
    ):
        try:
            names = [n for n in os.listdir(cache) if n.startswith("fontlist-")]
        except OSError:
            continue
        for name in names:
            with contextlib.suppress(OSError):
                shutil.copyfile(os.path.join(cache, name), os.path.join(folder, name))
        if names:
            break
    return folder


def _course_modules() -> list[str]:
    import pkgutil

    import rectifiers

    return [
        f"rectifiers.{info.name}"
        for info in pkgutil.iter_modules(rectifiers.__path__)
        if not info.name.startswith("_") and info.name != "grading"
    ]


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
        try:
            self._start()
        except BaseException:
            self.close()  # no zygote or scratch folder left behind
            raise

    def _start(self) -> None:
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
            "MPLCONFIGDIR": _matplotlib_cache(os.path.join(self.scratch, ".matplotlib")),
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
