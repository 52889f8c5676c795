"""The Gradescope autograder: the zip, its shell scripts, and runs in a simulated ``/autograder``.

``grade-exercises gradescope`` builds ``autograder.zip`` for the six course notebooks. Each run
unpacks it into a temporary root laid out as Gradescope's (``source/``, ``submission/``,
``results/``, ``run_autograder``), sets ``RECTIFIERS_AUTOGRADER_ROOT`` to that root and runs
``run_autograder`` with this environment's Python, for a solved, a blank and a hostile
submission. ``results.json`` is checked against Gradescope's documented schema, and nothing in
it may show a hidden case. ``setup.sh`` and ``run_autograder`` are linted with shellcheck;
``setup.sh`` itself installs from the network, so it runs only with
``RECTIFIERS_TEST_SETUP_SH=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from rectifiers.grading import autograder, cli
from rectifiers.grading.gradescope import VISIBILITIES
from rectifiers.grading.items import REGISTRY

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="Linux only")
AUTO_POINTS = sum(i.points for items in REGISTRY.values() for i in items if i.kind == "auto")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("autograder") / "autograder.zip"
    assert cli.main(["gradescope", "--out", str(path)]) == 0
    return path


def simulate(bundle: Path, root: Path, files: dict[str, bytes | Path], env=None) -> dict:
    """Lay out ``root`` as Gradescope does, run ``run_autograder``; its results and output."""
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    for name in ("run_autograder", "setup.sh"):
        (root / "source" / name).chmod(0o755)
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    (root / "results").mkdir()
    for relative, content in files.items():
        target = root / "submission" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
    (root / "submission").mkdir(exist_ok=True)
    variables = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
        autograder.ROOT_VARIABLE: str(root),
        "RECTIFIERS_AUTOGRADER_PYTHON": sys.executable,
        **(env or {}),
    }
    done = subprocess.run(
        ["bash", str(root / "run_autograder")],
        capture_output=True,
        text=True,
        env=variables,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    return {"results": results, "stdout": done.stdout, "stderr": done.stderr}


def check_schema(results: dict) -> None:
    """Gradescope's results.json: the keys and types its documentation gives."""
    assert isinstance(results["score"], (int, float)) and isinstance(results["tests"], list)
    assert isinstance(results["execution_time"], (int, float)) and isinstance(
        results["output"], str
    )
    assert results.get("visibility", "visible") in VISIBILITIES
    assert results["stdout_visibility"] == "hidden"
    for test in results["tests"]:
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], (int, float)) and isinstance(
            test["max_score"], (int, float)
        )
        assert 0 <= test["score"] <= test["max_score"]
        assert test["visibility"] in VISIBILITIES
        assert test.get("status", "passed") in ("passed", "failed")
        # Hidden-case details are shown only after the due date.
        if "hidden case" in test["output"] or re.match(r"\d+ of \d+ cases", test["output"]):
            assert test["visibility"] == "after_due_date", test
    assert abs(results["score"] - sum(t["score"] for t in results["tests"])) < 1e-9


def instructor_details(stdout: str) -> list[str]:
    """The hidden-case calls the instructor's stdout names (``hidden case N: f(inputs): ...``)."""
    return re.findall(r"hidden case \d+: (\w+\(.*?\)): ", stdout)


def test_the_zip_has_gradescopes_layout(bundle):
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        config = json.loads(archive.read("config.json"))
    assert {"setup.sh", "run_autograder", "config.json", "requirements.lock"} <= set(names)
    assert "package/pyproject.toml" in names
    assert "package/src/rectifiers/grading/autograder.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert modes["setup.sh"] & stat.S_IXUSR and modes["run_autograder"] & stat.S_IXUSR
    assert config["notebooks"] == list(REGISTRY)


def test_bad_options_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["gradescope", "--out", str(tmp_path / "x.tar")])
    assert exit_info.value.code == 2 and "--out must name a .zip" in capsys.readouterr().err


