"""The pieces of the sandboxed side, one by one: the runner's protocol, and each confinement step.

The runner is driven in-process over a socket pair. The confinement steps change the process
irreversibly, so each runs in a forked child that reports what it saw through a pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from rectifiers.grading import _runner, _sandbox, _zygote, public, wire
from rectifiers.grading.items import examples as ex

SOLUTION = (
    "import torch\ndef leaky_relu(x, negative_slope=0.01):\n"
    "    return torch.where(x > 0, x, negative_slope * x)"
)


@pytest.fixture
def runner(monkeypatch):
    """A runner serving in a thread; yields a function that exchanges messages with it."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setattr(public, "GRADING", False)  # serve() sets it; restored after the test
    parent, child = socket.socketpair()
    thread = threading.Thread(target=lambda: _serve_quietly(child.detach()), daemon=True)
    thread.start()
    channel = _runner.Channel(parent)
    yield channel
    parent.close()
    thread.join(10)
    InteractiveShell.clear_instance()


def _serve_quietly(fd):
    with contextlib.suppress(EOFError):
        _runner.serve(fd)


def test_runner_runs_cells_like_a_notebook_and_answers_probes(runner, capsys):
    cells = [
        [0, SOLUTION],
        [1, "1 / 0"],
        [2, "%time answer = 42"],
        [3, "def broken(:"],
        [4, "after = answer + 1"],
    ]
    runner.send({"cells": cells})
    messages = [runner.receive() for _ in range(6)]
    assert [m["index"] for m in messages[:5]] == [0, 1, 2, 3, 4]
    executed = messages[5]
    assert executed["type"] == "executed"
    assert [(e["index"], e["type"]) for e in executed["errors"]] == [
        (1, "ZeroDivisionError"),
        (3, "SyntaxError"),
    ]
    assert public.GRADING is True

    case = ex.LEAKY_RELU.public_cases()[0]
    runner.send({"type": "probe", "nonce": "n1", "request": ex.LEAKY_RELU.request(case)})
    reply = runner.receive()
    assert reply["type"] == "reply" and reply["nonce"] == "n1"
    assert ex.LEAKY_RELU.compare(
        wire.decode(reply["reply"]["output"]), ex.LEAKY_RELU.reference(case)
    ) == (True, "")

    runner.send(
        {
            "type": "probe",
            "nonce": "n2",
            "request": {**ex.LEAKY_RELU.request(case), "name": "after"},
        }
    )
    assert runner.receive()["reply"]["status"] == "error"  # `after` is 43, not a function

    huge = {
        "mode": "value",
        "name": "big",
        "args": [],
        "kwargs": {"$dict": []},
        "inputs": {"$tuple": []},
    }
    runner.send({"type": "probe", "nonce": "n3", "request": {**huge, "name": "answer"}})
    assert runner.receive()["reply"] == {"status": "ok", "output": 42}
    runner.send(
        {"type": "probe", "nonce": "n4", "request": {"name": "answer"}}
    )  # malformed request
    assert runner.receive()["reply"]["type"] == "KeyError"
    runner.send({"type": "bye"})


def test_runner_ends_on_anything_but_a_probe(runner):
    runner.send({"cells": []})
    assert runner.receive() == {"type": "executed", "errors": []}
    runner.send({"type": "something else"})
    with pytest.raises(EOFError):
        runner.receive()


# --------------------------------------------------------------------------------------------
# Confinement steps, each in a forked child


