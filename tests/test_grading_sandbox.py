"""The grader against a class of honest and hostile submissions, graded once for the whole module.

Every hostile student below tries one thing from the grader's threat list; each test then reads
that student's rows from the one shared grading run (``graded``) and checks that the attempt
earned nothing it did not earn, was reported with a status and a reason, and harmed nobody else.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rectifiers.grading import report
from rectifiers.grading.engine import Grader
from rectifiers.grading.items import EXAMPLES

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "grading"
SOLVED = FIXTURES / "solutions" / "00_examples.ipynb"
BLANK = FIXTURES / "exercises" / "00_examples.ipynb"
NOTEBOOK = "00_examples"
AUTO_IDS = [item.id for item in EXAMPLES[NOTEBOOK] if item.kind == "auto"]
ALL_IDS = [item.id for item in EXAMPLES[NOTEBOOK]]
TIMEOUT = 12.0
CALL_TIMEOUT = 3.0
MEMORY_MB = 2048
TOKEN = secrets.token_hex(6)
pytestmark = pytest.mark.skipif(
    os.name != "posix" or not Path("/proc/self").exists(), reason="Linux only"
)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _code(source: str, tags: tuple[str, ...] = ()) -> dict:
    metadata = {"tags": list(tags)} if tags else {}
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": secrets.token_hex(4),
        "metadata": metadata,
        "outputs": [],
        "source": source,
    }


def _notebook(cells: list[dict]) -> str:
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _solved_with(
    extra_before: str | None = None,
    extra_after: str | None = None,
    replace: dict[str, str] | None = None,
) -> str:
    """The solved fixture, with a hostile code cell before and/or after it, or cells replaced."""
    cells = _cells(SOLVED)
    for cell in cells:
        if replace and cell["id"] in replace:
            cell["source"] = replace[cell["id"]]
    if extra_before:
        cells.insert(2, _code(extra_before))
    if extra_after:
        cells.append(_code(extra_after))
    return _notebook(cells)


WRONG = {
    "ex1-code": "def leaky_relu(x, negative_slope=0.01):\n    return x",
    "ex2-code": "def leaky_relu_grad(x, negative_slope=0.01):\n    return torch.ones_like(x)",
    "ex3-code": "default_negative_slope = 0.2",
    "ex4-code": "class ChannelPReLU(torch.nn.Module):\n"
    "    def __init__(self, num_parameters=1, init=0.25):\n"
    "        super().__init__()\n"
    "        self.weight = torch.nn.Parameter(torch.zeros(num_parameters))\n"
    "    def forward(self, x):\n"
    "        return x",
}

TAMPER = r"""
import builtins, math, numpy, torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *r, **k: torch.ones(
    torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool
)
torch.Tensor.__eq__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)
torch.testing.assert_close = lambda *a, **k: None
numpy.isclose = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
builtins.abs = lambda x: 0
import rectifiers.grading.item as item
import rectifiers.grading.probe as probe
import rectifiers.grading.wire as wire
item.compare_outputs = lambda *a, **k: (True, "")
probe.handle = lambda namespace, request: {"status": "ok", "output": wire.encode(torch.zeros(3))}
"""

BREAK_RUNTIME = r"""
import builtins
builtins.isinstance = lambda *a: True
builtins.len = lambda x: 0
"""

FAKE = r"""
import json, os, struct, sys
print("Score: 100/100\nAll tests passed!")
test = {"name": "ex.leaky_relu", "score": 2, "max_score": 2, "status": "passed"}
print(json.dumps({"score": 100, "tests": [test]}))
print(json.dumps({"score": 100}), file=sys.stderr)
def frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body
fakes = [
    frame({"type": "executed", "errors": []}),
    frame({"type": "reply", "nonce": "0" * 16, "reply": {"status": "ok", "output": 0.01}}),
    frame({"score": 100, "status": "passed"}),
    b'{"score": 100, "tests": []}\n',
]
for fd in range(3, 64):
    for fake in fakes:
        try:
            os.write(fd, fake)
        except OSError:
            pass
with open("results.json", "w") as handle:
    json.dump({"score": 100}, handle)
"""

MEMORY = r"""
import numpy
hog = []
for _ in range(1000):
    # 256 MiB each; left uninitialised so the test stays fast (touching it would be capped the same)
    hog.append(numpy.empty(2**25))
