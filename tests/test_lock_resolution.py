"""Which torch the lock resolves to on each platform, proved without the internet.

``requirements.lock`` is resolved against two package indexes served on loopback: a mock PyPI
and a mock of PyTorch's CPU index, holding stub wheels (metadata only) named like the real ones:
PyPI has ``torch-2.13.0`` for Linux x86-64 (the CUDA build), Linux aarch64, macOS 14 arm64 and
Windows; the CPU index has ``torch-2.13.0+cpu`` for Linux and Windows and copies of some common
packages, as the real one does. The resolvers are called as the Makefile calls them, with the
CPU index as an extra index on Linux x86-64 only: uv (``uv pip compile --python-platform``,
which evaluates the lock's markers for each platform) and pip (this interpreter's platform only:
pip evaluates markers for the running interpreter).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
TORCH = "2.13.0"
PYPI_TORCH_TAGS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_28_aarch64",
    "macosx_14_0_arm64",
    "win_amd64",
]
CPU_TORCH_TAGS = ["manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64"]
# The real CPU index also carries some of torch's dependencies; a resolver must still take the
# pinned versions wherever they are.
CPU_INDEX_ALSO = ["numpy", "filelock", "jinja2", "sympy", "typing-extensions"]
# uv's names for the platforms of the README's table (macOS: 14, by MACOSX_DEPLOYMENT_TARGET).
PLATFORMS = {
    "linux-x86_64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "macos-arm64": "aarch64-apple-darwin",
    "windows-x86_64": "x86_64-pc-windows-msvc",
}
#: Where the Makefile adds PyTorch's CPU index (elsewhere PyPI's wheel is the one to take).
CPU_INDEX_PLATFORMS = {"linux-x86_64"}


def lock_pins() -> list[Requirement]:
    lines = LOCK.read_text(encoding="utf-8").splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def stub_wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any") -> Path:
    """A wheel holding only its metadata: what a resolver reads. Written with zipfile because
    no packaging tool builds a wheel for a distribution that has no files of its own."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: false\nTag: {tag}\n"
        ),
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def write_index(root: Path, wheels: dict[str, list[Path]]) -> None:
    """A PEP 503 simple index: ``root/<name>/index.html`` links to the wheels beside it."""
    for name, paths in wheels.items():
        project = root / canonicalize_name(name)
        project.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="{p.name}">{p.name}</a>\n' for p in paths)
        (project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


def build_indexes(root: Path, *, cpu_torch: bool = True) -> None:
    pypi, cpu = root / "pypi", root / "cpu"
    pypi_wheels: dict[str, list[Path]] = {}
    cpu_wheels: dict[str, list[Path]] = {}
    for pin in lock_pins():
        name, version = pin.name, next(iter(pin.specifier)).version
        if canonicalize_name(name) == "torch":
            continue
        folder = pypi / canonicalize_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        pypi_wheels[name] = [stub_wheel(folder, name, version)]
        if canonicalize_name(name) in CPU_INDEX_ALSO:
            folder = cpu / canonicalize_name(name)
            folder.mkdir(parents=True, exist_ok=True)
            cpu_wheels[name] = [stub_wheel(folder, name, version)]
    (pypi / "torch").mkdir(parents=True)
    pypi_wheels["torch"] = [
        stub_wheel(pypi / "torch", "torch", TORCH, f"cp311-cp311-{tag}") for tag in PYPI_TORCH_TAGS
    ]
    if cpu_torch:
        (cpu / "torch").mkdir(parents=True)
        cpu_wheels["torch"] = [
            stub_wheel(cpu / "torch", "torch", f"{TORCH}+cpu", f"cp311-cp311-{tag}")
            for tag in CPU_TORCH_TAGS
        ]
    write_index(pypi, pypi_wheels)
    write_index(cpu, cpu_wheels)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass


@functools.cache
def _uv() -> str | None:
    found = Path(sys.executable).with_name("uv")
    return str(found) if found.exists() else shutil.which("uv")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("indexes")
    build_indexes(root)
    yield from _serve(root)


def _serve(root: Path) -> Iterator[tuple[str, str]]:
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield f"{base}/pypi/", f"{base}/cpu/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    """No user or machine configuration, no local wheels, no caches: only the two mock indexes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_CONFIG="1",
        # One cache for the module: the stub wheels' metadata is read once, not per platform.
        UV_CACHE_DIR=str(tmp_path.parent / "uv-cache"),
        MACOSX_DEPLOYMENT_TARGET="14.0",
        NO_PROXY="127.0.0.1",
    )
    return env


