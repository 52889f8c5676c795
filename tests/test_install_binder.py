"""Binder installs what the notebooks need, at the lock's versions, and nothing of the toolchain.

``binder/requirements.txt`` pins the packages the notebooks need beyond the server packages
Binder's image ships; ``binder/postBuild`` installs the package with its notebooks extra. These
tests hold the two files to ``requirements.lock`` and ``pyproject.toml``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: What repo2docker's image already has (its server environment) and Binder keeps.
BINDER_SHIPS = {
    "jupyterlab",
    "notebook",
    "jupyter-server",
    "ipykernel",
    "ipython",
    "traitlets",
    "nbformat",
    "jupyter-client",
}
#: The book and test toolchain: never on Binder.
TOOLCHAIN = {
    "jupyter-book",
    "sphinx",
    "sphinx-book-theme",
    "pytest",
    "nbval",
    "playwright",
    "hypothesis",
    "coverage",
    "ruff",
    "uv",
}


def _requirements(path: Path) -> tuple[list[str], dict[str, Requirement]]:
    options, pins = [], {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req
    return options, pins


def _linux_x86_64(req: Requirement) -> bool:
    env = {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"}
    return req.marker is None or req.marker.evaluate(env)


def _lock() -> dict[str, str]:
    """The lock's version of every package on Linux x86-64 (Binder's platform)."""
    lines = (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {
        canonicalize_name(req.name): str(next(iter(req.specifier)).version)
        for req in pins
        if _linux_x86_64(req)
    }


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["notebooks"]
    return {canonicalize_name(Requirement(line).name) for line in lines}


def test_binder_pins_are_the_locks_versions():
    _, pins = _requirements(BINDER / "requirements.txt")
    lock = _lock()
    assert pins, "binder/requirements.txt pins nothing"
    for name, req in pins.items():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name} is not pinned with =="
        assert specs[0].version == lock.get(name), (
            f"{name}: binder {specs[0].version}, lock {lock.get(name)}"
        )


def test_binder_gets_the_cpu_torch_from_the_cpu_index():
    options, pins = _requirements(BINDER / "requirements.txt")
    assert str(pins["torch"].specifier) == "==2.13.0+cpu"
    assert f"--extra-index-url {CPU_INDEX}" in options
    assert not [o for o in options if o.startswith(("-r", "--requirement", "-c", "--constraint"))]


def test_binder_has_every_declared_need_and_keeps_its_server():
    _, pins = _requirements(BINDER / "requirements.txt")
    assert _declared() - BINDER_SHIPS - set(pins) == set(), "declared but not installed on Binder"
    assert set(pins) & BINDER_SHIPS == set(), "would replace Binder's own server packages"
    assert set(pins) & TOOLCHAIN == set(), "the book/test toolchain does not belong on Binder"
    assert set(pins) <= _declared(), "binder pins something the package does not declare"


def test_postbuild_installs_the_package_with_its_notebooks_extra_without_upgrading():
    script = (BINDER / "postBuild").read_text(encoding="utf-8")
    commands = [line for line in script.splitlines() if line.startswith("python -m pip")]
    assert commands == ['python -m pip install --no-cache-dir --editable ".[notebooks]"']
    assert (BINDER / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"
    assert (BINDER / "runtime.txt").read_text(encoding="utf-8").strip() == "python-3.11"