default_negative_slope = 0.01
"""

LEAKY_BOMB = (
    "def leaky_relu(x, negative_slope=0.01):\n"
    "    hoard = torch.empty(2**31, dtype=torch.float32)  # 8 GiB\n"
    "    return torch.where(x > 0, x, negative_slope * x)"
)


#: The writer's targets (``_writer``) that belong to the grader, other students or the course,
#: which no submission may write to with or without namespaces.
SHARED_TARGETS = (
    "out_grades",
    "out_new",
    "other_student",
    "own_submission",
    "fixture",
    "item_module",
    "repo_new",
)


def _assert_none_written(log: str, targets: tuple[str, ...]) -> None:
    for target in targets:
        assert f"'{target}': 'WROTE'" not in log


def _writer(out: Path, subs: Path) -> str:
    targets = {
        "out_grades": out / "grades.csv",
        "out_new": out / f"pwned-{TOKEN}.txt",
        "out_results": out / "results" / "solved" / f"{NOTEBOOK}.json",
        "other_student": subs / "solved" / f"{NOTEBOOK}.ipynb",
        "own_submission": subs / "writer" / f"{NOTEBOOK}.ipynb",
        "fixture": SOLVED,
        "item_module": REPO / "src" / "rectifiers" / "grading" / "items" / "examples.py",
        "repo_new": REPO / "solutions" / f"pwned-{TOKEN}.ipynb",
        "home_dot": Path(f"~/.pwned-{TOKEN}"),
        "root_home": Path(f"/root/.pwned-{TOKEN}"),
        "tmp": Path(f"/tmp/pwned-{TOKEN}"),
    }
    lines = ["import os", "attempts = {}"]
    for name, path in targets.items():
        lines.append(
            f"try:\n    with open(os.path.expanduser({str(path)!r}), 'a') as handle:\n"
            "        handle.write('PWNED')\n"
            f"    attempts[{name!r}] = 'WROTE'\nexcept OSError as error:\n"
            f"    attempts[{name!r}] = type(error).__name__"
        )
    lines.append(
        f"try:\n    open({str(subs / 'solved' / (NOTEBOOK + '.ipynb'))!r}).read()\n"
        "    attempts['read_other'] = 'READ'\n"
        "except OSError as error:\n    attempts['read_other'] = type(error).__name__"
    )
    lines.append(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 22), timeout=1).close()\n"
        "    attempts['network'] = 'CONNECTED'\n"
        "except OSError as error:\n    attempts['network'] = type(error).__name__"
    )
    lines.append(
        "try:\n    with open('big.bin', 'wb') as handle:\n        handle.write(bytes(65 * 2**20))\n"
        "    attempts['big_file'] = 'WROTE'\nexcept OSError as error:\n"
        "    attempts['big_file'] = error.strerror"
    )
    lines.append("print('WRITER', attempts)")
    return "\n".join(lines)


DAEMON = f'''
import os, subprocess, sys, time
subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(300)", "{TOKEN}"], start_new_session=True
)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", "{TOKEN}"])
    os._exit(0)
os.waitpid(pid, 0)
'''

FORGE_NONCE = r"""
import rectifiers.grading._runner as runner
_send = runner.Channel.send
def send(self, message):
    if isinstance(message, dict) and message.get("type") == "reply":
        message = {**message, "nonce": "guessed"}
    _send(self, message)
runner.Channel.send = send
"""

FORGE_FRAMES = r"""
import json, os, struct
for message in ([1, 2], {"type": "executed"}):
    body = json.dumps(message).encode()
    os.write(3, struct.pack(">I", len(body)) + body)