def test_shell_scripts_pass_shellcheck(bundle, tmp_path):
    if shutil.which("shellcheck") is None:
        message = (
            "shellcheck is not installed: setup.sh and run_autograder were NOT linted "
            "(apt-get install -y shellcheck)"
        )
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    with zipfile.ZipFile(bundle) as archive:
        archive.extract("setup.sh", tmp_path)
        archive.extract("run_autograder", tmp_path)
    lint = subprocess.run(
        [
            "shellcheck",
            "--shell=bash",
            str(tmp_path / "setup.sh"),
            str(tmp_path / "run_autograder"),
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout


def test_solved_submission_gets_every_auto_graded_point(bundle, tmp_path):
    files = {f"{name}.ipynb": REPO / "solutions" / f"{name}.ipynb" for name in REGISTRY}
    run = simulate(bundle, tmp_path, files)
    results = run["results"]
    check_schema(results)
    assert results["score"] == AUTO_POINTS
    scored = [t for t in results["tests"] if t["max_score"] > 0]
    assert all(t["score"] == t["max_score"] for t in scored if "written answer" not in t["name"])
    # The instructor's stdout has every row, as grades.csv does.
    assert run["stdout"].count(",passed,") == sum(
        i.kind == "auto" for items in REGISTRY.values() for i in items
    )


def test_blank_submission_scores_zero(bundle, tmp_path):
    files = {f"{name}.ipynb": REPO / "exercises" / f"{name}.ipynb" for name in REGISTRY}
    results = simulate(bundle, tmp_path, files)["results"]
    check_schema(results)
    assert results["score"] == 0
    graded = [t for t in results["tests"] if t["visibility"] == "after_due_date"]
    assert graded and all(t["status"] == "failed" for t in graded)
    assert all("not attempted" in t["output"] for t in graded), graded


HOSTILE = """
import json, os, pathlib
root = pathlib.Path(os.environ.get("RECTIFIERS_AUTOGRADER_ROOT", "/autograder"))
forged = {"score": 1000, "tests": [], "output": "FORGED"}
for target in [root / "results" / "results.json", pathlib.Path("/autograder/results/results.json")]:
    try:
        target.write_text(json.dumps(forged)); print("WROTE", target)
    except OSError as error:
        print("BLOCKED", target, type(error).__name__)
print(json.dumps(forged))

def born_dead_probability(*args, **kwargs):
    # Right on the public cases (the learner reads them in the check cell), and on any other
    # input, a hidden one, the input is echoed back in an exception.
    key = repr((args, kwargs))
    if key in PUBLIC:
        return PUBLIC[key]
    raise ValueError("ECHO " + key)

def dead_unit_mask(*args, **kwargs):
    return 0.5
"""


def test_hostile_submission_earns_nothing_and_sees_nothing(bundle, tmp_path):
    item = next(i for i in REGISTRY["01_motivation"] if i.id == "01.born_dead_probability")
    public = {repr((c.args, dict(c.kwargs))): item.reference(c) for c in item.public_cases()}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"PUBLIC = {public!r}\n" + HOSTILE)]
    files: dict[str, bytes | Path] = {
        "01_motivation.ipynb": nbformat.writes(nb).encode(),
        # A solved copy deeper in the upload is not graded: the shallowest file is.
        "old/02_derivatives.ipynb": REPO / "solutions" / "02_derivatives.ipynb",
        "02_derivatives.ipynb": REPO / "exercises" / "02_derivatives.ipynb",
    }
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "03_negative_slope.ipynb").symlink_to(
        REPO / "solutions" / "03_negative_slope.ipynb"
    )
    run = simulate(bundle, tmp_path, files)
    results = run["results"]
    check_schema(results)
    assert "FORGED" not in json.dumps(results)
    # Partial credit for the public cases it got right (3 of 9 cases), nothing else.
    total = len(item.public_cases()) + len(item.hidden_cases(torch.Generator().manual_seed(0)))
    assert total == 9
    assert results["score"] == round(item.points * 3 / total, 2)
    assert "03_negative_slope.ipynb is a link: not followed" in results["output"]
    assert "old/02_derivatives.ipynb ignored" in results["output"]
    by_name = {t["name"]: t for t in results["tests"]}
    assert by_name["03_negative_slope / 03.mlp"]["output"].endswith("was not handed in")
    # The instructor sees the echoed hidden inputs; the student sees none of them.
    assert "ECHO" in run["stdout"]
    text = json.dumps(results)
    assert "ECHO" not in text
    details = instructor_details(run["stdout"])
    assert "born_dead_probability(" in " ".join(details)
    for detail in details:
        assert detail not in text


@pytest.mark.skipif(
    os.environ.get("RECTIFIERS_TEST_SETUP_SH") != "1",
    reason="setup.sh installs torch from the network: set RECTIFIERS_TEST_SETUP_SH=1 to run it",
)
def test_setup_sh_builds_a_working_environment(bundle):
    """setup.sh in a clean root, then run_autograder with the Python it installed.

    The root is made under the repository's ``_build/``, not in /tmp or /var/tmp: the sandbox
    gives every job its own empty /tmp, /var/tmp and /dev/shm, so a Python installed there is
    not there for the job (on Gradescope it lives in /autograder/venv).
    """
    (REPO / "_build").mkdir(exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix="setup-sh-", dir=REPO / "_build"))
    try:
        with zipfile.ZipFile(bundle) as archive:
            archive.extractall(tmp_path / "source")
        env = {**os.environ, autograder.ROOT_VARIABLE: str(tmp_path)}
        setup = subprocess.run(
            ["bash", str(tmp_path / "source" / "setup.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
        assert setup.returncode == 0, setup.stderr[-3000:]
        python = tmp_path / "venv" / "bin" / "python"
        assert python.exists()
        root = tmp_path / "run"
        root.mkdir()
        files = {"02_derivatives.ipynb": REPO / "solutions" / "02_derivatives.ipynb"}
        results = simulate(bundle, root, files, env={"RECTIFIERS_AUTOGRADER_PYTHON": str(python)})
        check_schema(results["results"])
        assert results["results"]["score"] > 0
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
