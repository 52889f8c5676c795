"""The dependency layers of pyproject.toml say exactly what the code needs.

``pip install .`` must give the package with what ``src/`` imports, no more and no less, and
``.[notebooks]`` must add everything the chapter and exercise notebooks import. Both are
compared here with the imports found in the code (the ``ast`` of every module, the code cells of
every notebook), mapped to distributions through the installed metadata of this environment.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import nbformat
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "rectifiers"
NOTEBOOK_FOLDERS = ("chapters", "solutions", "exercises")


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


def top_level_imports(source: str) -> set[str]:
    """Top-level module names of the absolute imports in ``source`` (relative ones skipped)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m != PACKAGE}


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    """Each module's installed distribution names (canonical); a module none provides is kept."""
    provided = packages_distributions()
    return {m: {canonicalize_name(d) for d in provided.get(m, [m])} for m in modules}


def closure(names: set[str], extras: frozenset[str] = frozenset()) -> set[str]:
    """``names`` and everything they require in this environment (markers evaluated here)."""
    seen, todo = set(), [(name, extras) for name in names]
    while todo:
        name, wanted = todo.pop()
        if name in seen and not wanted:
            continue
        seen.add(name)
        for line in requires(name) or []:
            req = Requirement(line)
            if req.marker is not None and not any(
                req.marker.evaluate({**default_environment(), "extra": extra})
                for extra in (wanted or {""})
            ):
                continue
            child = canonicalize_name(req.name)
            if child not in seen or req.extras:
                todo.append((child, frozenset(req.extras)))
    return seen


def notebook_code(path: Path) -> str:
    """The code cells of a notebook, IPython magics and shell lines dropped."""
    cells = nbformat.read(path, as_version=4).cells
    lines = [
        line
        for cell in cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if not line.lstrip().startswith(("%", "!"))
    ]
    return "\n".join(lines)


def test_top_level_imports_reads_absolute_imports_only():
    source = "import a.b, c\nfrom d.e import f\nfrom . import g\nfrom .h import i\n"
    assert top_level_imports(source) == {"a", "c", "d"}


def test_closure_follows_requirements_and_extras():
    # pytest-cov requires coverage[toml] and pytest: both are in its closure, and so is pluggy,
    # which pytest requires.
    found = closure({"pytest-cov"})
    assert {"pytest-cov", "coverage", "pytest", "pluggy"} <= found
    assert "torch" not in found


def test_the_package_declares_exactly_what_src_imports():
    imports = set()
    for module in sorted((REPO / "src" / PACKAGE).rglob("*.py")):
        imports |= top_level_imports(module.read_text(encoding="utf-8"))
    needed = set().union(*distributions_of(third_party(imports)).values())
    declared = _names(_project()["dependencies"])
    assert needed - declared == set(), "src imports these, pyproject.toml does not declare them"
    assert declared - needed == set(), "pyproject.toml declares these, src never imports them"


def test_the_notebooks_extra_provides_every_notebook_import():
    project = _project()
    provided = closure(
        _names(project["dependencies"]) | _names(project["optional-dependencies"]["notebooks"])
    )
    notebooks = [p for folder in NOTEBOOK_FOLDERS for p in sorted((REPO / folder).glob("*.ipynb"))]
    assert len(notebooks) >= 18, (
        f"expected the chapters, solutions and exercises, found {notebooks}"
    )
    missing = {}
    for path in notebooks:
        modules = third_party(top_level_imports(notebook_code(path)))
        for module, dists in distributions_of(modules).items():
            if not dists & provided:
                missing.setdefault(module, []).append(path.relative_to(REPO).as_posix())
    assert missing == {}, "imported by notebooks, not installed by `pip install .[notebooks]`"


@pytest.mark.parametrize("name", ["ipykernel", "jupyterlab", "myst-nb", "jupyterlab-myst"])
def test_the_notebooks_extra_runs_a_notebook_in_jupyterlab(name):
    # A kernel, the JupyterLab server, `glue` (myst_nb) and the MyST renderer for JupyterLab.
    assert name in _names(_project()["optional-dependencies"]["notebooks"])


def test_the_lock_pins_every_declared_dependency():
    lock = (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines()
    pinned = {canonicalize_name(Requirement(line).name) for line in lock if line and line[0] != "#"}
    project = _project()
    declared = _names(project["dependencies"]) | _names(
        project["optional-dependencies"]["notebooks"]
    )
    assert declared - pinned == set(), "declared in pyproject.toml but not pinned in the lock"


def test_jupyterlab_loads_the_myst_extension():
    # JupyterLab lists an extension built against other shared packages than its own as
    # incompatible (an "X" instead of "OK") and does not load it: the extra's JupyterLab range
    # must be one jupyterlab-myst works with.
    jupyter = Path(sys.executable).with_name("jupyter")
    listing = subprocess.run(
        [str(jupyter), "labextension", "list"], capture_output=True, text=True, timeout=120
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)  # colour codes
    myst = [line.split() for line in text.splitlines() if "jupyterlab-myst " in line]
    assert [words[2:4] for words in myst] == [["enabled", "OK"]], text
    assert "is not compatible" not in text
