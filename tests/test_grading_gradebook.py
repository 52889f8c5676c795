"""The grade book as an instructor uses it, against a hostile class.

One class is graded once (``course``): a solved and a blank submission, a submission that tries
to leak its hidden cases into what students see, and folders whose names are invalid UTF-8,
differ only by invisible characters or blanks, or are hidden. On that grade book: folder names
are kept apart and reported exactly; skipped folders are listed with their reason; nothing a
student sees holds a hidden input, an expected value or what the submission printed; rejected
marks files change nothing; hand marks survive re-grading a subset; the feedback and Canvas
files. A second class is killed in the middle of grading and resumed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from rectifiers.grading import cli, names, report
from rectifiers.grading.engine import Row, SubmissionResult

REPO = Path(__file__).resolve().parents[1]
SOLVED = REPO / "tests" / "fixtures" / "grading" / "solutions" / "00_examples.ipynb"
BLANK = REPO / "tests" / "fixtures" / "grading" / "exercises" / "00_examples.ipynb"
SCRIPT = Path(sys.executable).with_name("grade-exercises")
EXAMPLES = ["--include-examples", "--notebooks", "00_examples"]
pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="Linux only")

# Correct on the public cases of the check cells (the learner can read them), and on every other
# input it shouts the input: in an exception, on stdout, or as a wrong value to be compared.
LEAKER = """
import torch
PUBLIC = [[-2.0, -0.5, 0.0, 1.5], [[-1.0, 2.0], [3.0, -4.0]], [-3.0, 3.0]]
PUBLIC_GRAD = [[-2.0, 0.0, 3.0], [[0.5, -0.5]]]

def leaky_relu(x, negative_slope=0.01):
    if x.tolist() in PUBLIC:
        return torch.where(x > 0, x, negative_slope * x)
    print("SECRET-PRINT", x.tolist())
    raise ValueError("SECRET-RAISE " + repr(x.tolist()))

def leaky_relu_grad(x, negative_slope=0.01):
    if x.tolist() in PUBLIC_GRAD:
        return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))
    return torch.full_like(x, 0.123)
"""

ODD_NAMES = [
    "bob\u200b",  # a zero-width space: looks like "bob"
    "bob ",  # a trailing blank
    "caf\u00e9",  # composed é
    "cafe\u0301",  # e + combining accent: looks the same
]


def notebook(*sources: str) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nbformat.writes(nb).encode()


def run_cli(args: list[str]) -> tuple[int, str]:
    """``grade-exercises`` in a subprocess: its exit status and standard error."""
    done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


def run_cli_here(args: list[str], capsys) -> tuple[int, str]:
    """``grade-exercises`` in this process: its exit status and standard error. In-process so
    coverage sees the command-line, marks and grade-book code (the sandboxed jobs still run in
    their own processes); the other tests run the installed script."""
    capsys.readouterr()
    try:
        status = cli.main(args)
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def snapshot(out: Path) -> dict[str, str]:
    """Every file of the grade book and its digest."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def student_visible(out: Path) -> dict[str, str]:
    """The text of every file a student may see: results JSON and feedback."""
    files = list((out / "results").rglob("*.json")) + list((out / "feedback").rglob("*.md"))
    return {str(p.relative_to(out)): p.read_text(encoding="utf-8") for p in files}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    base = tmp_path_factory.mktemp("gradebook")
    subs, out = base / "subs", base / "out"
    for student in ("alice", "bob", "mallory", ".git", *ODD_NAMES):
        (subs / student).mkdir(parents=True)
    os.mkdir(os.fsencode(subs) + b"/caf\xe9")  # Latin-1 bytes, as unzip can leave them
    (subs / "alink").symlink_to(subs / "alice")
    (subs / "notes.txt").write_text("not a student")
    shutil.copy(SOLVED, subs / "alice" / "00_examples.ipynb")
    shutil.copy(BLANK, subs / "bob" / "00_examples.ipynb")
    (subs / "mallory" / "00_examples.ipynb").write_bytes(notebook(LEAKER))
    status, stderr = run_cli(
        [str(subs), "--out", str(out), *EXAMPLES, "--jobs", "2", "--seed", "3"]
    )
    assert status == 0, stderr
    return {"subs": subs, "out": out, "stderr": stderr, "base": base}


# --------------------------------------------------------------------------------------------
# Folder names: exact, unambiguous, never merged; skipped folders listed with the reason


def test_display_names_are_exact_and_one_to_one():
    odd = ["bob", *ODD_NAMES, "caf\udce9", "a  b", "a b", "'=1", "=1", "x\\u{200b}", "x\u200b"]
    shown = [names.display_name(n) for n in odd]
    assert len(set(shown)) == len(odd)
    assert [names.folder_name(s) for s in shown] == odd
    assert all(s.isprintable() and s == s.strip() for s in shown)
    assert names.display_name("alice") == "alice" and names.is_exact("Zoë Ng")
    assert names.display_name("caf\udce9") == "caf\\x{e9}"


