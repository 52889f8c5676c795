"""The helpers of ``benchmarks/`` (``make bench``): statistics, budgets, records, tables.

No test here asserts a duration: timings belong to ``make bench``, not to tests. The tests
check what the harness computes from measurements, and that it measures what it says.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# `benchmarks` is a folder of the repository, not an installed package: importable from the
# repository root, which `python -m pytest` (as `make test` runs it) puts on sys.path, but a bare
# `pytest` does not.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks import (  # noqa: E402  # noqa: E402
    _core,
    _measure,
    _report,
    book,
    grading,
    kernels,
    layers,
    make_test,
    microtimings,
    notebooks,
    training,
)

# One intra-op thread: on a busy 2-core machine two threads splitting tiny operations mostly
# wait for each other (see conftest.py), and nothing here measures threading.
pytestmark = pytest.mark.usefixtures("single_thread")

# --- _core -------------------------------------------------------------------------------------


def test_median_of_odd_and_even_counts():
    assert _core.median([3, 1, 2]) == 2.0
    assert _core.median([4.0, 1.0, 2.0, 3.0]) == 2.5


@pytest.mark.parametrize(
    "values, error",
    [
        ([], ValueError),
        ([1.0, float("nan")], ValueError),
        ([1.0, True], TypeError),
        (["1"], TypeError),
    ],
)
def test_median_refuses_bad_values(values, error):
    with pytest.raises(error, match="values"):
        _core.median(values)


@pytest.mark.parametrize(
    "measured, comparison, status",
    [
        (10.0, "<=", "pass"),
        (10.5, "<=", "miss"),
        (5.0, ">=", "pass"),
        (4.9, ">=", "miss"),
        (None, "<=", "not measured"),
    ],
)
def test_budget_status(measured, comparison, status):
    entry = _core.budget(
        "x:y", "what", measured, 10.0 if comparison == "<=" else 5.0, comparison, "s"
    )
    assert entry["status"] == status
    assert entry["id"] == "x:y" and entry["measured"] == measured and entry["note"] is None
    assert _core.budget("a", "b", None, 1.0, "<=", "s", note="why")["note"] == "why"


def test_budget_refuses_bad_arguments():
    with pytest.raises(ValueError, match="comparison"):
        _core.budget("a", "b", 1.0, 2.0, "<", "s")
    with pytest.raises(TypeError, match="measured"):
        _core.budget("a", "b", True, 2.0, "<=", "s")
    with pytest.raises(TypeError, match="measured"):
        _core.budget("a", "b", float("nan"), 2.0, "<=", "s")
    with pytest.raises(TypeError, match="limit"):
        _core.budget("a", "b", 1.0, "2", "<=", "s")


def test_options_validation():
    assert _core.Options().runs == 3 and _core.Options().repo == _core.REPO
    with pytest.raises(ValueError, match="runs"):
        _core.Options(runs=0)
    with pytest.raises(TypeError, match="runs"):
        _core.Options(runs=True)
    with pytest.raises(TypeError, match="quick"):
        _core.Options(quick=1)
    with pytest.raises(TypeError, match="repo"):
        _core.Options(repo=str(_core.REPO))


def test_machine_records_what_the_issue_asks_for():
    record = _core.machine()
    assert record["torch_version"] == torch.__version__
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["logical_cores"] == os.cpu_count()
    assert record["cpu_model"]
    json.dumps(record)  # it goes into bench.json as is


def test_git_state_of_the_repository_and_of_a_folder_outside_git(tmp_path):
    state = _core.git_state(_core.REPO)
    assert len(state["commit"]) == 40 and isinstance(state["dirty"], bool)
    assert _core.git_state(tmp_path) == {"commit": None, "dirty": None}


# --- _measure ----------------------------------------------------------------------------------


def test_phase_times():
    assert _measure.phase_times([("a", 1.0), ("b", 4.0)], 10.0) == {"a": 3.0, "b": 6.0}
    assert _measure.phase_times([], 3.0) == {}
    with pytest.raises(ValueError, match="ends before"):
        _measure.phase_times([("a", 5.0)], 1.0)


def test_high_water_mark():
    assert _measure.high_water_mark(os.getpid()) > 10 * 2**20  # this Python with torch loaded
    assert _measure.high_water_mark(2**22 + 12345) == 0  # no such process


def test_tree_memory_refuses_bad_arguments():
    with pytest.raises(ValueError, match="pid"):
        _measure.TreeMemory(0)
    with pytest.raises(ValueError, match="interval"):
        _measure.TreeMemory(os.getpid(), interval=0)


# A child that starts a grandchild holding 200 MiB for a second (several sampling intervals),
# printing a marker before each step.
_TREE = """
import subprocess, sys
print("phase one", flush=True)
subprocess.run([sys.executable, "-c",
                "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
                "print('held'); time.sleep(1)"])
