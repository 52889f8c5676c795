"""rectifiers.tables: results tables as Markdown, formatted per column, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from doctest_helpers import assert_examples_pass

from rectifiers import tables
from rectifiers.tables import table


def test_doctests():
    assert_examples_pass(tables)


def test_markdown_alignment_formats_and_escaping():
    t = table(
        ["name", "n", "share", "note|x"],
        [["a|b", 1200, torch.tensor(0.25), None], ["c", np.int64(3), 0.5, True]],
        formats=[None, ",", ".1%", None],
    )
    assert t.markdown().splitlines() == [
        r"| name | n | share | note\|x |",
        "|:---|---:|---:|:---|",
        r"| a\|b | 1,200 | 25.0% |  |",
        "| c | 3 | 50.0% | yes |",
    ]
    assert t._repr_markdown_() == t.markdown()


def test_plain_text_form_for_terminals():
    text = repr(table(["x", "square"], [[1, 1], [10, 100]]))
    assert text.splitlines() == [" x  square", " 1       1", "10     100"]


def test_empty_table_has_a_header():
    assert table(["a", "b"], []).markdown() == "| a | b |\n|:---|:---|"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"columns": "ab", "rows": []}, TypeError, "columns must be a sequence of strings"),
        ({"columns": ["a", 1], "rows": []}, TypeError, "columns must be"),
        ({"columns": ["a"], "rows": [[1, 2]]}, ValueError, "row 0 has 2 values, expected 1"),
        ({"columns": ["a"], "rows": [], "formats": [None, None]}, ValueError, "formats has 2"),
        ({"columns": ["a"], "rows": [[1.5]], "formats": ["d"]}, ValueError, "column 'a'"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        table(**kwargs)
