"""``check("<id>", globals())``: the learner's public check, in-process and in a real kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rectifiers.grading import check, public
from rectifiers.grading.items import examples as ex

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "grading"


def _leaky(x, negative_slope=0.01):
    return torch.where(x > 0, x, negative_slope * x)


def test_pass_line_and_return_value(capsys):
    assert check("ex.leaky_relu", {"leaky_relu": _leaky}) is None
    out = capsys.readouterr().out
    assert (
        out == "\u2705 PASS: `leaky_relu` passed 3 public checks. "
        "Grading also runs hidden checks on new inputs.\n"
    )


def test_fail_line_names_the_case_the_difference_and_the_hint(capsys):
    check("ex.leaky_relu", {"leaky_relu": lambda x, negative_slope=0.01: x})
    out = capsys.readouterr().out
    assert out.startswith(
        "\u274c FAIL: check 1 of 3, "
        "leaky_relu(tensor([-2, -0.5, 0, 1.5], dtype=float32), negative_slope=0.1)"
    )
    assert "expected -0.2" in out and f"Hint: {ex.LEAKY_RELU.hint}" in out
    assert "Traceback" not in out


def test_exceptions_are_one_line_not_a_traceback(capsys):
    def broken(x, negative_slope=0.01):
        return x.nonexistent

    check("ex.leaky_relu", {"leaky_relu": broken})
    out = capsys.readouterr().out
    assert "raised AttributeError" in out and "Traceback" not in out and out.count("\n") == 1


@pytest.mark.parametrize(
    "namespace",
    [
        {},
        {"leaky_relu": lambda x, negative_slope=0.01: (_ for _ in ()).throw(NotImplementedError())},
    ],
)
def test_not_attempted(namespace, capsys):
    check("ex.leaky_relu", namespace)
    assert capsys.readouterr().out.startswith(
        "\u270f\ufe0f NOT ATTEMPTED: `leaky_relu` is not defined yet"
    )


def test_written_and_unknown_items(capsys):
    check("ex.why_leaky", {})
    check("no.such.item", {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "\U0001f4dd WRITTEN ANSWER: ex.why_leaky is graded by hand (2 points)."
    assert out[1].startswith("\u2753 UNKNOWN: there is no exercise 'no.such.item'")


def test_namespace_must_be_a_mapping():
    with pytest.raises(TypeError, match="namespace must be the notebook's globals"):
        check("ex.leaky_relu", ["leaky_relu"])


def test_checks_are_silent_while_grading(capsys, monkeypatch):
    monkeypatch.setattr(public, "GRADING", True)
    assert check("ex.leaky_relu", {}) is None
    assert capsys.readouterr().out == ""


def test_html_escapes_the_message():
    result = public.CheckResult("FAIL", "<script>alert(1)</script>")
    assert "<script>" not in result.html() and "&lt;script&gt;" in result.html()


def test_in_ipython_it_displays_html_with_a_plain_text_fallback(monkeypatch):
    shown = []
    import IPython
    import IPython.display

    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda bundle, raw: shown.append((bundle, raw)))
    check("ex.default_slope", {"default_negative_slope": 0.01})
    ((bundle, raw),) = shown
    assert raw is True and set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"].startswith("\u2705 PASS") and "<strong" in bundle["text/html"]


def test_fixture_notebook_in_a_real_kernel():
    """Each check cell of the solved fixture shows one PASS display (HTML and plain text)."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    notebook = nbformat.read(FIXTURES / "solutions" / "00_examples.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    checks = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith("check(")]
    assert len(checks) == 4
    for cell in checks:
        (output,) = cell.outputs
        assert output.output_type == "display_data"
        assert "PASS" in output.data["text/plain"] and "PASS" in output.data["text/html"], (
            json.dumps(output)
        )