def test_every_folder_is_its_own_student_and_the_csv_files_are_written(course):
    summary = read_csv(course["out"] / "summary.csv")
    shown = [row["student"] for row in summary]
    expected = ["alice", "bob", "mallory", *ODD_NAMES, "caf\udce9"]
    assert sorted(shown) == sorted(report.student_cell(n) for n in expected)
    assert len(set(shown)) == len(shown) == len(expected)
    # The invalid-UTF-8 folder gets its own row with its bytes written out, not a crash.
    row = next(r for r in summary if r["student"] == "caf\\x{e9}")
    assert row["notebooks_missing"] == "00_examples"
    students = {r["student"] for r in read_csv(course["out"] / "grades.csv")}
    assert students == set(shown)
    canvas = read_csv(course["out"] / "canvas.csv")
    assert {r["Student"] for r in canvas} == set(shown) | {"Points Possible"}
    assert "shown as caf\\x{e9}" in course["stderr"] and "shown as bob\\u{200b}" in course["stderr"]


def test_skipped_entries_are_listed_with_their_reason(course):
    err = course["stderr"]
    assert "skipping .git (a hidden folder (its name starts with '.'))" in err
    assert "skipping alink (a symbolic link, not followed)" in err
    assert "skipping notes.txt (not a folder)" in err
    assert names.skipped_entries(str(course["subs"])) == [
        (".git", "a hidden folder (its name starts with '.')"),
        ("alink", "a symbolic link, not followed"),
        ("notes.txt", "not a folder"),
    ]


# --------------------------------------------------------------------------------------------
# Nothing a student sees holds a hidden case


def test_student_visible_files_hold_no_hidden_case(course):
    out = course["out"]
    grades = [r for r in read_csv(out / "grades.csv") if r["student"] == "mallory"]
    details = " ".join(r["detail"] for r in grades)
    # The instructor sees everything: the echoed hidden input and the expected values.
    assert "SECRET-RAISE" in details and "expected" in details and "hidden case" in details
    assert "SECRET-PRINT" in (out / "logs" / "mallory" / "00_examples.log").read_text()
    hidden_inputs = [
        r["detail"].split(": ")[1] for r in grades if r["detail"].startswith("hidden case")
    ]
    assert hidden_inputs and all("(" in text for text in hidden_inputs)
    visible = student_visible(out)
    mine = {k: v for k, v in visible.items() if "mallory" in k}
    assert set(mine) == {"results/mallory/00_examples.json", "feedback/mallory.md"}
    for path, text in mine.items():
        for secret in ["SECRET", "expected", "0.123", *hidden_inputs]:
            assert secret not in text, (path, secret)
    results = json.loads(mine["results/mallory/00_examples.json"])
    assert "seed" not in json.dumps(results)
    failed = {t["name"]: t for t in results["tests"]}
    assert failed["ex.leaky_relu"]["output"].startswith("hidden case 1 of 6: raised an exception")
    assert failed["ex.leaky_relu"]["visibility"] == "after_due_date"
    assert failed["ex.leaky_relu: public cases"] == {
        "name": "ex.leaky_relu: public cases",
        "score": 0,
        "max_score": 0,
        "status": "passed",
        "output": "passed the public cases",
        "visibility": "visible",
    }


# --------------------------------------------------------------------------------------------
# Hand marks: checked before use, kept through re-grading


@pytest.mark.parametrize(
    "text, message",
    [
        ("student,notebook,exercise,points\nzed,00_examples,ex.why_leaky,1\n", "unknown student"),
        ("student,notebook,exercise,points\nalice,00_examples,ex.nope,1\n", "not a written answer"),
        (
            "student,notebook,exercise,points\nalice,00_examples,ex.leaky_relu,1\n",
            "not a written answer",
        ),
        (
            "student,notebook,exercise,points\nalice,00_examples,ex.why_leaky,2.5\n",
            "between 0 and 2",
        ),
        (
            "student,notebook,exercise,points\nalice,00_examples,ex.why_leaky,-1\n",
            "between 0 and 2",
        ),
        (
            "student,notebook,exercise,points\nalice,00_examples,ex.why_leaky,nan\n",
            "between 0 and 2",
        ),
        ("student,notebook,exercise,points\nalice,00_examples,ex.why_leaky,two\n", "a number"),
        (
            "student,notebook,exercise,points\nalice,00_examples,ex.why_leaky,1\n"
            "alice,00_examples,ex.why_leaky,2\n",
            "marked twice",
        ),
        ("student,notebook,item,points\nalice,00_examples,ex.why_leaky,1\n", "the header"),
        ("student,notebook,exercise,points,grader\nalice,00_examples,ex.why_leaky,1,x\n", "header"),
    ],
)
def test_rejected_marks_files_change_nothing(course, tmp_path, capsys, text, message):
    marks = tmp_path / "marks.csv"
    marks.write_text(text)
    before = snapshot(course["out"])
    status, stderr = run_cli_here(["--out", str(course["out"]), "--marks", str(marks)], capsys)
    assert status == 2 and message in stderr, stderr
    assert any(f"line {n}" in stderr for n in (1, 2, 3))  # the line is named
    assert snapshot(course["out"]) == before