def uv_resolve(
    tmp_path: Path, pypi: str, cpu: str | None, target: str
) -> dict[str, tuple[str, str]]:
    """``{name: (version, index URL)}`` that uv resolves the lock to for ``target``, with the
    extra index ``cpu`` (None: PyPI only) and the index strategy the Makefile passes."""
    command = [
        _uv(),
        "pip",
        "compile",
        str(LOCK),
        "--python-platform",
        target,
        "--python-version",
        "3.11",
        "--index-url",
        pypi,
        *(["--extra-index-url", cpu, "--index-strategy", "unsafe-best-match"] if cpu else []),
        "--emit-index-annotation",
        "--no-header",
        "--quiet",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=120
    )
    assert done.returncode == 0, done.stderr
    resolved, last = {}, None
    for line in done.stdout.splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if pin:
            last = canonicalize_name(pin.group(1))
            resolved[last] = (pin.group(2), "")
        source = re.match(r"^\s+# from (\S+)", line)
        if source and last:
            resolved[last] = (resolved[last][0], source.group(1))
    return resolved


needs_uv = pytest.mark.skipif(_uv() is None, reason="uv is not installed (make installs it)")


def test_stub_wheels_are_named_like_the_real_ones(tmp_path):
    build_indexes(tmp_path)
    names = sorted(p.name for p in (tmp_path / "cpu" / "torch").glob("*.whl"))
    assert "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl" in names
    assert (tmp_path / "pypi" / "torch" / "torch-2.13.0-cp311-cp311-macosx_14_0_arm64.whl").exists()
    with zipfile.ZipFile(
        tmp_path / "pypi" / "torch" / f"torch-{TORCH}-cp311-cp311-win_amd64.whl"
    ) as w:
        assert "Version: 2.13.0" in w.read("torch-2.13.0.dist-info/METADATA").decode()


@needs_uv
@pytest.mark.parametrize(
    ("platform_name", "version", "index"),
    [
        ("linux-x86_64", f"{TORCH}+cpu", "cpu"),
        ("linux-aarch64", TORCH, "pypi"),
        ("macos-arm64", TORCH, "pypi"),
        ("windows-x86_64", TORCH, "pypi"),
    ],
)
def test_uv_resolves_torch_for_each_platform(tmp_path, indexes, platform_name, version, index):
    pypi, cpu = indexes
    extra = cpu if platform_name in CPU_INDEX_PLATFORMS else None
    resolved = uv_resolve(tmp_path, pypi, extra, PLATFORMS[platform_name])
    assert resolved["torch"] == (version, {"pypi": pypi, "cpu": cpu}[index])
    # Everything else is the lock's own pin, wherever it is found.
    for pin in lock_pins():
        name = canonicalize_name(pin.name)
        if name != "torch":
            assert resolved[name][0] == next(iter(pin.specifier)).version, name
    assert len(resolved) == len({canonicalize_name(p.name) for p in lock_pins()})


@needs_uv
def test_linux_without_the_cpu_index_fails_instead_of_taking_the_cuda_wheel(tmp_path):
    # The +cpu pin has no fallback: when the CPU index lacks it, resolution fails loudly rather
    # than installing PyPI's CUDA build of the same version.
    build_indexes(tmp_path, cpu_torch=False)
    for pypi, cpu in _serve(tmp_path):
        with pytest.raises(AssertionError, match=r"(?s)no version of torch.*==2\.13\.0\+cpu"):
            uv_resolve(tmp_path, pypi, cpu, PLATFORMS["linux-x86_64"])


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="pip evaluates the lock's markers for the running interpreter: Linux x86-64 here",
)
def test_pip_picks_the_cpu_wheel_on_linux_x86_64(tmp_path, indexes):
    pypi, cpu = indexes
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "--index-url",
        pypi,
        "--extra-index-url",
        cpu,
        "--requirement",
        str(LOCK),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=300
    )
    assert done.returncode == 0, done.stderr
    with open(report, encoding="utf-8") as stream:
        installs = {
            canonicalize_name(item["metadata"]["name"]): item
            for item in json.load(stream)["install"]
        }
    torch = installs["torch"]
    assert torch["metadata"]["version"] == f"{TORCH}+cpu"
    assert unquote(torch["download_info"]["url"]) == (
        f"{cpu}torch/torch-{TORCH}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    )
    assert len(installs) == len({canonicalize_name(p.name) for p in lock_pins()})
