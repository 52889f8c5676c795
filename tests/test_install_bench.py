"""``make bench``'s set-up benchmark (``benchmarks/setup.py``): its figures, budgets and table.

The installs themselves take minutes and are measured by ``make bench``; here ``install`` is
replaced by canned figures, and the real ``install`` is checked to fail loudly on a failing make.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import _report
from benchmarks import setup as bench_setup
from benchmarks._core import Options

FIGURES = {
    ("pip", "cold"): 105.1,
    ("pip", "warm"): 103.6,
    ("uv", "cold"): 14.4,
    ("uv", "warm"): 9.4,
}


def fake_install(torch: str):
    def install(repo: Path, work: Path, installer: str, cache: Path) -> dict:
        work.mkdir()
        return {"seconds": FIGURES[installer, work.name.split("-")[1]], "torch": torch}

    return install


def test_both_installers_both_caches_and_the_speedups(monkeypatch):
    monkeypatch.setattr(bench_setup, "install", fake_install("2.13.0+cpu"))
    results, budgets = bench_setup.run(Options())
    assert results["installers"]["pip"]["cold"]["seconds"] == 105.1
    assert results["speedup_cold"] == round(105.1 / 14.4, 1)
    assert results["speedup_warm"] == round(103.6 / 9.4, 1)
    assert [(b["id"], b["measured"], b["status"]) for b in budgets] == [
        ("setup:uv:warm", 9.4, "pass"),
        ("setup:uv:cold", 14.4, "pass"),
    ]
    table = "\n".join(_report.RENDERERS["setup"](results))
    assert "| pip (before: `make INSTALLER=pip`) | 105.1 | 103.6 | `2.13.0+cpu` |" in table
    assert "**7.3x** faster than pip with an empty cache" in table


def test_quick_measures_uv_only_and_a_cuda_torch_is_flagged(monkeypatch):
    monkeypatch.setattr(bench_setup, "install", fake_install("2.13.0"))
    results, budgets = bench_setup.run(Options(quick=True))
    assert list(results["installers"]) == ["uv"]
    assert "speedup_warm" not in results
    assert all(b["note"] == "an install did not get the CPU build of torch" for b in budgets)


def test_a_failing_make_is_an_error(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Makefile").write_text(".venv/.installed:\n\t@echo broken; exit 3\n")
    for command in (["init", "-q"], ["add", "Makefile"], ["commit", "-qm", "x"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *command], cwd=repo, check=True
        )
    with pytest.raises(RuntimeError, match="make INSTALLER=uv failed"):
        bench_setup.install(repo, tmp_path / "work", "uv", tmp_path / "cache")