print("phase two", flush=True)
print("done")
"""


def test_run_command_measures_the_whole_tree_and_finds_phases(tmp_path):
    outcome = _measure.run_command(
        [sys.executable, "-c", _TREE],
        cwd=tmp_path,
        timeout=60,
        markers=[("one", "phase one"), ("two", "phase two")],
    )
    assert outcome["returncode"] == 0 and not outcome["timed_out"]
    assert list(outcome["phases"]) == ["one", "two"]
    assert outcome["tail"][-3:] == ["held", "phase two", "done"]
    # The 200 MiB were allocated two levels down: only a tree-wide measure sees them.
    assert outcome["peak_rss_mib"] >= 200


def test_run_command_kills_on_timeout(tmp_path):
    outcome = _measure.run_command(
        [sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path, timeout=0.5
    )
    assert outcome["timed_out"] and outcome["returncode"] is None


def test_run_command_reports_failure(tmp_path):
    outcome = _measure.run_command(
        [sys.executable, "-c", "raise SystemExit(3)"], cwd=tmp_path, timeout=60
    )
    assert outcome["returncode"] == 3 and outcome["phases"] == {}


# --- notebooks ---------------------------------------------------------------------------------


def _notebook(path: Path, *codes: str, markdown: str = "Some prose.") -> Path:
    nb = new_notebook(cells=[new_markdown_cell(markdown), *(new_code_cell(c) for c in codes)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_discover_takes_top_level_notebooks_chapters_first(tmp_path):
    for name in (
        "solutions/01_a.ipynb",
        "chapters/02_b.ipynb",
        "chapters/01_c.ipynb",
        "solutions/_src/x.ipynb",
        "exercises/01_a.ipynb",
    ):
        _notebook(tmp_path / name)
    found = [str(p.relative_to(tmp_path)) for p in notebooks.discover(tmp_path)]
    assert found == ["chapters/01_c.ipynb", "chapters/02_b.ipynb", "solutions/01_a.ipynb"]


def _timed_cell(source: str, begin: str, end: str):
    cell = new_code_cell(source)
    cell.metadata["execution"] = {"iopub.execute_input": begin, "shell.execute_reply": end}
    return cell


def test_cell_seconds_and_slowest_cells():
    cells = [
        new_markdown_cell("x"),
        _timed_cell("fast()", "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.250000Z"),
        _timed_cell("\n\nslow()\nmore", "2026-01-01T00:00:01Z", "2026-01-01T00:00:04.5Z"),
        new_code_cell("never_run()"),
    ]
    nb = new_notebook(cells=cells)
    assert notebooks.cell_seconds(cells[1]) == pytest.approx(0.25)
    assert notebooks.cell_seconds(cells[3]) is None
    slowest = notebooks.slowest_cells(nb)
    assert slowest == [
        {"index": 2, "seconds": 3.5, "source": "slow()"},
        {"index": 1, "seconds": 0.25, "source": "fast()"},
    ]


def test_summarise_takes_medians_and_the_largest_peak():
    runs = [
        {
            "seconds": s,
            "startup_seconds": 1.0,
            "cells_seconds": s - 1,
            "shutdown_seconds": 0.5,
            "peak_rss_mib": m,
            "load_1min": 0.1,
            "slowest_cells": [{"index": 0, "seconds": s, "source": str(s)}],
        }
        for s, m in ((5.0, 300.0), (9.0, 310.0), (6.0, 290.0))
    ]
    summary = notebooks.summarise(runs)
    assert summary["seconds"] == 6.0 and summary["cells_seconds"] == 5.0
    assert summary["peak_rss_mib"] == 310.0
    assert summary["slowest_cells"][0]["source"] == "6.0"  # from the median run
    assert summary["runs_seconds"] == [5.0, 9.0, 6.0]


def test_describe_error():
    class CellError(Exception):
        ename, evalue = "ValueError", "\x1b[31mbad\x1b[39m slope"

    assert notebooks.describe_error(CellError("long text")) == "ValueError: bad slope"
    assert (
        notebooks.describe_error(TimeoutError("\nCell timed out\nmore"))
        == "TimeoutError: Cell timed out"
    )


def test_notebook_benchmark_times_good_notebooks_and_records_failures(tmp_path):
    good = _notebook(
        tmp_path / "chapters" / "01_good.ipynb",
        "import os\nprint(os.getcwd())",
        "x = sum(range(1000))",
    )
    _notebook(tmp_path / "chapters" / "02_bad.ipynb", "raise ValueError('broken on purpose')")
    before = good.read_bytes()
    results, budgets = notebooks.run(_core.Options(repo=tmp_path, runs=1))
    assert good.read_bytes() == before  # nothing written back
    entry = results["notebooks"]["chapters/01_good.ipynb"]
    assert entry["seconds"] >= entry["cells_seconds"] > 0
    assert entry["peak_rss_mib"] > 20  # a Python kernel
    assert len(entry["slowest_cells"]) == 2
    bad = results["notebooks"]["chapters/02_bad.ipynb"]
    assert bad == {"error": "ValueError: broken on purpose"}
    assert results["totals"]["chapters"] == {
        "notebooks": 2,
        "seconds": None,
        "failed": ["chapters/02_bad.ipynb"],
    }
    statuses = {b["id"]: b["status"] for b in budgets}
    notes = {b["id"]: b["note"] for b in budgets}
    assert statuses["notebook:chapters/02_bad.ipynb"] == "not measured"
    assert notes["notebook:chapters/02_bad.ipynb"] == "ValueError: broken on purpose"
    assert statuses["notebooks:chapters_total"] == "not measured"
    assert notes["notebooks:chapters_total"] == "1 failed"
    assert statuses["notebook:chapters/01_good.ipynb"] in ("pass", "miss")


def test_notebook_runs_in_its_own_folder(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb", f"import os\nassert os.getcwd() == {str(tmp_path)!r}")
    notebooks.run_once(path)  # raises if the working folder were another


def test_notebook_benchmark_without_notebooks_is_missing(tmp_path):
    with pytest.raises(_core.Missing):
        notebooks.run(_core.Options(repo=tmp_path))


# --- training ----------------------------------------------------------------------------------


def test_compare_reports_largest_differences():
    agreement = training.compare([0.5, 0.7], [1.0, 2.0], [0.502, 0.7], [1.0, 2.2], 1000)
    assert agreement["max_accuracy_difference_examples"] == 2
    assert agreement["max_relative_loss_difference"] == pytest.approx(0.1)
    assert agreement["mean_accuracy_loop"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="non-empty"):
        training.compare([], [], [], [], 10)
    with pytest.raises(ValueError, match="one entry per model"):
        training.compare([0.5], [1.0], [0.5, 0.6], [1.0], 10)


def test_best_and_thread_counts():
    assert training.best({1: 3.0, 2: 2.5}) == (2, 2.5)
    assert training.best({1: 2.0, 2: 2.0}) == (1, 2.0)
    with pytest.raises(ValueError):
        training.best({})
    assert training.thread_counts(2) == [1, 2] and training.thread_counts(1) == [1]


def test_largest_parameter_difference_sees_one_changed_weight():
    from rectifiers.batched import batched_mlp
    from rectifiers.training import mlp

    slopes, seeds = [0.0, 0.1], [0, 1]
    nets = batched_mlp([4, 3, 2], slopes, seeds)
    alone = [mlp([4, 3, 2], a, seed=s) for a, s in zip(slopes, seeds, strict=True)]
    assert training.largest_parameter_difference(alone, nets) == 0.0
    with torch.no_grad():
        alone[1][2].bias[0] += 0.25
    assert training.largest_parameter_difference(alone, nets) == pytest.approx(0.25)


def test_training_benchmark_on_a_small_sweep(monkeypatch):
    # The real trainers on a small sweep: both sides train the same models, and in float64 they
    # agree to rounding (the budget the full sweep is held to).
    monkeypatch.setattr(training, "SIZES", [40, 8, 10])
    monkeypatch.setattr(training, "SLOPES", [0.0, 0.3])
    monkeypatch.setattr(training, "SEEDS", [0, 1])
    monkeypatch.setattr(training, "QUICK_EPOCHS", 1)
    monkeypatch.setattr(training, "FLOAT64_EPOCHS", 1)
    threads = torch.get_num_threads()
    results, budgets = training.run(_core.Options(quick=True, runs=1))
    assert torch.get_num_threads() == threads  # restored
    assert results["models"] == 4 and results["epochs"] == 1
    assert set(results["loop_seconds_by_threads"]) == {
        str(t) for t in training.thread_counts(threads)
    }
    # The times are recorded to 0.1 ms and the speed-up to 0.01, so they agree to within that.
    assert results["speedup"] == pytest.approx(
        results["loop_seconds"] / results["batched_seconds"], rel=0.01, abs=0.006
    )
    assert results["speedup_vs_func"] == pytest.approx(
        results["func_seconds"] / results["batched_seconds"], rel=0.01, abs=0.006
    )
    assert set(results["func_runs_seconds"]) == set(results["loop_runs_seconds"])
    for name in ("batched", "loop", "func"):
        entry = results["profile"][name]
        assert 0 < entry["matmul_seconds_per_epoch"] < entry["seconds_per_epoch"]
        assert entry["optimizer_seconds_per_epoch"] > 0 and entry["loss_seconds_per_epoch"] > 0
    assert results["profile"]["batched"]["activation_seconds_per_epoch"] > 0
    assert results["speedup_ceiling"] > results["speedup_ceiling_arithmetic"] > 0
    assert results["speedup_ceiling"] > results["speedup"] > 0
    overhead = results["overhead_ms_per_step"]
    assert overhead["batched_ms_per_step"] > overhead["loop_ms_per_step"] > 0
    # Both stacked trainers compute what the loop computes: in float64 they agree to rounding.
    for key in ("float64", "float64_func"):
        assert results[key]["max_abs_parameter_difference"] < 1e-12, key
        assert results[key]["max_accuracy_difference_examples"] == 0, key
    statuses = {b["id"]: b["status"] for b in budgets}
    assert statuses["training:float64_parameters"] == "pass"
    assert statuses["training:float64_accuracy"] == "pass"
    assert statuses["training:func_float64_parameters"] == "pass"
    assert statuses["training:speedup"] in ("pass", "miss")
    assert statuses["training:ahead_of_func"] in ("pass", "miss")


# --- kernels -----------------------------------------------------------------------------------


def test_gigabytes_per_second():
    assert kernels.gigabytes_per_second(10**9, 2, 2.0) == 4.0
    assert kernels.gigabytes_per_second(10**6, 5, 1e-3, bytes_per_float=8) == 40.0
    with pytest.raises(ValueError, match="seconds"):
        kernels.gigabytes_per_second(10, 2, 0.0)


def test_kernels_measure_both_implementations_of_both_functions():
    row = kernels.measure_size(1000, min_run_time=0.001)
    assert row["elements"] == 1000 and row["copy_gb_per_s"] > 0
    for name in ("leaky_relu", "prelu"):
        for impl in ("builtin", "scratch"):
            assert row[name][impl]["forward_seconds"] > 0
            assert row[name][impl]["forward_backward_seconds"] > 0
        assert row[name]["forward_ratio"] == pytest.approx(
            row[name]["scratch"]["forward_seconds"] / row[name]["builtin"]["forward_seconds"],
            abs=0.006,
        )


def test_kernels_run_single_threaded_and_restore_the_thread_count(monkeypatch):
    monkeypatch.setattr(kernels, "QUICK_SIZES", [1000])
    monkeypatch.setattr(
        kernels,
        "measure_size",
        lambda n, min_run_time: {"elements": n, "threads_seen": torch.get_num_threads()},
    )
    torch.set_num_threads(2)
    try:
        results, budgets = kernels.run(_core.Options(quick=True, runs=1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # the module's setting (single_thread fixture)
    assert results["threads"] == 1 and results["sizes"] == [{"elements": 1000, "threads_seen": 1}]
    assert budgets == []


def test_kernel_implementations_compute_the_same_thing():
    # The comparison is only fair if both sides compute the same function.
    x = torch.randn(30, kernels.CHANNELS)
    w = torch.linspace(0.0, 0.5, kernels.CHANNELS)
    for impls in kernels._implementations().values():
        assert torch.equal(impls["scratch"](x, w), impls["builtin"](x, w))


# --- book --------------------------------------------------------------------------------------


def test_toc_files_in_order():
    toc = {
        "format": "jb-book",
        "root": "intro",
        "parts": [
            {
                "caption": "A",
                "chapters": [{"file": "a", "sections": [{"file": "a1"}]}, {"file": "b"}],
            },
            {"caption": "B", "chapters": [{"url": "https://x"}, {"file": "c"}]},
        ],
    }
    assert book.toc_files(toc) == ["intro", "a", "a1", "b", "c"]


def test_edit_target_is_the_first_notebook_else_the_root(tmp_path):
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: api\n  - file: nb1\n  - file: nb2\n"
    )
    assert book.edit_target(tmp_path) == tmp_path / "intro.md"
    _notebook(tmp_path / "nb2.ipynb")
    _notebook(tmp_path / "nb1.ipynb")
    assert book.edit_target(tmp_path) == tmp_path / "nb1.ipynb"
    (tmp_path / "_toc.yml").unlink()
    with pytest.raises(_core.Missing):
        book.edit_target(tmp_path)


def test_prose_edit_changes_markdown_only(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb", "x = 1", "y = 2", markdown="Text.")
    before = nbformat.read(path, as_version=4)
    book.prose_edit(path, 7)
    after = nbformat.read(path, as_version=4)
    assert [c.source for c in after.cells if c.cell_type == "code"] == [
        c.source for c in before.cells if c.cell_type == "code"
    ]
    assert after.cells[0].source == "Text.\n\nBenchmark prose edit number 7."
    page = tmp_path / "page.md"
    page.write_text("# Page\n")
    book.prose_edit(page, 1)
    assert page.read_text() == "# Page\n\nBenchmark prose edit number 1.\n"
    no_prose = tmp_path / "code.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), no_prose)
    with pytest.raises(ValueError, match="no Markdown cell"):
        book.prose_edit(no_prose, 1)


def _git_repo(root: Path) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("_build/\nignored.txt\n")
    (root / "tracked.md").write_text("t")
    (root / "ignored.txt").write_text("i")
    (root / "sub").mkdir()
    (root / "sub" / "new.md").write_text("n")
    subprocess.run(["git", "-C", str(root), "add", ".gitignore", "tracked.md"], check=True)


def test_copy_book_takes_sources_and_build_but_not_ignored_files(tmp_path):
    repo, target = tmp_path / "repo", tmp_path / "copy"
    repo.mkdir()
    target.mkdir()
    _git_repo(repo)
    assert book.source_files(repo) == [".gitignore", "sub/new.md", "tracked.md"]
    for name in (
        "_build/html/index.html",
        "_build/.jupyter_cache/global.db",
        "_build/screenshots/a.png",
    ):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x")
    (repo / ".venv").mkdir()
    book.copy_book(repo, target)
    assert (target / "sub" / "new.md").is_file() and not (target / "ignored.txt").exists()
    assert (target / "_build" / ".jupyter_cache" / "global.db").is_file()
    assert (target / "_build" / "html" / "index.html").is_file()
    assert not (target / "_build" / "screenshots").exists()
    assert (target / ".venv").is_symlink() and (target / ".venv").resolve() == repo / ".venv"


def test_book_benchmark_without_a_built_book_is_missing(tmp_path):
    with pytest.raises(_core.Missing, match="make book"):
        book.run(_core.Options(repo=tmp_path))


def _fake_repo(root: Path, makefile: str) -> Path:
    root.mkdir()
    _git_repo(root)
    (root / "Makefile").write_text(makefile)
    (root / ".venv").mkdir()
    (root / ".venv" / ".installed").write_text("")
    subprocess.run(["git", "-C", str(root), "add", "Makefile"], check=True)
    return root


def test_book_benchmark_edits_only_the_copy(tmp_path):
    # `make book` here is a stand-in that logs what MyST-NB logs for a cached notebook.
    repo = _fake_repo(
        tmp_path / "repo", "book:\n\t@echo 'chapters/nb.ipynb: Using cached notebook: ID=1'\n"
    )
    _notebook(repo / "chapters" / "nb.ipynb", "x = 1")
    (repo / "_toc.yml").write_text("format: jb-book\nroot: chapters/nb\n")
    (repo / "_build" / "html").mkdir(parents=True)
    before = (repo / "chapters" / "nb.ipynb").read_bytes()
    results, budgets = book.run(_core.Options(repo=repo, runs=2))
    assert (repo / "chapters" / "nb.ipynb").read_bytes() == before
    assert results["edited"] == "chapters/nb.ipynb"
    assert [r["cached_notebooks"] for r in results["runs"]] == [1, 1]
    assert results["executed_notebooks"] == 0
    assert budgets[0]["id"] == "book:cached_rebuild" and budgets[0]["measured"] is not None


def test_book_benchmark_fails_loudly_when_make_book_fails(tmp_path):
    repo = _fake_repo(tmp_path / "repo", "book:\n\t@exit 1\n")
    _notebook(repo / "nb.ipynb", "x = 1")
    (repo / "_toc.yml").write_text("format: jb-book\nroot: nb\n")
    (repo / "_build" / "html").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="make book failed"):
        book.run(_core.Options(repo=repo, runs=1))


def test_make_test_benchmark_times_parts_and_records_failure(tmp_path):
    makefile = (
        "test:\n"
        "\t@status=0; \\\n"
        "\t$(MAKE) --no-print-directory unit || status=1; \\\n"
        "\t$(MAKE) --no-print-directory lint-all || status=1; \\\n"
        "\texit $$status\n\n"
        "unit:\n\t@echo unit ran\n"
        "lint-all:\n\t@echo 'FAILED tests/test_x.py::test_y'; exit 2\n"
    )
    assert make_test.parts(makefile) == ["unit", "lint-all"]
    repo = _fake_repo(tmp_path / "repo", makefile)
    results, budgets = make_test.run(_core.Options(repo=repo))
    assert results["returncode"] == 2 and not results["passed"]
    assert list(results["phases_seconds"]) == ["unit", "lint-all"]
    assert results["seconds"] == pytest.approx(sum(results["phases_seconds"].values()), abs=0.1)
    assert budgets[0]["id"] == "make_test:seconds" and budgets[0]["measured"] is not None
    assert results["failures"][0] == "FAILED tests/test_x.py::test_y"
    assert make_test.parts("test:\n\t@exit 0\n") == ["test"]
    with pytest.raises(_core.Missing, match="no test target"):
        make_test.parts("book:\n\t@true\n")
    (repo / ".venv" / ".installed").unlink()
    with pytest.raises(_core.Missing, match="warm"):
        make_test.run(_core.Options(repo=repo))


# --- grading -----------------------------------------------------------------------------------


def test_failure_lines():
    lines = [
        "tests/test_a.py ..F.",
        "FAILED tests/test_a.py::test_x - assert 1 == 2",
        "ERROR tests/test_b.py",
        "==== 1 failed, 20 passed in 3.0s ====",
        "3 passed",
        "make[1]: *** [Makefile:9: unit] Error 1",
        "no failure here",
    ]
    assert make_test.failure_lines(lines) == lines[1:4] + [lines[5]]
    assert make_test.failure_lines(lines, limit=1) == [lines[1]]


def test_make_class(tmp_path):
    solutions = tmp_path / "solutions"
    for name in ("01_a", "02_b"):
        _notebook(solutions / f"{name}.ipynb")
    names = grading.make_class(solutions, ["01_a", "02_b"], 3, tmp_path / "class")
    assert names == ["student01", "student02", "student03"]
    assert sorted(p.name for p in (tmp_path / "class" / "student03").iterdir()) == [
        "01_a.ipynb",
        "02_b.ipynb",
    ]
    assert (tmp_path / "class" / "student02" / "01_a.ipynb").read_bytes() == (
        solutions / "01_a.ipynb"
    ).read_bytes()
    with pytest.raises(ValueError, match="students"):
        grading.make_class(solutions, ["01_a"], 0, tmp_path / "none")


def test_full_marks_and_status_counts(tmp_path):
    summary = tmp_path / "summary.csv"
    summary.write_text(
        "student,points,max_points,manual_max_points,notebooks_missing\n"
        "a,34,41,7,\nb,30,41,7,\nc,41,41,0,\n"
    )
    assert grading.full_marks(summary) == (2, 3)
    grades = tmp_path / "grades.csv"
    grades.write_text(
        "student,notebook,exercise,points,max_points,status,detail\n"
        "a,n,e1,1,1,passed,\na,n,e2,0,1,failed,x\na,n,e3,0,2,manual,\n"
        "b,n,e1,1,1,passed,\n"
    )
    assert grading.status_counts(grades) == {"failed": 1, "manual": 1, "passed": 2}
    assert grading.problems(grades) == [
        {"student": "a", "notebook": "n", "exercise": "e2", "status": "failed", "detail": "x"}
    ]
    assert grading.problems(grades, limit=0) == []


def test_gradable_notebooks_are_solutions_with_grader_items(tmp_path):
    from rectifiers.grading.items import REGISTRY

    registered = sorted(REGISTRY)[0]
    for name in (registered, "99_not_registered"):
        _notebook(tmp_path / "solutions" / f"{name}.ipynb")
    assert grading.gradable_notebooks(tmp_path) == [registered]


# A stand-in for grade-exercises: writes what the real one writes, every student at full marks.
_FAKE_GRADER = """#!{python}
import json, os, sys
submissions, out = sys.argv[1], sys.argv[sys.argv.index("--out") + 1]
students = sorted(os.listdir(submissions))
os.makedirs(out)
with open(os.path.join(out, "run.json"), "w") as f:
    json.dump({{"seconds_per_notebook": 0.5, "sandbox": {{"mode": "fake"}}}}, f)
