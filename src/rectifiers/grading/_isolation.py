"""What the sandbox is built from on the host: the bubblewrap view, and removing what a job left.

``bwrap_command`` is the command line of bubblewrap (Debian's ``bubblewrap``, a maintained
setuid-free sandbox tool built on user namespaces) that runs the grading zygote, and so every
job it forks, in a view of the file system holding only what a job needs. ``_remove_tree`` removes
a job's folder without ever following a link the submission planted.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from ._text import clean_line as _clean


def _remove_tree(path: str) -> list[str]:
    """Remove a scratch tree the submission may have made hard to delete; never follows a link.

    Folders are entered only through ``O_NOFOLLOW | O_DIRECTORY`` descriptors and given back
    their permissions through an ``O_PATH`` descriptor of that very folder, so a symbolic link
    planted inside is removed as a link and nothing outside the tree is ever changed. Iterative
    (a very deep tree cannot exhaust the stack). Returns what could not be removed, with the
    reason, instead of raising: a clean-up problem must never stop the batch.
    ``shutil.rmtree`` is not enough here: its error handler would chmod through links, it
    recurses, and it cannot enter a folder of mode 0 as a non-root user.
    """
    problems: list[str] = []
    parent, name = os.path.split(os.path.abspath(path))
    try:
        top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        return [f"{path}: {error.strerror}"]
    # Frames: (folder descriptor, entry names left to remove, its name, its parent's descriptor).
    stack: list[tuple[int, list[str], str, int]] = []
    try:
        if not _remove_entry(top, name, stack, problems):
            return problems
        while stack:
            fd, names, dirname, parent_fd = stack[-1]
            if names:
                _remove_entry(fd, names.pop(), stack, problems)
                continue
            stack.pop()
            os.close(fd)
            try:
                os.rmdir(dirname, dir_fd=parent_fd)
            except OSError as error:
                problems.append(f"{dirname}: {error.strerror}")
    finally:
        for fd, *_ in stack:
            os.close(fd)
        os.close(top)
    return problems


def _remove_entry(parent_fd: int, name: str, stack: list, problems: list[str]) -> bool:
    """Unlink ``name`` or, for a real folder, open it and push it on ``stack``."""
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as error:
        problems.append(f"{name}: {error.strerror}")
        return False
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(name, dir_fd=parent_fd)
        except OSError as error:
            problems.append(f"{name}: {error.strerror}")
        return False
    flags = os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        handle = os.open(name, flags | os.O_PATH, dir_fd=parent_fd)
        try:
            # chmod through the O_PATH descriptor's /proc entry: the folder itself, never a link.
            os.chmod(f"/proc/self/fd/{handle}", stat.S_IRWXU)
        finally:
            os.close(handle)
        fd = os.open(name, flags | os.O_RDONLY, dir_fd=parent_fd)
    except OSError as error:
        problems.append(f"{name}: {error.strerror}")
        return False
    try:
        names = os.listdir(fd)
    except OSError as error:
        os.close(fd)
        problems.append(f"{name}: {error.strerror}")
        return False
    stack.append((fd, names, name, parent_fd))
    return True


class IsolationError(RuntimeError):
    """No sandbox as strong as required here, and weaker isolation was not accepted."""


def bwrap_command(
    is_root: bool, scratch: str, trial_dir: str, paths: list[str], program: str = "bwrap"
) -> list[str]:
    """The bubblewrap command line that runs the zygote (and so every job) in its own view.

    The view holds only what a job needs: the system folders read-only (``/usr``, ``/etc``,
    ``/lib*``...), the Python installation and the package read-only, a fresh ``/dev``,
    ``/proc`` and empty ``/tmp``, and the scratch folder's path (each job covers it with a
    tmpfs of its own). Everything else, the instructor's home, the submissions, the output
    folder, the grader's scratch files, and every Unix socket outside those read-only folders,
    is simply not there. No network, IPC or hostname is shared. As root it keeps its
    capabilities (jobs still drop to a dedicated uid); otherwise it runs in a user namespace.
    """
    args = [program, "--die-with-parent", "--unshare-ipc", "--unshare-net", "--unshare-uts"]
    args += ["--cap-add", "ALL"] if is_root else ["--unshare-user"]
    # The fresh /dev, /proc and /tmp first: bubblewrap mounts in order, so an installation that
    # lives under /tmp (a clone in /tmp/x with its .venv) is bound on top of the empty /tmp
    # instead of being hidden by it.
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    bound: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
            bound.append(top)
    for path in sorted(set(paths)):
        if os.path.isdir(path) and not any(
            path == b or path.startswith(b.rstrip("/") + "/") for b in bound
        ):
            args += ["--ro-bind", path, path]
            bound.append(path)
    args += ["--dir", scratch, "--dir", trial_dir, "--chdir", trial_dir, "--"]
    return args


def _zygote_paths() -> list[str]:
    """What the zygote imports from: the installation prefixes, site folders and the package.

    Not every ``sys.path`` entry: the current folder or a test folder may hold submissions.
    """
    import rectifiers

    prefixes = [
        os.path.realpath(p)
        for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    ]
    paths = set(prefixes)
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(rectifiers.__file__))))
    for entry in sys.path:
        real = os.path.realpath(entry) if entry and os.path.isabs(entry) else None
        if (
            real
            and os.path.isdir(real)
            and (
                os.path.basename(real) in ("site-packages", "dist-packages")
                or any(real.startswith(p.rstrip("/") + "/") for p in prefixes)
            )
        ):
            paths.add(real)
    return sorted(paths)


def _bwrap_works(command: list[str]) -> str | None:
    """``None`` if bubblewrap runs ``true`` with ``command``'s options, else the reason."""
    try:
        done = subprocess.run(
            [*command, "/bin/true"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap did not run ({error})"
    if done.returncode != 0:
        return "bubblewrap failed: " + _clean(done.stderr.decode(errors="replace"), 200)
    return None
