"""An installation under /tmp stays importable inside the sandbox.

CI or an instructor may clone the project into /tmp, so the .venv lives there. The sandbox gives
the zygote an empty /tmp of its own and each job a private one; both must bind the
installation back on top rather than hide it (seen: every grading test failed with "the grading
zygote did not start" in a clone under /tmp).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from rectifiers.grading._isolation import bwrap_command


def _installation_under_tmp():
    folder = tempfile.mkdtemp(prefix="rectifiers-install-", dir="/tmp")
    with open(os.path.join(folder, "marker.txt"), "w", encoding="utf-8") as handle:
        handle.write("importable\n")
    return folder


def test_the_empty_tmp_is_mounted_before_the_installation_is_bound():
    folder = _installation_under_tmp()
    try:
        args = bwrap_command(False, "/tmp/scratch-x", "/tmp/scratch-x/trial", [folder])
        tmpfs = next(i for i in range(len(args) - 1) if args[i : i + 2] == ["--tmpfs", "/tmp"])
        bind = next(
            i for i in range(len(args) - 2) if args[i : i + 3] == ["--ro-bind"] + [folder] * 2
        )
        assert tmpfs < bind
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_an_installation_under_tmp_is_visible_and_read_only_in_the_view():
    folder = _installation_under_tmp()
    try:
        args = bwrap_command(os.geteuid() == 0, "/tmp/scratch-x", "/tmp/scratch-x", [folder])
        marker = os.path.join(folder, "marker.txt")
        script = f"cat {marker}; touch {folder}/new 2>/dev/null && echo WRITABLE || echo READONLY"
        done = subprocess.run(
            [*args, "/bin/sh", "-c", script], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0 and "No permissions" in done.stderr:
            pytest.skip(f"bubblewrap cannot run here: {done.stderr.strip()}")
        assert done.stdout.split() == ["importable", "READONLY"], (done.stdout, done.stderr)
    finally:
        shutil.rmtree(folder)