with open(os.path.join(out, "summary.csv"), "w") as f:
    f.write("student,points,max_points,manual_max_points,notebooks_missing\\n")
    f.writelines(f"{{s}},3,5,2,\\n" for s in students)
with open(os.path.join(out, "grades.csv"), "w") as f:
    f.write("student,notebook,exercise,points,max_points,status,detail\\n")
    f.writelines(f"{{s}},n,e,3,3,passed,\\n" for s in students)
"""


def test_grading_benchmark_builds_a_class_and_reads_the_grader_report(tmp_path, monkeypatch):
    from rectifiers.grading.items import REGISTRY

    fake = tmp_path / "grade-exercises"
    fake.write_text(_FAKE_GRADER.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setattr(grading, "venv_bin", lambda name: str(fake))
    monkeypatch.setattr(grading, "QUICK_STUDENTS", 4)
    repo = tmp_path / "repo"
    name = sorted(REGISTRY)[0]
    _notebook(repo / "solutions" / f"{name}.ipynb")
    results, budgets = grading.run(_core.Options(repo=repo, quick=True, runs=2))
    assert results["notebooks"] == [name]
    assert len(results["submission"]["runs"]) == 2
    assert results["class"]["students"] == 4 and results["class"]["sandbox"] == "fake"
    assert results["all_full_marks"] and results["class"]["statuses"] == {"passed": 4}
    assert results["class"]["problems"] == []
    statuses = {b["id"]: b["status"] for b in budgets}
    assert statuses["grading:class_of_30"] == "not measured"  # a quick class is not 30
    assert budgets[1]["note"] == "a quick class has 4 students" and budgets[0]["note"] is None
    assert statuses["grading:seconds_per_notebook"] in ("pass", "miss")


# --- _report -----------------------------------------------------------------------------------


def _section(results, budgets=(), status="ok", quick=False, **extra):
    return {
        "status": status,
        "measured_at": "2026-01-01T00:00:00+00:00",
        "quick": quick,
        "runs": 3,
        "machine": {
            "cpu_model": "Test CPU",
            "usable_cores": 2,
            "torch_version": "2.13.0",
            "torch_threads": 2,
        },
        "git": {"commit": "a" * 40, "dirty": False},
        "load_average_before": [0.1, 0.2, 0.3],
        "load_average_after": [0.2, 0.2, 0.3],
        "results": results,
        "budgets": list(budgets),
        **extra,
    }


def _sample_sections():
    nb_budget = _core.budget(
        "notebook:chapters/01.ipynb", "chapters/01.ipynb: wall time", 25.0, 20.0, "<=", "s"
    )
    return {
        "notebooks": _section(
            {
                "notebooks": {
                    "chapters/01.ipynb": {
                        "seconds": 25.0,
                        "startup_seconds": 1.0,
                        "cells_seconds": 24.0,
                        "shutdown_seconds": 2.0,
                        "peak_rss_mib": 400.0,
                        "runs_seconds": [25.0],
                        "load_1min": [0.1],
                        "slowest_cells": [{"index": 3, "seconds": 20.0, "source": "train(a | b)"}],
                    },
                    "solutions/01.ipynb": {"error": "ValueError: broken"},
                },
                "totals": {
                    "chapters": {"notebooks": 1, "seconds": 25.0, "failed": []},
                    "solutions": {
                        "notebooks": 1,
                        "seconds": None,
                        "failed": ["solutions/01.ipynb"],
                    },
                    "all": {"notebooks": 2, "seconds": None, "failed": ["solutions/01.ipynb"]},
                },
            },
            [nb_budget],
        ),
        "training": _section(
            {
                "models": 40,
                "sizes": [40, 100, 100, 10],
                "slopes": [0.0] * 8,
                "seeds": [0] * 5,
                "epochs": 10,
                "train_examples": 4000,
                "optimizer": "adam",
                "lr": 0.01,
                "batch_size": 100,
                "configured_threads": 2,
                "batched_seconds_by_threads": {"1": 2.0, "2": 1.5},
                "loop_seconds_by_threads": {"1": 9.0, "2": 12.0},
                "func_seconds_by_threads": {"1": 3.0, "2": 2.7},
                "batched_threads": 2,
                "loop_threads": 1,
                "func_threads": 2,
                "speedup": 6.0,
                "speedup_same_threads": 8.0,
                "speedup_vs_func": 1.8,
                "func_speedup": 3.33,
                "profile": {
                    name: {
                        "threads": threads,
                        "seconds_per_epoch": total,
                        "matmul_seconds_per_epoch": matmul,
                        "optimizer_seconds_per_epoch": 0.01,
                        "activation_seconds_per_epoch": 0.01,
                        "loss_seconds_per_epoch": 0.01,
                    }
                    for name, threads, total, matmul in (
                        ("batched", 2, 0.15, 0.1),
                        ("loop", 1, 0.9, 0.2),
                        ("func", 2, 0.27, 0.1),
                    )
                },
                "overhead_ms_per_step": {"batched_ms_per_step": 0.7, "loop_ms_per_step": 0.35},
                "speedup_ceiling": 9.0,
                "speedup_ceiling_arithmetic": 7.0,
                "float32": {
                    "max_accuracy_difference_examples": 3,
                    "max_relative_loss_difference": 1e-3,
                    "max_abs_parameter_difference": 0.1,
                    "mean_accuracy_loop": 0.8,
                    "mean_accuracy_batched": 0.8,
                },
                "float64": {
                    "max_accuracy_difference_examples": 0,
                    "max_relative_loss_difference": 0.0,
                    "max_abs_parameter_difference": 1e-16,
                    "mean_accuracy_loop": 0.7,
                    "mean_accuracy_batched": 0.7,
                    "epochs": 3,
                },
                "float32_func": {
                    "max_accuracy_difference_examples": 4,
                    "max_relative_loss_difference": 2e-3,
                    "max_abs_parameter_difference": 0.2,
                    "mean_accuracy_loop": 0.8,
                    "mean_accuracy_batched": 0.81,
                },
                "float64_func": {
                    "max_accuracy_difference_examples": 0,
                    "max_relative_loss_difference": 0.0,
                    "max_abs_parameter_difference": 2e-16,
                    "mean_accuracy_loop": 0.7,
                    "mean_accuracy_batched": 0.7,
                    "epochs": 3,
                },
            }
        ),
        "layers": _section(
            {
                "models": 40,
                "batch_size": 100,
                "train_examples": 4000,
                "optimizer": "adam",
                "configured_threads": 2,
                "variants": {
                    "fixed slopes (8 x 5 seeds)": {
                        "ms_per_step": 8.0,
                        "threads": 2,
                        "relative_to_fixed_slopes": 1.0,
                    },
                    "GELU": {"ms_per_step": 10.0, "threads": 2, "relative_to_fixed_slopes": 1.25},
                },
            }
        ),
        "kernels": _section(
            {
                "dtype": "float32",
                "threads": 1,
                "sizes": [kernels.measure_size(1000, min_run_time=0.001)],
            }
        ),
        "make_test": _section(
            {
                "seconds": 300.0,
                "returncode": 2,
                "passed": False,
                "timed_out": False,
                "phases_seconds": {"unit": 100.0},
                "failures": ["FAILED tests/test_x.py::test_y"],
            }
        ),
        "book": _section(
            {
                "edited": "chapters/01.ipynb",
                "warmup_seconds": 30.0,
                "seconds": 12.0,
                "runs": [
                    {
                        "seconds": 12.0,
                        "load_1min": 0.1,
                        "executed_notebooks": 0,
                        "cached_notebooks": 8,
                    }
                ],
                "executed_notebooks": 0,
            }
        ),
        "grading": _section(
            {
                "notebooks": ["01_a"],
                "all_full_marks": True,
                "submission": {"seconds": 8.0, "seconds_per_notebook": 8.0, "runs": []},
                "class": {
                    "seconds": 200.0,
                    "students": 30,
                    "jobs": 2,
                    "sandbox": "root",
                    "wall_seconds_per_notebook": 6.7,
                    "grader_seconds_per_notebook": 12.0,
                },
            }
        ),
        "microtimings": _section(
            {
                "cross_entropy": {
                    "last_dim_ms": 1.1,
                    "middle_dim_ms": 0.26,
                    "stacked_losses_ms": 0.27,
                },
                "elementwise": {"where_us": 309.0, "multiply_us": 11.0, "leaky_relu_us": 16.0},
                "clone_us_by_threads": {"1": 18.0, "2": 25.0},
                "matmul_gflops_by_threads": {
                    "batched_40x100": {"1": 71.3, "2": 140.1},
                    "single_1000": {"1": 89.5, "2": 178.2},
                },
                "size": 100000,
            }
        ),
    }


def test_merge_keeps_other_sections_and_flattens_budgets():
    sections = _sample_sections()
    first = _report.merge(None, {"notebooks": sections["notebooks"]}, {"cpu_model": "x"}, {})
    assert first["budget_counts"] == {"pass": 0, "miss": 1, "not measured": 0}
    assert first["budgets"][0]["benchmark"] == "notebooks"
    second = _report.merge(first, {"kernels": sections["kernels"]}, {}, {})
    assert list(second["benchmarks"]) == ["notebooks", "kernels"]
    replaced = _report.merge(
        second, {"notebooks": _section({}, status="missing", reason="gone")}, {}, {}
    )
    assert replaced["benchmarks"]["notebooks"]["status"] == "missing"
    assert replaced["budgets"] == []
    assert _report.merge({**second, "schema": 0}, {}, {}, {})["benchmarks"] == {}


def test_render_has_every_block_and_every_figure():
    bench = _report.merge(None, _sample_sections(), {}, {})
    text = _report.render(bench)
    for name in ["budgets", *_report.ORDER]:
        assert text.count(f"<!-- bench:{name}:start -->") == 1
        assert text.count(f"<!-- bench:{name}:end -->") == 1
    assert "| chapters/01.ipynb: wall time | at most 20 s | 25.00 s | **MISS** |" in text
    assert "`train(a \\| b)`" in text  # a pipe in a cell cannot break the table
    assert "`ValueError: broken`" in text
    assert "**Speed-up: 6.00x**" in text
    assert "failed (exit status 2)" in text
    assert "- `FAILED tests/test_x.py::test_y`" in text
    assert "**Median: 12.00 s.**" in text
    assert "| a class (`--jobs 2`) | 30 | 200.00 | 6.70 | 12.00 |" in text
    assert "1e+03 | `leaky_relu`" in text
    assert "could be at most **9.00x** faster" in text
    assert "**Against `torch.func`: 1.80x**" in text
    assert "| `torch.func` ensemble | 2 | 2.70 |" in text
    assert "ceiling is **7.00x**" in text and "0.70 ms for one batched step" in text
    assert (
        "| everything else (Python, dispatch, autograd, copies) | 0.020 | 0.140 | 0.670 |" in text
    )
    assert "| GELU | 10.00 | 2 | 1.25x |" in text
    assert "| `x.clone()`, 1e5 floats, 1 / 2 threads | 18.0 / 25.0 µs |" in text
    assert "| 71.3 / 140.1 GFLOP/s |" in text


def test_layers_benchmark_times_every_variant(monkeypatch):
    monkeypatch.setattr(
        layers,
        "VARIANTS",
        {
            "fixed slopes": ([40, 8, 10], None, {}),
            "GELU + batch norm": ([40, 8, 8, 10], "gelu", {"batch_norm": True}),
            "RReLU + skips": ([40, 8, 8, 10], "rrelu", {"residual": True}),
        },
    )
    monkeypatch.setattr(layers, "SLOPES", [0.0, 0.1])
    monkeypatch.setattr(layers, "SEEDS", [0, 1])
    monkeypatch.setattr(layers, "MODELS", 4)
    results, budgets = layers.run(_core.Options(quick=True, runs=1))
    assert budgets == [] and results["train_examples"] == 10 * layers.BATCH_SIZE
    variants = results["variants"]
    assert list(variants) == ["fixed slopes", "GELU + batch norm", "RReLU + skips"]
    assert all(v["ms_per_step"] > 0 for v in variants.values())
    assert variants["fixed slopes"]["relative_to_fixed_slopes"] == 1.0
    assert variants["GELU + batch norm"]["batch_norm"] is True


def test_microtimings_measure_every_timing():
    results, budgets = microtimings.run(_core.Options(quick=True, runs=1))
    assert budgets == []
    values = [
        *results["cross_entropy"].values(),
        *results["elementwise"].values(),
        *results["clone_us_by_threads"].values(),
        *(v for by in results["matmul_gflops_by_threads"].values() for v in by.values()),
    ]
    assert len(values) == 3 + 3 + 2 + 4 and all(v > 0 for v in values)


def test_render_of_missing_failed_and_quick_sections():
    bench = _report.merge(
        None,
        {
            "notebooks": _section({}, status="missing", reason="no notebooks", budgets=[]),
            "kernels": _section({}, status="error", reason="RuntimeError: boom", budgets=[]),
        },
        {},
        {},
    )
    text = _report.render(bench)
    assert "Not measured: the subject is missing (no notebooks)." in text
    assert "**The benchmark failed:** `RuntimeError: boom`" in text
    assert text.count("Not measured yet.") == len(_report.ORDER) - 2
    quick = _report.merge(
        None, {"kernels": _sample_sections()["kernels"] | {"quick": True}}, {}, {}
    )
    assert "Quick mode" in _report.render(quick)


def test_misses_lists_missed_and_unmeasured_budgets_and_benchmarks():
    sections = _sample_sections()
    sections["notebooks"]["budgets"].append(
        _core.budget(
            "notebook:solutions/01.ipynb",
            "solutions/01.ipynb: wall time",
            None,
            20.0,
            "<=",
            "s",
            note="ValueError: broken",
        )
    )
    bench = _report.merge(
        None, {**sections, "book": _section({}, status="missing", reason="no book")}, {}, {}
    )
    lines = _report.misses(bench)
    assert lines == [
        "MISSED notebook:chapters/01.ipynb: measured 25.00 s, budget at most 20 s",
        "NOT MEASURED notebook:solutions/01.ipynb (ValueError: broken)",
        "MISSING book: no book",
    ]
    assert "| not measured: `ValueError: broken` |" in _report.render(bench)


def test_render_lists_points_lost_by_solved_notebooks():
    section = _sample_sections()["grading"]
    section["results"]["all_full_marks"] = False
    section["results"]["class"]["problems"] = [
        {
            "student": "student07",
            "notebook": "01_a",
            "exercise": "01.x",
            "status": "error",
            "detail": "timed out after 60 s",
        }
    ]
    text = _report.render(_report.merge(None, {"grading": section}, {}, {}))
    assert "**some solved submissions lost points: the grading figures are suspect**" in text
    assert "| student07 | `01_a` | `01.x` | error | `timed out after 60 s` |" in text


def test_fmt_and_code():
    assert _report.fmt(True) == "yes" and _report.fmt(1e-16, 1) == "1e-16"
    assert _report.code("a`b|c") == "`a'b\\|c`" and _report.code("  ") == ""


# --- command line ------------------------------------------------------------------------------


def test_names_and_selection():
    assert cli.names("kernels, grading") == ["kernels", "grading"]
    with pytest.raises(Exception, match="unknown benchmark"):
        cli.names("kernels,nope")
    args = cli.parser().parse_args(["--quick"])
    assert "make_test" not in cli.selected(args)
    args = cli.parser().parse_args(["--quick", "--only", "make_test,kernels"])
    assert cli.selected(args) == ["kernels", "make_test"]
    args = cli.parser().parse_args(["--skip", "make_test,book"])
    assert cli.selected(args) == [
        "notebooks",
        "training",
        "layers",
        "kernels",
        "microtimings",
        "grading",
        "setup",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--runs", "0"],
        ["--threads", "0"],
        ["--only", "x"],
        ["--only", "kernels", "--skip", "kernels"],
    ],
)
def test_bad_command_lines_exit_2(argv, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--out", str(tmp_path / "bench.json")])
    assert exit_info.value.code == 2


def test_main_writes_results_and_exits_0_on_a_miss_1_with_strict(tmp_path, monkeypatch, capsys):
    def fake_kernels(options):
        assert options.quick and options.runs == 1
        return {"sizes": []}, [_core.budget("kernels:x", "x", 3.0, 2.0, "<=", "s")]

    def missing_grading(options):
        raise _core.Missing("no grader")

    monkeypatch.setattr(kernels, "run", fake_kernels)
    monkeypatch.setattr(grading, "run", missing_grading)
    for name, default in (("OMP_NUM_THREADS", "2"), ("PYDEVD_DISABLE_FILE_VALIDATION", "1")):
        monkeypatch.setenv(name, os.environ.get(name, default))  # main sets them; restored after
    out = tmp_path / "bench.json"
    assert cli.main(["--quick", "--only", "kernels,grading", "--out", str(out)]) == 0
    bench = json.loads(out.read_text())
    assert bench["benchmarks"]["kernels"]["budgets"][0]["status"] == "miss"
    assert bench["benchmarks"]["grading"] | {"status": "missing"} == bench["benchmarks"]["grading"]
    assert (tmp_path / "bench.md").read_text() == _report.render(bench)
    err = capsys.readouterr().err
    assert "MISSED kernels:x" in err and "MISSING grading: no grader" in err
    assert cli.main(["--quick", "--only", "kernels", "--out", str(out), "--strict"]) == 1
    assert "grading" in json.loads(out.read_text())["benchmarks"]  # merged, not dropped


def test_measure_records_a_crash_without_stopping(monkeypatch):
    def crash(options):
        raise RuntimeError("boom")

    monkeypatch.setattr(kernels, "run", crash)
    section = cli.measure("kernels", _core.Options(quick=True, runs=1), {})
    assert section["status"] == "error" and section["reason"] == "RuntimeError: boom"
    assert section["budgets"] == [] and len(section["load_average_after"]) == 3