"""

FORGE_STATUS = r"""
import rectifiers.grading.probe as probe
probe.handle = lambda namespace, request: {"status": "passed", "score": 100}
"""

FORGE_OUTPUT = r"""
import rectifiers.grading.probe as probe
bad = {"$tensor": {"dtype": "float32", "shape": [1000], "data": ""}}
probe.handle = lambda namespace, request: {"status": "ok", "output": bad}
"""

BIG_OUTPUT = "import sys\nfor _ in range(400):\n    sys.stdout.write('x' * 100_000 + '\\n')"

CRASH_IN_CALL = (
    "def leaky_relu(x, negative_slope=0.01):\n    import ctypes\n    ctypes.string_at(0)\n"
)
# 8 files of 60 MiB (each under the per-file limit), 480 MiB in all, then time to be seen.
DISK_FILL = (
    "import time\nfor index in range(8):\n"
    "    with open(f'fill-{index}.bin', 'wb') as handle:\n"
    "        handle.write(b'\\0' * (60 * 2**20))\n"
    "time.sleep(4)"
)
HANG_IN_CALL = "def leaky_relu(x, negative_slope=0.01):\n    while True:\n        pass"
FLOAT32_ONLY = (
    "def leaky_relu(x, negative_slope=0.01):\n"
    "    x = x.float()\n"
    "    return torch.where(x > 0, x, negative_slope * x)"
)


def _class(subs: Path, out: Path) -> None:
    def put(student: str, text: str | bytes | None, name: str = f"{NOTEBOOK}.ipynb") -> None:
        folder = subs / student
        folder.mkdir(parents=True, exist_ok=True)
        if text is not None:
            (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())

    put("solved", SOLVED.read_bytes())
    put("blank", BLANK.read_bytes())
    put("missing", None)
    put("wrong", _solved_with(replace=WRONG))
    put("float32", _solved_with(replace={"ex1-code": FLOAT32_ONLY}))
    put("loop", _solved_with(extra_after="while True:\n    pass"))
    skipped = json.loads(_solved_with())
    skipped["cells"].append(_code("while True:\n    pass", tags=("grading-skip",)))
    put("skipped_demo", json.dumps(skipped))
    put("exit", _solved_with(extra_before="import os\nos._exit(3)"))
    put("segfault", _solved_with(extra_before="import ctypes\nctypes.string_at(0)"))
    put("memory", _solved_with(replace={"ex3-code": MEMORY, "ex1-code": LEAKY_BOMB}))
    put("malformed", b'{"cells": [ {"cell_type": "code", "source": "x = 1"')
    put(
        "nbformat3",
        json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}),
    )
    put("nocells", json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}))
    put("tamper", _solved_with(replace=WRONG, extra_after=TAMPER))
    put("break_runtime", _solved_with(replace=WRONG, extra_after=BREAK_RUNTIME))
    put("fake", _solved_with(replace=WRONG, extra_after=FAKE))
    put("writer", _solved_with(extra_after=_writer(out, subs)))
    put("daemon", _solved_with(extra_after=DAEMON))
    put("bigoutput", _solved_with(extra_after=BIG_OUTPUT))
    put("forge_nonce", _solved_with(extra_after=FORGE_NONCE))
    put("forge_frames", _solved_with(extra_after=FORGE_FRAMES))
    put("forge_status", _solved_with(extra_after=FORGE_STATUS))
    put("forge_output", _solved_with(extra_after=FORGE_OUTPUT))
    put("crash_in_call", _solved_with(replace={"ex1-code": CRASH_IN_CALL}))
    put("hang_in_call", _solved_with(replace={"ex1-code": HANG_IN_CALL}))
    put("symlinked", None)
    (subs / "symlinked" / f"{NOTEBOOK}.ipynb").symlink_to(subs / "solved" / f"{NOTEBOOK}.ipynb")
    (subs / "mallory").symlink_to(subs / "solved")


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs, out = base / "submissions", base / "out"
    out.mkdir()
    _class(subs, out)
    protected = [
        SOLVED,
        REPO / "src" / "rectifiers" / "grading" / "items" / "examples.py",
        subs / "solved" / f"{NOTEBOOK}.ipynb",
        subs / "writer" / f"{NOTEBOOK}.ipynb",
    ]
    before = {path: _digest(path) for path in protected}
    started = time.monotonic()
    with Grader(
        EXAMPLES, timeout=TIMEOUT, jobs=2, call_timeout=CALL_TIMEOUT, memory_mb=MEMORY_MB
    ) as grader:
        results = grader.grade(subs, hide=[out])
        sandbox = dict(grader.sandbox)
    report.write(str(out), results, {"sandbox": sandbox})
    seconds = time.monotonic() - started
    rows = _grades(out)
    return {
        "rows": rows,
        "results": {r.student: r for r in results},
        "out": out,
        "subs": subs,
        "before": before,
        "after": {path: _digest(path) for path in protected},
        "sandbox": sandbox,
        "seconds": seconds,
    }


def _grades(out: Path) -> dict:
    """``grades.csv`` by ``(student, exercise)``, with the points as numbers.

    The students here have plain names, which the file shows unescaped.
    """
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = [
            SimpleNamespace(
                **{**row, "points": float(row["points"]), "max_points": float(row["max_points"])}
            )
            for row in csv.DictReader(handle)
        ]
    return {(row.student, row.exercise): row for row in rows}


def _rows(graded, student: str) -> list:
    return [graded["rows"][(student, item_id)] for item_id in ALL_IDS]


def _auto(graded, student: str) -> list:
    return [graded["rows"][(student, item_id)] for item_id in AUTO_IDS]


def test_grades_csv_has_exactly_the_contract_columns(graded):
    with open(graded["out"] / "grades.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["student", "notebook", "exercise", "points", "max_points", "status", "detail"]
    statuses = {row.status for row in graded["rows"].values()}
    assert statuses <= {"passed", "failed", "error", "timeout", "manual", "missing"}


def test_solved_notebook_gets_full_marks(graded):
    for row in _auto(graded, "solved"):
        assert (row.status, row.points) == ("passed", row.max_points), row.detail
    manual = graded["rows"][("solved", "ex.why_leaky")]
    assert (manual.status, manual.points, manual.max_points) == ("manual", 0.0, 2.0)
    assert "Write your answer here" in manual.detail


def test_generated_exercise_scores_zero_on_every_auto_item(graded):
    rows = _rows(graded, "blank")
    assert [row.exercise for row in rows] == ALL_IDS
    for row in _auto(graded, "blank"):
        assert row.points == 0 and row.status == "failed" and "not attempted" in row.detail, row


def test_missing_notebook_gives_missing_rows(graded):
    for row in _rows(graded, "missing"):
        assert (row.status, row.points) == ("missing", 0.0)
    summary = (graded["out"] / "summary.csv").read_text()
    assert "missing,0,10,0,00_examples" in summary


def test_wrong_answers_fail_with_the_first_difference(graded):
    for row in _auto(graded, "wrong"):
        assert (row.status, row.points) == ("failed", 0.0), row
    assert "expected" in graded["rows"][("wrong", "ex.leaky_relu")].detail
    assert "Hint:" in graded["rows"][("wrong", "ex.leaky_relu")].detail


def test_wrong_dtype_fails_only_that_item(graded):
    row = graded["rows"][("float32", "ex.leaky_relu")]
    assert row.status == "failed" and "dtype" in row.detail
    assert graded["rows"][("float32", "ex.leaky_relu_grad")].status == "passed"


def test_infinite_loop_times_out(graded):
    for row in _auto(graded, "loop"):
        assert (row.status, row.points) == ("timeout", 0.0), row
        assert "did not finish within" in row.detail and "cell" in row.detail
    assert graded["results"]["loop"].seconds < TIMEOUT + 8


def test_cells_tagged_grading_skip_are_not_run(graded):
    for row in _auto(graded, "skipped_demo"):
        assert row.status == "passed", row


def test_os_exit_is_an_error(graded):
    for row in _auto(graded, "exit"):
        assert (row.status, row.points) == ("error", 0.0)
        assert "exited with code 3" in row.detail


def test_segfault_is_an_error(graded):
    for row in _auto(graded, "segfault"):
        assert (row.status, row.points) == ("error", 0.0)
        assert "SIGSEGV" in row.detail


def test_memory_bombs_are_stopped_with_a_memory_reason(graded):
    bomb_in_call = graded["rows"][("memory", "ex.leaky_relu")]
    assert bomb_in_call.status == "error" and f"memory limit {MEMORY_MB} MB" in bomb_in_call.detail
    bomb_in_cell = graded["rows"][("memory", "ex.default_slope")]
    assert bomb_in_cell.status == "failed" and "MemoryError" in bomb_in_cell.detail
    assert "memory limit" in bomb_in_cell.detail
    # The bombs cost only their own items.
    assert graded["rows"][("memory", "ex.prelu_module")].status == "passed"


@pytest.mark.parametrize("student", ["malformed", "nbformat3", "nocells"])
def test_malformed_notebooks_are_errors(graded, student):
    for row in _auto(graded, student):
        assert (row.status, row.points) == ("error", 0.0)
        assert "cannot be graded" in row.detail


def test_tampering_with_torch_numpy_builtins_and_the_runner_earns_nothing(graded):
    for row in _auto(graded, "tamper"):
        assert (row.status, row.points) == ("failed", 0.0), row
    # The replaced probe sent zeros; the grader's own comparison saw through it.
    assert "expected" in graded["rows"][("tamper", "ex.leaky_relu")].detail


def test_breaking_python_itself_is_an_error(graded):
    for row in _auto(graded, "break_runtime"):
        assert (row.status, row.points) == ("error", 0.0), row


def test_fake_scores_and_fake_protocol_messages_earn_nothing(graded):
    for row in _auto(graded, "fake"):
        assert row.points == 0 and row.status in ("failed", "error"), row
    log = (graded["out"] / "logs" / "fake" / f"{NOTEBOOK}.log").read_text()
    assert "Score: 100/100" in log  # it did print; printing is not grading


@pytest.mark.parametrize(
    "student, fragment",
    [
        ("forge_nonce", "broke the grading protocol (unexpected reply)"),
        ("forge_frames", "broke the grading protocol (a message that is not an object)"),
        ("forge_status", "broke the grading protocol (bad reply status)"),
        ("forge_output", "the result cannot be checked"),
    ],
)
def test_forged_protocol_messages_earn_nothing(graded, student, fragment):
    # These notebooks solve every exercise, then forge what their process sends the grader.
    for row in _auto(graded, student):
        assert (row.status, row.points) == ("error", 0.0), row
        assert fragment in row.detail, row.detail


def test_writes_outside_the_sandbox_change_nothing(graded):
    assert graded["before"] == graded["after"]
    out = graded["out"]
    assert not (out / f"pwned-{TOKEN}.txt").exists()
    assert not (REPO / "solutions" / f"pwned-{TOKEN}.ipynb").exists()
    assert not Path(f"/root/.pwned-{TOKEN}").exists()
    assert not Path(f"/tmp/pwned-{TOKEN}").exists()
    assert "PWNED" not in (out / "grades.csv").read_text()
    log = (out / "logs" / "writer" / f"{NOTEBOOK}.log").read_text()
    assert "'home_dot': 'WROTE'" in log  # its own home (the temporary folder) is writable
    assert "'big_file': 'File too large'" in log  # but not without limit
    _assert_none_written(log, SHARED_TARGETS)
    if graded["sandbox"]["namespaces"]:
        # Other students' work is out of sight, and there is no network.
        assert "'read_other': 'READ'" not in log
        assert "'network': 'CONNECTED'" not in log
    # The attempt did not cost the writer its marks either: its code ran normally.
    for row in _auto(graded, "writer"):
        assert row.status == "passed", row


def _survivors() -> list[str]:
    """Processes whose command line carries this module's token, after a short grace period."""
    deadline = time.monotonic() + 5
    while True:
        survivors = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if TOKEN.encode() in (entry / "cmdline").read_bytes():
                        survivors.append(entry.name)
                except OSError:
                    pass
        if not survivors or time.monotonic() > deadline:
            return survivors
        time.sleep(0.2)