def _in_child(step) -> dict:
    """Run ``step()`` (returning a JSON-able dict) in a forked child; return what it returned."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            result = step()
        except BaseException as error:  # noqa: BLE001
            result = {"error": f"{type(error).__name__}: {error}"}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def test_apply_limits():
    def step():
        _sandbox.apply_limits(2048 * 2**20, 2**20, 30, 64, 50)
        names = (
            "RLIMIT_AS",
            "RLIMIT_CORE",
            "RLIMIT_FSIZE",
            "RLIMIT_NOFILE",
            "RLIMIT_NPROC",
            "RLIMIT_CPU",
        )
        limits = {name: resource.getrlimit(getattr(resource, name)) for name in names}
        try:
            bytearray(3 * 2**30)
            limits["alloc"] = "allowed"
        except MemoryError:
            limits["alloc"] = "MemoryError"
        return limits

    limits = _in_child(step)
    assert limits["RLIMIT_AS"] == [2048 * 2**20] * 2 and limits["RLIMIT_CORE"] == [0, 0]
    assert limits["RLIMIT_FSIZE"] == [2**20] * 2 and limits["RLIMIT_NOFILE"] == [64, 64]
    assert limits["RLIMIT_NPROC"] == [50, 50] and limits["RLIMIT_CPU"] == [30, 35]
    assert limits["alloc"] == "MemoryError"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_drop_privileges_is_irreversible():
    def step():
        _sandbox.drop_privileges(61999, 61999)
        _sandbox.set_no_new_privs()
        try:
            os.setuid(0)
            regained = True
        except PermissionError:
            regained = False
        return {
            "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()],
            "regained": regained,
        }

    assert _in_child(step) == {"ids": [61999, 61999, 61999, []], "regained": False}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_isolate_filesystem_leaves_only_the_workdir_writable():
    base = tempfile.mkdtemp(prefix="isolate-")
    workdir, hidden, other = (os.path.join(base, name) for name in ("work", "hidden", "other"))
    for folder in (workdir, hidden, other):
        os.mkdir(folder)
    with open(os.path.join(hidden, "secret"), "w") as handle:
        handle.write("x")

    def step():
        _sandbox.unshare(_sandbox.JOB_NAMESPACES)
        child = os.fork()
        if child == 0:
            _sandbox.isolate_filesystem(workdir, [hidden], new_proc=True, expose=[])
            seen = {
                "hidden": os.listdir(hidden),
                "pids": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            }
            for name, folder in (("work", workdir), ("other", other)):
                try:
                    with open(os.path.join(folder, "f"), "w") as handle:
                        handle.write("x")
                    seen[name] = "written"
                except OSError as error:
                    seen[name] = error.strerror
            with open(os.path.join(workdir, "seen.json"), "w") as handle:
                json.dump(seen, handle)
            os._exit(0)
        os.waitpid(child, 0)
        with open(os.path.join(workdir, "seen.json")) as handle:
            return json.load(handle)

    try:
        seen = _in_child(step)
        assert seen.get("work") == "written", seen
        assert seen["other"] == "Read-only file system" and seen["hidden"] == []
        assert seen["pids"] == ["1"]  # only itself in the new PID namespace
        assert os.listdir(hidden) == ["secret"] and not os.path.exists(os.path.join(other, "f"))
    finally:
        import shutil

        shutil.rmtree(base)


def test_closed_ancestor():
    base = tempfile.mkdtemp(prefix="ancestor-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        closed = os.path.join(base, "closed")
        os.makedirs(os.path.join(closed, "inner"))
        os.chmod(closed, 0o700)
        assert _sandbox.closed_ancestor(os.path.join(closed, "inner")) == closed
        os.chmod(closed, 0o711)  # passable, though not listable
        assert _sandbox.closed_ancestor(os.path.join(closed, "inner")) is None
        assert _sandbox.closed_ancestor("/no/such/path") is None
    finally:
        os.chmod(base, 0o700)
        import shutil

        shutil.rmtree(base)


def test_count_processes():
    assert _sandbox.count_processes(os.getuid()) >= 1
    assert _sandbox.count_processes(61998) == 0


# --------------------------------------------------------------------------------------------
# Zygote helpers


def test_preload_reports_failures():
    loaded, failed = _zygote._preload(["json", "no_such_module_xyz"])
    assert loaded == ["json"] and set(failed) == {"no_such_module_xyz"}
    assert "ModuleNotFoundError" in failed["no_such_module_xyz"]


def test_exit_code():
    assert _zygote._exit_code(256 * 5) == 5 and _zygote._exit_code(9) == -9


def test_messages_with_file_descriptors():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    _zygote._send(a, {"op": "x"}, [w])
    message, fds = _zygote._receive(b, max_fds=1)
    assert message == {"op": "x"} and len(fds) == 1
    os.write(fds[0], b"through")
    assert os.read(r, 10) == b"through"
    for fd in (r, w, *fds):
        os.close(fd)
    a.close()
    with pytest.raises(EOFError):
        _zygote._receive(b)
    b.close()


# --------------------------------------------------------------------------------------------
# Keyrings, clean-up, bubblewrap's view, memory cgroups, terminal text


def test_keyring_filter_refuses_exactly_the_three_keyring_calls():
    x86 = _sandbox.keyring_filter("x86_64")
    assert x86[1] == (0x15, 1, 0, 0xC000003E)  # another architecture: straight to ``deny``
    assert x86[4] == (0x45, 4, 0, 0x40000000)  # the x32 ABI bit
    assert [k for code, _, _, k in x86 if code == 0x15][1:] == [248, 249, 250]
    assert x86[-2:] == [(0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, 0x00050001)]
    arm = _sandbox.keyring_filter("aarch64")
    assert [k for code, _, _, k in arm if code == 0x15][1:] == [217, 218, 219]
    for program in (x86, arm):  # every jump lands on the final ``deny``
        for index, (_, jt, _, _) in enumerate(program[4:-2], start=4):
            assert index + 1 + jt == len(program) - 1


def test_block_keyrings_makes_add_key_fail_and_leaves_the_rest():
    def step():
        import ctypes

        _sandbox.set_no_new_privs()
        _sandbox.block_keyrings()
        libc = ctypes.CDLL(None, use_errno=True)
        number = {"x86_64": 248, "aarch64": 217}[os.uname().machine]
        key = libc.syscall(number, b"user", b"probe-key", b"x", 1, -4)
        return {"key": key, "errno": ctypes.get_errno(), "pid": os.getpid() > 0}

    assert _in_child(step) == {"key": -1, "errno": 1, "pid": True}


def test_remove_tree_never_follows_links_and_reports_instead_of_raising(tmp_path):
    from rectifiers.grading._isolation import _remove_tree

    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    outside.chmod(0o600)
    tree = tmp_path / "tree"
    (tree / "ro" / "inner").mkdir(parents=True)
    (tree / "ro" / "link").symlink_to(outside)
    (tree / "ro" / "inner" / "dirlink").symlink_to(tmp_path)
    (tree / "closed" / "x").mkdir(parents=True)
    deep = tree / "deep"
    deep.mkdir()
    here = os.getcwd()
    try:
        os.chdir(deep)
        for _ in range(1200):  # deeper than the recursion limit of a recursive walk
            os.mkdir("d")
            os.chdir("d")
    finally:
        os.chdir(here)
    (tree / "ro" / "inner").chmod(0o500)
    (tree / "ro").chmod(0o500)
    (tree / "closed").chmod(0)
    assert _remove_tree(str(tree)) == []
    assert not tree.exists() and outside.read_text() == "keep"
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600 and tmp_path.exists()
    assert _remove_tree(str(tmp_path / "absent")) == []
    assert _remove_tree("/proc/self/no/such") != []


def test_bwrap_command_binds_only_what_jobs_need():
    from rectifiers.grading._isolation import _zygote_paths, bwrap_command

    paths = _zygote_paths()
    command = bwrap_command(False, "/tmp/scratch", "/tmp/scratch/trial", paths, "bwrap")
    binds = [command[i + 1] for i, arg in enumerate(command) if arg == "--ro-bind"]
    assert "--unshare-user" in command and "--unshare-net" in command and command[-1] == "--"
    assert os.path.expanduser("~") not in binds and "/" not in binds and "/tmp" not in binds
    assert all(path.startswith(tuple(binds)) for path in paths)
    assert "--cap-add" in bwrap_command(True, "/s", "/s/t", [], "bwrap")


def test_memory_cgroups_cap_create_and_remove():
    from rectifiers.grading._cgroup import MemoryCgroups

    cgroups = MemoryCgroups(512 * 2**20)
    if cgroups.mode is None:
        assert cgroups.reason  # says why there is none
        return
    path, fd = cgroups.create()
    try:
        limit = "memory.max" if cgroups.mode == "cgroup-v2" else "memory.limit_in_bytes"
        with open(os.path.join(path, limit)) as handle:
            assert int(handle.read()) == 512 * 2**20
        assert cgroups.oom_kills(path) == 0
    finally:
        os.close(fd)
    cgroups.remove(path)
    assert not os.path.exists(path)
    cgroups.close()
    assert cgroups.base is None


def test_terminal_text_is_neutralised():
    from rectifiers.grading._text import clean_line, neutralise

    raw = "ok\x1b]0;t\x07\x1b[2J\x9b31m\u202eevil\ttab\n".encode()
    shown = neutralise(raw).decode()
    assert "\x1b" not in shown and "\x9b" not in shown and "\u202e" not in shown
    assert shown.endswith("\\u202eevil\ttab\n") and "\\x1b[2J" in shown
    assert clean_line("a\x1bb\n c", 10) == "a b c"


def test_memory_cgroups_detect_v2_and_report_why_there_is_none(tmp_path, monkeypatch):
    from rectifiers.grading import _cgroup

    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(_cgroup, "_mounts", lambda: [("/", str(tmp_path), "cgroup2", "rw")])
    monkeypatch.setattr(_cgroup, "_own_paths", lambda: {"0": "/"})

    def write(path, text):  # a plain folder has no interface files: create them (but cgroup.kill)
        if not path.endswith("cgroup.kill"):
            Path(path).write_text(text)

    monkeypatch.setattr(_cgroup, "_write", write)
    cgroups = _cgroup.MemoryCgroups(2**30)
    assert cgroups.mode == "cgroup-v2" and cgroups.base.startswith(str(tmp_path))
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory"
    job = tmp_path / "job"
    job.mkdir()
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
    assert cgroups.oom_kills(str(job)) == 2 and cgroups.oom_kills(str(tmp_path / "no")) == 0
    (job / "memory.events").unlink()
    cgroups.remove(str(job))
    assert not job.exists()
    cgroups.close()
    assert cgroups.base is None

    monkeypatch.setattr(_cgroup, "_mounts", lambda: [])
    none = _cgroup.MemoryCgroups(2**30)
    assert none.mode is None and "no cgroup v2" in none.reason and "no cgroup v1" in none.reason


def test_bubblewrap_that_cannot_run_is_reported():
    from rectifiers.grading._isolation import _bwrap_works

    assert _bwrap_works(["false"]).startswith("bubblewrap failed")
    assert "did not run" in _bwrap_works(["/no/such/bwrap"])


def test_a_failure_while_handling_a_submission_becomes_its_error_rows():
    from rectifiers.grading.engine import Grader
    from rectifiers.grading.items import EXAMPLES

    result = Grader(dict(EXAMPLES))._failed("eve", "00_examples", RuntimeError("odd\x1b[2J"))
    assert {row.status for row in result.rows} == {"error"}
    detail = result.rows[0].detail
    assert "could not handle this submission (RuntimeError: odd [2J)" in detail
