"""Each chapter and solution notebook is a jupytext pair (MyST ``.md`` source + executed
``.ipynb``), and the pair is in sync: what nbval checks and the book renders is what the source
says. ``tools/notebooks.py`` is the workflow that keeps it so (CONTRIBUTING.md)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

from rectifiers.grading.generate import PAIRED_FORMATS, pair_problems, read_source

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "chapters").glob("[0-9]*.md")) + sorted(
    (REPO / "solutions").glob("[0-9]*.md")
)
NOTEBOOKS = sorted((REPO / "chapters").glob("[0-9]*.ipynb")) + sorted(
    (REPO / "solutions").glob("[0-9]*.ipynb")
)


def _tool():
    spec = importlib.util.spec_from_file_location("notebooks_tool", REPO / "tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_has_its_myst_source():
    assert len(NOTEBOOKS) == 12
    assert [p.with_suffix(".md") for p in NOTEBOOKS] == SOURCES
    for md in SOURCES:
        header = jupytext.read(md).metadata["jupytext"]
        assert header["text_representation"]["format_name"] == "myst", md
        assert header["formats"] == PAIRED_FORMATS, md


@pytest.mark.parametrize("md", SOURCES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_pair_is_in_sync(md):
    assert pair_problems(md) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_code_cell_was_executed_in_one_fresh_run(notebook):
    """nbval compares the stored outputs, so a cell synced in but never run (no execution count)
    would be checked against nothing; one fresh run numbers the code cells 1, 2, 3, ..."""
    cells = nbformat.read(notebook, as_version=4).cells
    counts = [cell.get("execution_count") for cell in cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))


def _copy_pair(tmp_path: Path) -> Path:
    md = REPO / "solutions" / "02_derivatives.md"
    for suffix in (".md", ".ipynb"):
        shutil.copy(md.with_suffix(suffix), tmp_path / md.with_suffix(suffix).name)
    return tmp_path / md.name


def test_an_edited_source_is_out_of_sync(tmp_path):
    md = _copy_pair(tmp_path)
    md.write_text(md.read_text().replace("Leaky ReLU", "Leaky ReLU (edited)", 1))
    problems = pair_problems(md)
    assert problems and "out of sync" in problems[-1] and "cell 0" in problems[0]


def test_changed_tags_and_missing_cells_are_out_of_sync(tmp_path):
    md = _copy_pair(tmp_path)
    twin = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    first_code = next(c for c in twin.cells if c.cell_type == "code")
    first_code.metadata["tags"] = ["a-tag-the-source-lacks"]
    nbformat.write(twin, md.with_suffix(".ipynb"))
    assert any("metadata differs" in p for p in pair_problems(md))
    twin.cells.pop()
    nbformat.write(twin, md.with_suffix(".ipynb"))
    assert any("cells" in p and "has" in p for p in pair_problems(md))
    md.with_suffix(".ipynb").unlink()
    assert "is missing" in pair_problems(md)[0]


def test_an_unpaired_notebook_is_reported(tmp_path):
    md = _copy_pair(tmp_path)
    twin = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    del twin.metadata["jupytext"]
    nbformat.write(twin, md.with_suffix(".ipynb"))
    assert "jupytext.formats" in pair_problems(md)[0]


def test_read_source_keeps_the_twins_cell_ids_and_outputs(tmp_path):
    md = _copy_pair(tmp_path)
    twin = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    md.write_text(md.read_text().replace("Leaky ReLU", "Leaky ReLU (edited)", 1))
    notebook = read_source(md)
    assert [c.id for c in notebook.cells] == [c.id for c in twin.cells]
    assert notebook.cells[0].source != twin.cells[0].source
    code = [i for i, c in enumerate(twin.cells) if c.cell_type == "code" and c.outputs]
    assert notebook.cells[code[0]].outputs == twin.cells[code[0]].outputs


def test_sync_writes_the_twin_from_the_source_and_check_then_passes(tmp_path, capsys):
    tool = _tool()
    md = _copy_pair(tmp_path)
    md.write_text(md.read_text().replace("Leaky ReLU", "Leaky ReLU (edited)", 1))
    assert tool.main(["check", str(md)]) == 1
    assert "out of sync" in capsys.readouterr().err
    assert tool.main(["sync", str(md)]) == 0
    assert tool.main(["check", str(md)]) == 0
    twin = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    assert "(edited)" in twin.cells[0].source


def test_run_executes_in_a_fresh_kernel_with_pinned_threads(tmp_path):
    tool = _tool()
    md = tmp_path / "01_tiny.md"
    md.write_text(
        "---\njupytext:\n  formats: ipynb,md:myst\n  text_representation:\n"
        "    format_name: myst\nkernelspec:\n  name: python3\n  display_name: Python 3\n"
        "  language: python\n---\n\n# Tiny\n\n```{code-cell} ipython3\nimport os\n"
        "print(os.environ['OMP_NUM_THREADS'], 6 * 7)\n```\n"
    )
    tool.run(md, timeout=60)
    notebook = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    assert notebook.cells[1].outputs[0]["text"] == "2 42\n"
    assert "execution" not in notebook.cells[1].metadata
    assert "version" not in notebook.metadata["language_info"]
    assert notebook.metadata["jupytext"] == {"formats": PAIRED_FORMATS}
    assert pair_problems(md) == []
    ids = [c.id for c in notebook.cells]
    md.write_text(md.read_text().replace("# Tiny", "# Tiny, edited"))
    tool.run(md, timeout=60)
    assert [c.id for c in nbformat.read(md.with_suffix(".ipynb"), as_version=4).cells] == ids


def test_tool_rejects_other_files(capsys):
    tool = _tool()
    with pytest.raises(SystemExit, match="expected a .md source"):
        tool.main(["run", "README.txt"])
    with pytest.raises(SystemExit):
        tool.main(["run"])
    assert "needs the notebook" in capsys.readouterr().err