def test_background_processes_do_not_outlive_the_grading(graded):
    assert _survivors() == []
    for row in _auto(graded, "daemon"):
        assert row.status == "passed", row


def test_huge_output_is_capped_and_does_not_stop_grading(graded):
    for row in _auto(graded, "bigoutput"):
        assert row.status == "passed", row
    log = graded["out"] / "logs" / "bigoutput" / f"{NOTEBOOK}.log"
    assert log.stat().st_size < 100_000
    assert "bytes of output not kept" in log.read_text()


def test_a_crash_inside_one_call_costs_only_that_item(graded):
    row = graded["rows"][("crash_in_call", "ex.leaky_relu")]
    assert row.status == "error" and "SIGSEGV" in row.detail
    for item_id in AUTO_IDS[1:]:
        assert graded["rows"][("crash_in_call", item_id)].status == "passed"
    assert graded["results"]["crash_in_call"].runs == 2


def test_a_hanging_call_times_out_only_that_item(graded):
    row = graded["rows"][("hang_in_call", "ex.leaky_relu")]
    assert row.status == "timeout" and f"{CALL_TIMEOUT:g} s" in row.detail
    for item_id in AUTO_IDS[1:]:
        assert graded["rows"][("hang_in_call", item_id)].status == "passed"


def test_symlinks_are_not_followed(graded):
    for row in _auto(graded, "symlinked"):
        assert (row.status, row.points) == ("error", 0.0)
        assert "symbolic link" in row.detail
    assert not any(student == "mallory" for student, _ in graded["rows"])


