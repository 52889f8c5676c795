"""The notebooks' install cell, in a bare Jupyter such as Colab, without the internet.

The first code cell of every chapter and exercise notebook installs ``rectifiers[notebooks]``
when ``rectifiers`` is missing, from the book's repository and branch (``_config.yml``), or from
``$RECTIFIERS_SOURCE``. Here a fresh virtual environment gets only what Colab preinstalls (torch,
numpy, matplotlib, ipykernel and what they require, hard-linked from this project's ``.venv``);
the cell's pip is pointed at a local wheel of the package and a local wheelhouse (no index), so
whatever the package and its notebooks extra fail to declare is missing and the notebook fails.
Then an exercise set and a chapter are executed in that environment's kernel: the first one
installs, the second must find everything in place and install nothing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_install_deps import closure

REPO = Path(__file__).resolve().parents[1]
#: What a Colab runtime has before the first cell (with their own requirements).
COLAB_PREINSTALLS = {"torch", "numpy", "matplotlib", "ipykernel"}
EXERCISE, CHAPTER = "exercises/02_derivatives.ipynb", "chapters/02_derivatives.ipynb"
#: Written by the installer, not part of a wheel.
SKIPPED_METADATA = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
INSTALL_MARK = "# Colab or a bare Jupyter: installs this book's package"
ISOLATED = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": ""}


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, **ISOLATED}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def _link(source: Path, target: Path) -> None:
    """Hard link (same file system: instant; unlinking it leaves ``.venv`` intact), else copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _files(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    """``(path relative to site-packages, file)`` of a distribution's files, bytecode left out."""
    found = []
    for entry in dist.files or []:
        name = entry.as_posix()
        if "__pycache__" in name or name.endswith(".pyc"):
            continue
        path = Path(dist.locate_file(entry))
        if path.is_file():
            found.append((name, path))
    return found


def preinstall(dist: metadata.Distribution, site_packages: Path) -> None:
    """Install a distribution of this environment into another one, as pip had put it there."""
    for name, path in _files(dist):
        if not name.startswith("../"):  # console scripts and data files: not needed to import
            _link(path, site_packages / name)


def repack(dist: metadata.Distribution, wheelhouse: Path) -> Path:
    """A wheel of an installed distribution, for an offline wheelhouse.

    Written by hand because no maintained tool turns an installed distribution back into a
    wheel (pypa/wheel's ``pack`` takes an unpacked wheel, and is a command, not an API). The
    layout is the wheel format's: files outside site-packages go to ``.data/`` (console scripts
    are left for the installer to regenerate), RECORD holds every file's hash; stored, not
    compressed, because it is unpacked once, at once.
    """
    files = _files(dist)
    info = next(n for n, _ in files if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
    info_dir = info.split("/")[0]
    stem = info_dir.removesuffix(".dist-info")
    scripts = {
        ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")
    }
    members = []
    for name, path in files:
        if name.startswith(f"{info_dir}/") and name.split("/")[1] in SKIPPED_METADATA:
            continue
        if name.startswith("../"):
            parts = Path(os.path.normpath(Path("lib/python3/site-packages") / name)).parts
            if parts[0] == "bin":
                if parts[-1] in scripts:
                    continue
                name = "/".join((f"{stem}.data", "scripts", *parts[1:]))
            else:
                name = "/".join((f"{stem}.data", "data", *parts))
        members.append((name, path))
    tags = [
        line.split(":", 1)[1].strip().split("-")
        for line in (Path(dist.locate_file(f"{info_dir}/WHEEL"))).read_text().splitlines()
        if line.startswith("Tag:")
    ]
    tag = "-".join(".".join(sorted({t[i] for t in tags})) for i in range(3))
    wheel = wheelhouse / f"{stem}-{tag}.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for name, path in members:
            data = path.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
            archive.writestr(name, data)
        record.append(f"{info_dir}/RECORD,,")
        archive.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return wheel


def build_package_wheel(work: Path, wheelhouse: Path) -> Path:
    """The package's wheel, built offline from a copy of the sources (the checkout stays clean)."""
    source = work / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--wheel-dir", str(wheelhouse), str(source)]
    )
    return next(wheelhouse.glob("rectifiers-*.whl"))


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["notebooks"]
    return {canonicalize_name(Requirement(line).name) for line in lines}


def execute(notebook: str, run_dir: Path, allowed: list[str]) -> nbformat.NotebookNode:
    """Run a copy of a notebook of the repository in the bare kernel, in a folder of its own."""
    nb = nbformat.read(REPO / notebook, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import importlib.metadata, rectifiers\n"
            "print(rectifiers.__file__, importlib.metadata.version('myst-nb'))"
        )
    )
    run_dir.mkdir()
    client = NotebookClient(
        nb,
        kernel_name="bare",
        timeout=600,
        allow_error_names=allowed,
        resources={"metadata": {"path": str(run_dir)}},
    )
    client.execute()
    return nb


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_install_cell_matches_the_books_repository():
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))["repository"]
    expected = f'"git+{config["url"].rstrip("/")}@{config["branch"]}"'
    notebooks = sorted(
        p
        for folder in ("chapters", "solutions", "exercises")
        for p in (REPO / folder).glob("0*.ipynb")
    )
    assert len(notebooks) == 18
    for path in notebooks:
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        first = cells[0]
        assert first.source.startswith(INSTALL_MARK), f"{path.name}: first code cell"
        assert expected in first.source, f"{path.name}: not installing from {expected}"
        assert "remove-cell" in first.metadata.get("tags", []), f"{path.name}: shown on the page"
        assert sum(INSTALL_MARK in c.source for c in cells) == 1


