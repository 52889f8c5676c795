"""``make-exercises``: solutions in, exercise notebooks out, deterministic and leak-free."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from rectifiers.grading import generate as gen
from rectifiers.grading.items import EXAMPLES, REGISTRY, combined

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "grading"
FOLDERS = {
    "fixtures": (FIXTURES / "solutions", FIXTURES / "exercises"),
    "course": (REPO / "solutions", REPO / "exercises"),
}
# The course's solutions are MyST sources (read through jupytext); the fixture is an .ipynb.
SOLUTIONS = [FIXTURES / "solutions" / "00_examples.ipynb"] + sorted(
    (REPO / "solutions").glob("*.md")
)
STUB = 'raise NotImplementedError("Exercise {}: replace this line with your solution")'


def _nb(*cells: dict) -> dict:
    return {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "x"}, "widgets": {}},
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def _code(source: str, **metadata) -> dict:
    return {
        "cell_type": "code",
        "execution_count": 7,
        "metadata": metadata,
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}],
        "source": source,
    }


def _md(source: str, **metadata) -> dict:
    return {"cell_type": "markdown", "metadata": metadata, "source": source}


def _sources(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"]]


# --------------------------------------------------------------------------------------------
# --check on the committed folders


@pytest.mark.parametrize("which", list(FOLDERS))
def test_check_passes_on_the_committed_exercises(which, capsys):
    solutions, exercises = FOLDERS[which]
    assert (
        gen.main(["--check", "--solutions", str(solutions), "--exercises", str(exercises)]) == 0
    ), capsys.readouterr().err


@pytest.mark.parametrize("which", list(FOLDERS))
def test_check_fails_and_names_an_edited_exercise(which, tmp_path, capsys):
    solutions, exercises = FOLDERS[which]
    committed = sorted(exercises.glob("*.ipynb"))
    if not committed:
        pytest.skip(f"no committed exercise notebooks in {exercises} yet")
    copy = tmp_path / "exercises"
    shutil.copytree(exercises, copy)
    edited = copy / committed[0].name
    notebook = json.loads(edited.read_text())
    notebook["cells"][0]["source"] = ["Edited by hand.\n"]
    edited.write_text(json.dumps(notebook, indent=1))
    assert gen.main(["--check", "--solutions", str(solutions), "--exercises", str(copy)]) == 1
    err = capsys.readouterr().err
    assert str(edited) in err and "differs" in err


def test_check_reports_missing_and_orphaned_exercises(tmp_path, capsys):
    exercises = tmp_path / "exercises"
    exercises.mkdir()
    (exercises / "99_orphan.ipynb").write_text("{}")
    assert (
        gen.main(
            ["--check", "--solutions", str(FIXTURES / "solutions"), "--exercises", str(exercises)]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "00_examples.ipynb is missing" in err and "99_orphan.ipynb has no solution notebook" in err
    )


def test_console_script_check_runs(tmp_path):
    script = Path(sys.executable).with_name("make-exercises")
    args = ["--solutions", str(FIXTURES / "solutions"), "--exercises"]
    ok = subprocess.run(
        [str(script), "--check", *args, str(FIXTURES / "exercises")], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [str(script), "--check", *args, str(tmp_path)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "00_examples.ipynb is missing" in bad.stderr


def test_generate_writes_then_is_idempotent(tmp_path, capsys):
    out = tmp_path / "exercises"
    args = ["--solutions", str(FIXTURES / "solutions"), "--exercises", str(out)]
    assert gen.main(args) == 0
    first = (out / "00_examples.ipynb").read_bytes()
    assert first == (FIXTURES / "exercises" / "00_examples.ipynb").read_bytes()
    assert "wrote" in capsys.readouterr().err
    assert gen.main(args) == 0
    assert (out / "00_examples.ipynb").read_bytes() == first
    assert "wrote" not in capsys.readouterr().err
    assert gen.main(["--check", *args]) == 0


def test_missing_solutions_folder_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gen.main(["--solutions", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "no solutions folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The transformation


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_generated_notebooks_are_valid_deterministic_and_leak_free(path):
    text = gen.generate_file(path)
    assert text == gen.generate_file(path)
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        assert "BEGIN SOLUTION" not in cell.source and "END SOLUTION" not in cell.source
        assert "solution" not in cell.metadata.get("tags", [])
        assert "{solution" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_solution_region_becomes_an_indented_stub():
    solution = _nb(
        _code(
            "def f(x):\n    # BEGIN SOLUTION\n    y = 2 * x\n    return y\n"
            "    # END SOLUTION\n\nz = 1"
        ),
        _code('check("demo.f", globals())'),
    )
    exercise = gen.generate(solution)
    assert _sources(exercise)[0] == f"def f(x):\n    {STUB.format('demo.f')}\n\nz = 1"
    assert exercise["cells"][0]["outputs"] == [] and exercise["cells"][0]["execution_count"] is None
    assert exercise["cells"][1]["metadata"] == {"deletable": False, "editable": False}


def test_top_level_region_and_metadata_id():
    solution = _nb(
        _code(
            "# BEGIN SOLUTION\nanswer = 3\n# END SOLUTION",
            grading={"id": "demo.answer"},
            collapsed=True,
        )
    )
    exercise = gen.generate(solution)
    assert _sources(exercise) == [STUB.format("demo.answer")]
    assert exercise["cells"][0]["metadata"] == {"grading": {"id": "demo.answer"}}


def test_notebook_metadata_is_normalised_and_ids_are_assigned():
    exercise = gen.generate(_nb(_md("Text", slideshow={"slide_type": "slide"}), _code("x = 1")))
    assert exercise["metadata"] == {
        "kernelspec": gen.KERNELSPEC,
        "language_info": {"name": "python"},
    }
    assert (exercise["nbformat"], exercise["nbformat_minor"]) == (4, 5)
    assert [cell["id"] for cell in exercise["cells"]] == ["cell-0", "cell-1"]
    assert exercise["cells"][0]["metadata"] == {}


def test_solution_tagged_cells_are_dropped():
    solution = _nb(
        _md("Question", tags=["manual"], grading={"id": "demo.q"}),
        _md("Rubric", tags=["solution"]),
        _code("print(1)", tags=["solution"]),
    )
    exercise = gen.generate(solution)
    assert _sources(exercise) == ["Question"]
    assert exercise["cells"][0]["metadata"] == {"tags": ["manual"], "grading": {"id": "demo.q"}}


def test_gated_solution_blocks_are_dropped_across_cells_but_the_exercise_code_stays():
    solution = _nb(
        _md("Before.\n```{solution-start} ex-1\n:class: dropdown\n```\nHidden text."),
        _code("secret = 42"),
        _code("def f(x):\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION"),
        _md("More hidden.\n```{solution-end}\n```\nAfter."),
        _code('check("demo.f", globals())'),
        _md(":::{solution-start} ex-2\n:::\nall hidden\n:::{solution-end}\n:::"),
        _code("visible = 1"),
    )
    assert _sources(gen.generate(solution)) == [
        "Before.\n",
        f"def f(x):\n    {STUB.format('demo.f')}",
        "After.",
        'check("demo.f", globals())',
        "visible = 1",
    ]


def test_solution_directive_is_cut_out_of_a_cell():
    solution = _nb(
        _md(
            "Exercise text.\n\n````{solution} ex-1\n```python\ncode = 1\n```\n"
            "model answer\n````\nAfter."
        )
    )
    assert _sources(gen.generate(solution)) == ["Exercise text.\n\nAfter."]


@pytest.mark.parametrize(
    "cells, message",
    [
        ([_code("# BEGIN SOLUTION\nx = 1", grading={"id": "a.b"})], "never closed"),
        ([_code("# END SOLUTION")], "without"),
        (
            [
                _code("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION"),
                _code('check("a.b", globals())'),
            ],
            "nested",
        ),
        (
            [_code("#BEGIN SOLUTION\nx = 1\n# END SOLUTION"), _code('check("a.b", globals())')],
            "malformed marker",
        ),
        ([_code("# BEGIN SOLUTION\nx = 1\n# END SOLUTION")], "needs an item id"),
        ([_md("```{solution-start} x\n```\nhidden")], "never closed"),
        ([_md("```{solution-end}\n```")], "without"),
        ([_md("```{solution} x\nnever closed")], "not closed in its cell"),
    ],
)
def test_broken_markers_stop_the_generation(cells, message):
    with pytest.raises(gen.GenerateError, match=message):
        gen.generate(_nb(*cells))


def test_unreadable_solution_is_a_generate_error(tmp_path, capsys):
    (tmp_path / "01_bad.ipynb").write_text("{not json")
    assert gen.main(["--solutions", str(tmp_path), "--exercises", str(tmp_path / "out")]) == 1
    assert "01_bad.ipynb" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The contract between solution notebooks and registered items


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_notebooks_follow_the_contract(path):
    registry = combined(REGISTRY, EXAMPLES)
    assert gen.lint(gen.read_solution(path), path.stem, registry) == []


def test_lint_reports_contract_breaches():
    registry = {"00_examples": EXAMPLES["00_examples"]}
    solution = _nb(
        _code('check("ex.leaky_relu", globals())'),
        _code("from rectifiers.grading import check\nx = 1"),
        _code('check("ex.leaky_relu", globals())'),
        _code('check("nope", globals())'),
        _code("check('ex.default_slope', globals())"),
        _md("answer", tags=["manual"]),
        _md("answer", tags=["manual"], grading={"id": "ex.why_leaky"}),
        _code("default_negative_slope = 0.01", tags=["grading-skip"]),
        _code('check("ex.default_slope", globals())'),
    )
    problems = "\n".join(gen.lint(solution, "00_examples", registry))
    for fragment in (
        "check cell before",
        "must define `leaky_relu`",
        "'nope' is not a registered item",
        'exactly check("<id>", globals())',
        "needs metadata",
        "followed by its rubric",
        "'ex.leaky_relu' has 2 check cells",
        "'ex.prelu_module' has 0 check cells",
        "defines `default_negative_slope` but is tagged grading-skip",
    ):
        assert fragment in problems
    assert gen.lint(solution, "99_unknown", registry) == [
        "99_unknown: no items are registered for this notebook"
    ]


# --------------------------------------------------------------------------------------------
# MyST sources, and the guarantees the notebook-building DSL used to give


def _pair(tmp_path: Path, stem: str = "02_derivatives") -> Path:
    folder = tmp_path / "solutions"
    folder.mkdir(exist_ok=True)
    for suffix in (".md", ".ipynb"):
        shutil.copy(REPO / "solutions" / f"{stem}{suffix}", folder / f"{stem}{suffix}")
    return folder / f"{stem}.md"


def _edit_pair(md: Path, old: str, new: str) -> None:
    """Edit the source and write its twin from it (keeping ids), as `make notebook` would."""
    text = md.read_text()
    assert old in text
    md.write_text(text.replace(old, new, 1))
    nbformat.write(gen.read_source(md), md.with_suffix(".ipynb"))


def test_the_myst_source_generates_what_its_twin_generates(tmp_path):
    md = _pair(tmp_path)
    from_text = gen.generate_file(md)
    assert from_text == gen.generate_file(md.with_suffix(".ipynb"))
    assert from_text == (REPO / "exercises" / "02_derivatives.ipynb").read_text()


def test_an_out_of_sync_source_stops_the_generation(tmp_path, capsys):
    md = _pair(tmp_path)
    md.write_text(md.read_text().replace("Leaky ReLU", "Leaky ReLU (edited)", 1))
    with pytest.raises(gen.GenerateError, match="make notebook NB="):
        gen.generate_file(md)
    out = tmp_path / "exercises"
    assert gen.main(["--check", "--solutions", str(md.parent), "--exercises", str(out)]) == 1
    assert "differs from" in capsys.readouterr().err


def test_cell_ids_come_from_the_twin_and_survive_an_inserted_cell(tmp_path):
    md = _pair(tmp_path)
    before = json.loads(gen.generate_file(md))
    _edit_pair(md, "## Setup", "A new paragraph.\n\n+++\n\n## Setup")
    after = json.loads(gen.generate_file(md))
    ids_before = [c["id"] for c in before["cells"]]
    ids_after = [c["id"] for c in after["cells"]]
    assert len(ids_after) == len(ids_before) + 1
    assert set(ids_before) <= set(ids_after)  # no existing cell was renumbered


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "**(`leaky_relu_from_scratch`, 2 points)**",
            "**(`leaky_relu_from_scratch`, 3 points)**",
            "gives `leaky_relu_from_scratch` 3 points, the registry 2",
        ),
        (
            "**(`leaky_relu_from_scratch`, 2 points)**",
            "**(`leaky_relu_from_scratch`, 2 points; `nope`, 1 point)**",
            "names `nope`, which is no auto-graded item",
        ),
        (
            "**(`leaky_relu_from_scratch`, 2 points)**",
            "Two points.",
            "must start with its points line",
        ),
        ("| **Total** | | **6** |", "| **Total** | | **7** |", "total is 7, the registry's 6"),
        (
            "| `relu_as_leaky` | checked automatically | 1 |",
            "| `relu_as_leaky` | checked automatically | 2 |",
            "is not a registered item with those points",
        ),
    ],
)
def test_points_in_the_notebook_must_be_the_registrys(tmp_path, old, new, message, capsys):
    md = _pair(tmp_path)
    _edit_pair(md, old, new)
    problems = "\n".join(gen.lint(gen.read_solution(md), md.stem, REGISTRY))
    assert message in problems
    out = tmp_path / "exercises"
    shutil.copytree(REPO / "exercises", out)
    assert gen.main(["--check", "--solutions", str(md.parent), "--exercises", str(out)]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "(2 points, graded by hand)",
            "(3 points, graded by hand)",
            "the answer cell of '05.fan_mode' must say '(2 points, graded by hand)'",
        ),
        (
            "written answer, 2 points",
            "written answer, 1 point",
            "written answer '05.fan_mode' are not the registry's 2",
        ),
    ],
)
def test_written_answer_points_must_be_the_registrys(tmp_path, old, new, message):
    md = _pair(tmp_path, "05_initialisation")
    _edit_pair(md, old, new)
    assert message in "\n".join(gen.lint(gen.read_solution(md), md.stem, REGISTRY))


def test_bad_or_repeated_cell_ids_are_reported():
    solution = _nb(_md("a"), _md("b"), _md("c"))
    solution["cells"][0]["id"] = "x"
    solution["cells"][1]["id"] = "x"
    solution["cells"][2]["id"] = "not valid!"
    problems = "\n".join(
        gen.lint(solution, "00_examples", {"00_examples": EXAMPLES["00_examples"]})
    )
    assert "id 'x' repeats" in problems and "'not valid!' is missing or not" in problems


@pytest.mark.parametrize("path", sorted((REPO / "exercises").glob("*.ipynb")), ids=lambda p: p.stem)
def test_exercise_statements_read_as_text_without_myst(path):
    """In plain Jupyter or Colab (CommonMark, no MyST), an exercise's statement is prose: the
    block is a colon fence, which CommonMark shows as text, not a code fence shown as code."""
    from markdown_it import MarkdownIt

    commonmark = MarkdownIt("commonmark")
    statements = 0
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "markdown" or "{exercise}" not in cell.source:
            continue
        statements += 1
        tokens = commonmark.parse(cell.source)
        as_code = [
            t
            for t in tokens
            if t.type in ("fence", "code_block") and "{exercise}" in t.info + t.content
        ]
        assert not as_code, f"{path.name}: an exercise statement renders as code in plain Jupyter"
        prose = " ".join(t.content for t in tokens if t.type == "inline")
        assert " point" in prose and len(prose) > 100, prose[:200]
    assert statements >= 3