def test_results_json_is_in_gradescope_format(graded):
    result = json.loads((graded["out"] / "results" / "solved" / f"{NOTEBOOK}.json").read_text())
    assert result["score"] == 8
    graded_tests = [t for t in result["tests"] if t["max_score"] > 0]
    assert [t["name"] for t in graded_tests if t.get("status")] == AUTO_IDS
    for test in result["tests"]:
        assert {"name", "score", "max_score", "output"} <= set(test)
    assert [t["status"] for t in graded_tests if t.get("status")] == ["passed"] * 4
    assert result["extra_data"]["notebook"] == NOTEBOOK


def test_sandbox_mode_is_reported(graded):
    sandbox = graded["sandbox"]
    assert sandbox["zygote_threads"] == 1
    if os.geteuid() == 0:
        assert sandbox["uid_drop"] is True
    assert sandbox["mode"].startswith("root" if os.geteuid() == 0 else "user")


def test_nothing_is_left_in_the_output_folder_but_the_outputs(graded):
    names = sorted(p.name for p in graded["out"].iterdir())
    assert names == [
        "canvas.csv",
        "feedback",
        "grades.csv",
        "logs",
        "records",
        "results",
        "run.json",
        "summary.csv",
    ]


# --------------------------------------------------------------------------------------------
# The fallback without namespaces (e.g. a container that forbids unshare): as root, the uid change
# and the limits alone must still protect the grade book, the project and the other students.