def test_marks_merge_and_survive_regrading_a_subset(course, capsys):
    out, subs = course["out"], course["subs"]
    marks = course["base"] / "marks.csv"
    marks.write_text(
        "student,notebook,exercise,points,comment\n"
        "alice,00_examples,ex.why_leaky,1.5,Names the zero gradient but not the fix.\n"
    )
    status, stderr = run_cli_here(["--out", str(out), "--marks", str(marks)], capsys)
    assert status == 0, stderr
    rows = {(r["student"], r["exercise"]): r for r in read_csv(out / "grades.csv")}
    assert rows[("alice", "ex.why_leaky")]["status"] == "marked"
    assert rows[("alice", "ex.why_leaky")]["points"] == "1.5"
    summary = {r["student"]: r for r in read_csv(out / "summary.csv")}
    assert (summary["alice"]["points"], summary["alice"]["manual_max_points"]) == ("9.5", "0")
    feedback = (out / "feedback" / "alice.md").read_text()
    assert "hand mark 1.5 of 2: Names the zero gradient but not the fix" in feedback
    results = json.loads((out / "results" / "alice" / "00_examples.json").read_text())
    assert results["score"] == 9.5

    # Bob hands in a solution; re-grade him alone. Nothing of anyone else changes.
    before = snapshot(out)
    alice_rows = [r for r in read_csv(out / "grades.csv") if r["student"] != "bob"]
    shutil.copy(SOLVED, subs / "bob" / "00_examples.ipynb")
    status, stderr = run_cli_here(
        [str(subs), "--out", str(out), *EXAMPLES, "--students", "bob"], capsys
    )
    assert status == 0 and "graded 1 notebooks of 1 students" in stderr, stderr
    after = snapshot(out)
    others = [
        path
        for path in before
        if path.split("/")[0] in ("records", "results", "logs", "feedback")
        and path.split("/")[1] not in ("bob", "bob.md")
    ]
    assert len(others) > 10 and all(after.get(path) == before[path] for path in others)
    assert after["records/bob/00_examples.json"] != before["records/bob/00_examples.json"]
    assert [r for r in read_csv(out / "grades.csv") if r["student"] != "bob"] == alice_rows
    bob = [r for r in read_csv(out / "grades.csv") if r["student"] == "bob"]
    assert sum(float(r["points"]) for r in bob) == 8
    canvas = {r["Student"]: r for r in read_csv(out / "canvas.csv")}
    assert canvas["Points Possible"]["00_examples"] == "10"
    assert (canvas["alice"]["00_examples"], canvas["bob"]["00_examples"]) == ("9.5", "8")
    assert canvas["alice"]["SIS Login ID"] == "alice"


def test_unknown_students_for_a_subset_are_a_usage_error(course, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(course["subs"]), "--out", str(course["out"]), *EXAMPLES, "--students", "zed"])
    assert exit_info.value.code == 2 and "no such student" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# A killed run keeps what was graded and the previous grade book; a re-run resumes


def test_a_killed_run_keeps_the_grade_book_and_resumes(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    for student in ("a_fast", "b_fast", "z_slow"):
        (subs / student).mkdir(parents=True)
        shutil.copy(SOLVED, subs / student / "00_examples.ipynb")
    (subs / "z_slow" / "00_examples.ipynb").write_bytes(notebook("import time; time.sleep(40)"))
    old = SubmissionResult(
        "old_student",
        "00_examples",
        [Row("old_student", "00_examples", "ex.why_leaky", 0, 2, "manual", "x")],
    )
    report.write(str(out), [old], {"seconds": 1})
    process = subprocess.Popen(
        [str(SCRIPT), str(subs), "--out", str(out), *EXAMPLES, "--timeout", "120"],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            graded = {r["student"] for r in read_csv(out / "grades.csv")}
            if {"a_fast", "b_fast"} <= graded:
                break
            assert process.poll() is None, "the grader ended before it was killed"
            time.sleep(0.5)
        else:
            pytest.fail("the first two students were not checkpointed within 120 s")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    rows = read_csv(out / "grades.csv")
    assert {r["student"] for r in rows} == {"old_student", "a_fast", "b_fast"}
    assert json.loads((out / "run.json").read_text())["state"] == "running"
    graded_at = json.loads((out / "records" / "a_fast" / "00_examples.json").read_text())[
        "graded_at"
    ]
    time.sleep(1.1)
    status, stderr = run_cli(
        [str(subs), "--out", str(out), *EXAMPLES, "--resume", "--timeout", "5"]
    )
    assert status == 0, stderr
    assert "resuming: 2 submissions already graded, 1 to go" in stderr
    again = json.loads((out / "records" / "a_fast" / "00_examples.json").read_text())
    assert again["graded_at"] == graded_at  # not graded twice
    rows = read_csv(out / "grades.csv")
    assert {r["student"] for r in rows} == {"old_student", "a_fast", "b_fast", "z_slow"}
    assert {
        r["status"] for r in rows if r["student"] == "z_slow" and r["exercise"] != "ex.why_leaky"
    } == {"timeout"}
    assert json.loads((out / "run.json").read_text())["state"] == "finished"
