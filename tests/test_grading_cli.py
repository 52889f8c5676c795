"""``grade-exercises`` end to end, its usage errors, its output files, and the non-root sandbox."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rectifiers.grading import cli, report
from rectifiers.grading import notebook as nbread
from rectifiers.grading.engine import (
    Grader,
    Row,
    SubmissionResult,
    _derive_seed,
    discover_students,
    skipped_entries,
)

REPO = Path(__file__).resolve().parents[1]
SOLVED = REPO / "tests" / "fixtures" / "grading" / "solutions" / "00_examples.ipynb"
SCRIPT = Path(sys.executable).with_name("grade-exercises")
EXAMPLES_ONLY = ["--include-examples", "--notebooks", "00_examples"]


# --------------------------------------------------------------------------------------------
# Usage errors: exit status 2 and a message naming the problem


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "--out", "{out}"], "is not an existing folder"),
        (["{subs}", "--out", "{subs}/grades"], "must not be inside SUBMISSIONS_DIR"),
        (["{subs}", "--out", "{file}"], "exists and is not a folder"),
        (["{subs}", "--out", "{out}", "--timeout", "0"], "--timeout must be between"),
        (["{subs}", "--out", "{out}", "--jobs", "0"], "--jobs must be between"),
        (
            ["{subs}", "--out", "{out}", "--memory-mb", "8192"],
            "--memory-mb must be between 512 and 4096",
        ),
        (["{subs}", "--out", "{out}", "--seed", "-1"], "--seed must be non-negative"),
        (
            ["{subs}", "--out", "{out}", "--include-examples", "--notebooks", "99_nope"],
            "unknown notebook",
        ),
        (["{subs}"], "--out"),
    ],
)
def test_usage_errors(tmp_path, capsys, args, message):
    (tmp_path / "subs").mkdir()
    (tmp_path / "file").write_text("x")
    paths = {
        "missing": tmp_path / "missing",
        "subs": tmp_path / "subs",
        "out": tmp_path / "out",
        "file": tmp_path / "file",
    }
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a.format(**paths) for a in args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_registered_notebooks_is_a_usage_error(tmp_path, capsys, monkeypatch):
    import rectifiers.grading.items as items

    monkeypatch.setattr(items, "REGISTRY", {})
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(tmp_path), "--out", str(tmp_path.parent / "out-none")])
    assert (
        exit_info.value.code == 2
        and "no exercise notebooks are registered" in capsys.readouterr().err
    )


def test_grader_arguments_are_checked():
    with pytest.raises(TypeError, match="registry must map"):
        Grader([])
    for kwargs, message in (
        ({"timeout": 0}, "timeout must be positive"),
        ({"jobs": 0}, "jobs must be positive"),
        ({"jobs": 65}, "jobs must be at most 64"),
        ({"memory_mb": 5000}, "memory_mb must be between 512 and 4096"),
        ({"call_timeout": -1}, "call_timeout must be positive"),
        ({"seed": -3}, "seed must be non-negative"),
    ):
        with pytest.raises(ValueError, match=message):
            Grader({}, **kwargs)
    with pytest.raises(TypeError, match="timeout must be a real number"):
        Grader({}, timeout="60")


# --------------------------------------------------------------------------------------------
# The console script on a small class


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    subs = base / "subs"
    for student in ("alice", "=HYPERLINK(1)", "bob"):
        (subs / student).mkdir(parents=True)
    shutil.copy(SOLVED, subs / "alice" / "00_examples.ipynb")
    shutil.copy(SOLVED, subs / "=HYPERLINK(1)" / "00_examples.ipynb")
    (subs / "notes.txt").write_text("not a student")
    args = [
        str(subs),
        "--out",
        str(base / "out"),
        "--include-examples",
        "--notebooks",
        "00_examples",
    ]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = cli.main(args + ["--jobs", "2", "--seed", "7"])
    return {"status": status, "stderr": stderr.getvalue(), "out": base / "out"}


def test_cli_exits_zero_and_reports(cli_run):
    assert cli_run["status"] == 0, cli_run["stderr"]
    assert "graded 3 notebooks of 3 students" in cli_run["stderr"]
    assert "skipping notes.txt (not a folder)" in cli_run["stderr"]
    assert "\r" not in cli_run["stderr"]  # no progress bar when stderr is not a terminal


def test_console_script_is_installed_and_reports_usage_errors(tmp_path):
    run = subprocess.run(
        [str(SCRIPT), str(tmp_path / "absent"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "is not an existing folder" in run.stderr


def test_an_internal_failure_exits_one_with_a_message(tmp_path, capsys, monkeypatch):
    from rectifiers.grading import engine

    def broken_start(self):
        raise RuntimeError("zygote could not start")

    monkeypatch.setattr(engine.Grader, "start", broken_start)
    (tmp_path / "subs").mkdir()
    status = cli.main(
        [str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--include-examples"]
    )
    assert status == 1 and "error: RuntimeError: zygote could not start" in capsys.readouterr().err


def test_cli_outputs(cli_run):
    out = cli_run["out"]
    with open(out / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(report.COLUMNS)
    by_student = {}
    for row in rows:
        by_student.setdefault(row["student"], []).append(row)
    assert set(by_student) == {"alice", "'=HYPERLINK(1)", "bob"}  # a formula is not left live
    assert sum(float(r["points"]) for r in by_student["alice"]) == 8
    assert {r["status"] for r in by_student["bob"]} == {"missing"}
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == ",".join(report.SUMMARY_COLUMNS)
    assert "alice,8,10,2," in summary and "bob,0,10,0,00_examples" in summary
    run = json.loads((out / "run.json").read_text())
    assert run["students"] == 3 and run["jobs"] == 2 and run["seed"] == 7
    assert run["seconds_per_notebook"] is not None
    assert sorted(p.name for p in (out / "results").iterdir()) == sorted(
        [report.safe_name("=HYPERLINK(1)"), "alice", "bob"]
    )
    assert report.safe_name("=HYPERLINK(1)").startswith("_HYPERLINK_1_-")


def test_seed_reproduces_hidden_inputs(cli_run):
    # The seed is the instructor's (records/); the student's results JSON does not carry it.
    record = cli_run["out"] / "records" / "alice" / "00_examples.json"
    recorded = json.loads(record.read_text())["seed"]
    student_json = (cli_run["out"] / "results" / "alice" / "00_examples.json").read_text()
    assert '"seed"' not in student_json
    assert recorded == _derive_seed(7, "alice", "00_examples")
    assert (
        _derive_seed(7, "bob", "00_examples") != recorded
        and _derive_seed(8, "alice", "00_examples") != recorded
    )
    # Without --seed every submission gets a fresh secret seed.
    assert len({Grader({})._fresh_seed("alice", "00_examples") for _ in range(5)}) == 5


# --------------------------------------------------------------------------------------------
# Output files


def _result(student, rows):
    return SubmissionResult(
        student, "01_x", [Row(student, "01_x", *row) for row in rows], seconds=1.25, seed=3
    )


def test_report_files_and_what_they_keep(tmp_path):
    (tmp_path / "results" / "ghost").mkdir(parents=True)
    results = [
        _result("ann", [("a", 2, 2, "passed", "ok"), ("b", 0, 3, "manual", "answer: =SUM(A1)")]),
        _result("ben", [("a", 0, 2, "missing", "x"), ("b", 0, 3, "missing", "x")]),
    ]
    report.write(str(tmp_path), results, {"k": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "canvas.csv",
        "feedback",
        "grades.csv",
        "records",
        "results",
        "run.json",
        "summary.csv",
    ]
    assert (tmp_path / "results" / "ghost").exists()  # a grade book never deletes what it holds
    assert not list(tmp_path.glob(".tmp-*"))  # every file was renamed into place
    grades = (tmp_path / "grades.csv").read_text()
    assert "answer: =SUM(A1)" in grades  # not at the start of the field: left as is
    assert (tmp_path / "summary.csv").read_text().splitlines()[1:] == [
        "ann,2,5,3,",
        "ben,0,5,0,01_x",
    ]
    gradescope = json.loads((tmp_path / "results" / "ann" / "01_x.json").read_text())
    assert gradescope["score"] == 2 and gradescope["execution_time"] == 1.25
    assert gradescope["tests"][1] == {
        "name": "a",
        "score": 2,
        "max_score": 2,
        "output": "",
        "status": "passed",
        "visibility": "after_due_date",
    }
    assert gradescope["tests"][2]["name"] == "b (written answer)"
    assert "status" not in gradescope["tests"][2]
    assert "3 points are marked by hand later" in gradescope["output"]
    assert oct(stat.S_IMODE((tmp_path / "grades.csv").stat().st_mode)) == "0o644"
    run = json.loads((tmp_path / "run.json").read_text())
    assert run == {"k": 1, "warnings": []}


def test_csv_cells_and_folder_names():
    assert (
        report._cell("=1+1") == "'=1+1"
        and report._cell("-2") == "'-2"
        and report._cell("a\nb") == "a b"
    )
    assert report.safe_name("alice") == "alice"
    for name in ("../etc", ".hidden", "a/b", "é", ""):
        safe = report.safe_name(name)
        assert "/" not in safe and not safe.startswith(".") and safe
    assert report.safe_name("a b") != report.safe_name("a_b")


# --------------------------------------------------------------------------------------------
# Reading submissions


def test_student_discovery(tmp_path):
    for name in ("b", "a", ".git"):
        (tmp_path / name).mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "file.txt").write_text("")
    assert discover_students(str(tmp_path)) == ["a", "b"]
    assert skipped_entries(str(tmp_path)) == [
        "file.txt (not a folder)",
        "link (symbolic link, not followed)",
    ]


def test_read_file_in_refuses_links_fifos_folders_and_large_files(tmp_path):
    (tmp_path / "ok.ipynb").write_bytes(b"x" * 10)
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "ok.ipynb")
    os.mkfifo(tmp_path / "fifo.ipynb")
    (tmp_path / "dir.ipynb").mkdir()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert nbread.read_file_in(fd, "ok.ipynb") == b"x" * 10
        for name, message in (
            ("link.ipynb", "symbolic link"),
            ("fifo.ipynb", "not a regular file"),
            ("dir.ipynb", "not a regular file"),
            ("../x", "plain file name"),
        ):
            with pytest.raises(nbread.NotebookError, match=message):
                nbread.read_file_in(fd, name)
        with pytest.raises(nbread.NotebookError, match="larger than"):
            nbread.read_file_in(fd, "ok.ipynb", limit=5)
        with pytest.raises(FileNotFoundError):
            nbread.read_file_in(fd, "absent.ipynb")
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"nbformat": "4", "cells": []}', "unsupported nbformat"),
        (b'{"nbformat": 4}', "no list of cells"),
        (b'{"nbformat": 4, "cells": [1]}', "cell 0 is not a JSON object"),
        (b'{"nbformat": 4, "cells": [{"cell_type": "widget", "source": ""}]}', "unknown cell_type"),
        (b'{"nbformat": 4, "cells": [{"cell_type": "code", "source": 3}]}', "source must be"),
        (
            b'{"nbformat": 4, "cells": [{"cell_type": "code", "source": "", "metadata": []}]}',
            "metadata must be",
        ),
        (b'{"nbformat": 4, "cells": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "not valid JSON"),
    ],
)
def test_parse_rejects_malformed_notebooks(data, message):
    with pytest.raises(nbread.NotebookError, match=message):
        nbread.parse(data)


def test_cells_and_manual_answers():
    notebook = nbread.parse(
        json.dumps(
            {
                "nbformat": 4,
                "cells": [
                    {
                        "cell_type": "markdown",
                        "source": ["My ", "answer"],
                        "metadata": {"tags": ["manual", 3], "grading": {"id": "q1"}},
                    },
                    {
                        "cell_type": "markdown",
                        "source": "second",
                        "metadata": {"tags": ["manual"], "grading": {"id": "q1"}},
                    },
                    {
                        "cell_type": "markdown",
                        "source": "no id",
                        "metadata": {"tags": ["manual"], "grading": "q2"},
                    },
                    {"cell_type": "code", "source": "x = 1", "metadata": {"tags": "manual"}},
                ],
            }
        ).encode()
    )
    cells = nbread.cells(notebook)
    assert cells[0].tags == ("manual",) and cells[0].grading_id == "q1" and cells[3].tags == ()
    assert nbread.manual_answers(cells) == {"q1": "My answer"}


# --------------------------------------------------------------------------------------------
# The memory cap leaves room for torch


def test_torch_imports_and_runs_under_the_default_memory_cap():
    cap = 4096 * 2**20

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    code = "import torch; print(tuple(torch.nn.Linear(4, 2)(torch.ones(3, 4)).shape))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0 and run.stdout.strip() == "(3, 2)", run.stderr


# --------------------------------------------------------------------------------------------
# Not root: user namespaces instead of a uid change


def _unprivileged_python() -> str | None:
    """An interpreter an unprivileged uid can start (this venv's may live in /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        probe = subprocess.run(
            [
                "setpriv",
                "--reuid=60999",
                "--regid=60999",
                "--clear-groups",
                "sh",
                "-c",
                f'exec "{candidate}" -c "import sys"',
            ],
            capture_output=True,
        )
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root to become an unprivileged user",
)
def test_unprivileged_grader_protects_the_graders_own_files():
    python = _unprivileged_python()
    if python is None:
        pytest.skip("no Python interpreter an unprivileged user can start")
    base = Path(tempfile.mkdtemp(prefix="grade-nonroot-", dir="/tmp"))
    try:
        subs, out = base / "subs", base / "out"
        (subs / "alice").mkdir(parents=True)
        (subs / "mallory").mkdir()
        own = base / "instructor-file.txt"
        own.write_text("the grader's own file\n")
        shutil.copy(SOLVED, subs / "alice" / "00_examples.ipynb")
        cells = json.loads(SOLVED.read_text())
        targets = [str(own), str(subs / "alice" / "00_examples.ipynb"), str(out / "grades.csv")]
        cells["cells"].append(
            {
                "cell_type": "code",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "source": (
                    f"import os\nfor target in {targets!r}:\n"
                    "    try:\n"
                    "        open(target, 'a').write('PWNED')\n"
                    "        print('WROTE', target)\n"
                    "    except OSError as error:\n"
                    "        print('BLOCKED', target, type(error).__name__)\n"
                ),
            }
        )
        (subs / "mallory" / "00_examples.ipynb").write_text(json.dumps(cells))
        for path in [base, *base.rglob("*")]:
            os.chown(path, 60999, 60999)
        paths = [p for p in sys.path if p and os.path.isabs(p)]
        args = [str(subs), "--out", str(out), *EXAMPLES_ONLY, "--timeout", "60"]
        code = (
            f"import sys; sys.path[:0] = {paths!r}; from rectifiers.grading.cli import main; "
            f"sys.exit(main({args!r}))"
        )
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"}
        run = subprocess.run(
            ["setpriv", "--reuid=60999", "--regid=60999", "--clear-groups", python, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=base,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        sandbox = json.loads((out / "run.json").read_text())["sandbox"]
        assert sandbox["uid_drop"] is False
        if not sandbox["namespaces"]:
            pytest.skip(f"user namespaces unavailable here: {sandbox['namespace_note']}")
        assert sandbox["mode"] in ("user+namespaces", "user+bwrap")
        assert own.read_text() == "the grader's own file\n"
        assert "PWNED" not in (subs / "alice" / "00_examples.ipynb").read_text()
        with open(out / "grades.csv", newline="") as handle:
            rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(handle)}
        assert all(
            rows[("alice", i)]["status"] == "passed" for i in ("ex.leaky_relu", "ex.prelu_module")
        )
        assert all(
            rows[("mallory", i)]["status"] == "passed" for i in ("ex.leaky_relu", "ex.prelu_module")
        )
        log = (out / "logs" / "mallory" / "00_examples.log").read_text()
        assert log.count("BLOCKED") == 3 and "WROTE" not in log
    finally:
        shutil.rmtree(base, ignore_errors=True)