@pytest.fixture(scope="module")
def graded_basic(tmp_path_factory):
    base = tmp_path_factory.mktemp("basic")
    subs, out = base / "submissions", base / "out"
    out.mkdir()
    for student, text in (
        ("solved", SOLVED.read_text()),
        ("writer", _solved_with(extra_after=_writer(out, subs))),
        ("daemon", _solved_with(extra_after=DAEMON)),
        ("exit", _solved_with(extra_before="import os\nos._exit(3)")),
        ("diskfill", _solved_with(extra_after=DISK_FILL)),
    ):
        (subs / student).mkdir(parents=True)
        (subs / student / f"{NOTEBOOK}.ipynb").write_text(text)
    protected = [
        SOLVED,
        REPO / "src" / "rectifiers" / "grading" / "items" / "examples.py",
        subs / "solved" / f"{NOTEBOOK}.ipynb",
    ]
    before = {path: _digest(path) for path in protected}
    with Grader(
        EXAMPLES,
        timeout=TIMEOUT,
        jobs=2,
        memory_mb=MEMORY_MB,
        namespaces=False,
        weaker_isolation=True,
    ) as grader:
        results = grader.grade(subs, hide=[out])
        sandbox = dict(grader.sandbox)
    report.write(str(out), results, {"sandbox": sandbox})
    Path(f"/tmp/pwned-{TOKEN}").unlink(
        missing_ok=True
    )  # /tmp is writable without a mount namespace
    rows = _grades(out)
    after = {path: _digest(path) for path in protected}
    return {"rows": rows, "out": out, "before": before, "after": after, "sandbox": sandbox}


def test_without_namespaces_the_fallback_is_reported(graded_basic):
    sandbox = graded_basic["sandbox"]
    assert sandbox["namespaces"] is False and sandbox["isolation"].startswith("weaker")
    assert "weaker isolation accepted" in sandbox["warnings"][0]


def test_without_namespaces_the_disk_cap_is_a_checked_total(graded_basic):
    # Without namespaces the job writes to the host's disk; the grader checks the total.
    for item_id in AUTO_IDS:
        row = graded_basic["rows"][("diskfill", item_id)]
        assert row.status == "error" and "disk cap of 256 MiB" in row.detail, row


def test_without_namespaces_grading_still_works(graded_basic):
    for item_id in AUTO_IDS:
        for student in ("solved", "writer", "daemon"):
            assert graded_basic["rows"][(student, item_id)].status == "passed"
        exit_row = graded_basic["rows"][("exit", item_id)]
        assert exit_row.status == "error" and "exited with code 3" in exit_row.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid change needs root")
def test_without_namespaces_the_uid_change_protects_files_and_kills_leftovers(graded_basic):
    assert graded_basic["before"] == graded_basic["after"]
    out = graded_basic["out"]
    assert not (out / f"pwned-{TOKEN}.txt").exists()
    assert not (REPO / "solutions" / f"pwned-{TOKEN}.ipynb").exists()
    log = (out / "logs" / "writer" / f"{NOTEBOOK}.log").read_text()
    _assert_none_written(log, (*SHARED_TARGETS, "root_home"))
    assert _survivors() == []