@pytest.mark.slow
def test_an_exercise_set_and_a_chapter_run_in_a_bare_jupyter(tmp_path, monkeypatch):
    # 1. A fresh environment with only what Colab preinstalls.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"]).stdout.strip()
    )
    colab = closure(COLAB_PREINSTALLS)
    for name in sorted(colab):
        preinstall(metadata.distribution(name), site)
    probe = "import importlib.util as u; print([u.find_spec(m) is None for m in {}])".format(
        ("torch", "rectifiers", "myst_nb")
    )
    assert _run([str(python), "-c", probe]).stdout.strip() == "[False, True, True]"

    # 2. The wheelhouse the cell's pip may use: the package's wheel and everything it and its
    #    notebooks extra require beyond the preinstalls, repacked from this environment.
    wheelhouse = tmp_path / "wheelhouse"
    wheel = build_package_wheel(tmp_path / "build", wheelhouse)
    for name in sorted(closure(declared()) - colab - {"rectifiers"}):
        repack(metadata.distribution(name), wheelhouse)

    # 3. A kernel of that environment whose pip sees only the wheelhouse.
    kernels = tmp_path / "jupyter" / "kernels" / "bare"
    kernels.mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bare",
        "language": "python",
        "env": {
            **ISOLATED,
            "RECTIFIERS_SOURCE": wheel.as_uri(),
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(wheelhouse),
            # Bytecode for ~90 packages would double the install's time; nothing else changes.
            "PIP_NO_COMPILE": "1",
            "HOME": str(tmp_path / "home"),
            "OMP_NUM_THREADS": "2",
        },
    }
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    # 4. The exercise set installs the package. Its blanks raise NotImplementedError, as a
    #    learner sees before answering, and the cells that use a blank's result then raise
    #    NameError; no other error is allowed (a missing module would be ModuleNotFoundError).
    (tmp_path / "home").mkdir()
    nb = execute(EXERCISE, tmp_path / "exercise", ["NotImplementedError", "NameError"])
    errors = [o.ename for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    blanks = sum("replace this line with your solution" in c.source for c in nb.cells)
    assert errors.count("NotImplementedError") == blanks > 0
    first_blank = next(i for i, c in enumerate(nb.cells) if "with your solution" in c.source)
    assert not [
        o for c in nb.cells[:first_blank] for o in c.get("outputs", []) if o.output_type == "error"
    ]
    where, myst_nb_version = _text(nb.cells[-1]).split()
    assert Path(where).is_relative_to(site), f"rectifiers imported from {where}"
    assert myst_nb_version == metadata.version("myst-nb")
    installed = _run([str(python), "-m", "pip", "list", "--format", "json"]).stdout
    names = {canonicalize_name(d["name"]) for d in json.loads(installed)}
    assert {"rectifiers", "jupyterlab", "jupyterlab-myst", "myst-nb", "scipy"} <= names

    # 5. The chapter, now that the package is there: the cell must not install again (with the
    #    wheelhouse gone, a pip run would fail), and every cell runs without an error.
    shutil.rmtree(wheelhouse)
    nb = execute(CHAPTER, tmp_path / "chapter", [])
    assert Path(_text(nb.cells[-1]).split()[0]).is_relative_to(site)
