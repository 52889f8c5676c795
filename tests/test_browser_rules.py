"""The rules the book's pages are held to, each shown to catch a bad example.

``tests/test_browser.py`` and ``tests/test_links.py`` apply these rules to the built book; here
they run on small hand-made inputs, with no book and no browser, so every check is seen to fail
when it should.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
from browser_helpers import (
    alt_text_problem,
    browser_required,
    chapter_docnames,
    cite_keys,
    clipped_code_problems,
    crawl,
    find_chromium,
    heading_order_problems,
    is_chapter_notebook,
    missing_build_message,
    normalise_text,
    output_problem,
    overflow_problem,
    serve_directory,
    solution_docnames,
    source_file,
    toc_docnames,
    toc_problems,
    visible_glue_problems,
)


def test_toc_docnames_lists_every_page_in_order_without_suffixes(tmp_path: Path) -> None:
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: chapters/intro\nparts:\n"
        "  - caption: Chapters\n    chapters:\n"
        "      - file: chapters/01_motivation.ipynb\n"
        "        sections:\n          - file: chapters/01a_detail\n"
        "      - file: chapters/01_motivation\n"  # a repeat is listed once
        "  - caption: Exercises\n    chapters:\n      - file: solutions/01_motivation\n"
        "      - url: https://example.org\n        title: elsewhere\n"
    )
    assert toc_docnames(toc) == [
        "chapters/intro",
        "chapters/01_motivation",
        "chapters/01a_detail",
        "solutions/01_motivation",
    ]


def test_toc_docnames_rejects_a_toc_without_root(tmp_path: Path) -> None:
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nchapters: []\n")
    with pytest.raises(ValueError, match="root"):
        toc_docnames(toc)


def test_page_groups() -> None:
    names = ["chapters/intro", "chapters/01_motivation", "solutions/01_motivation", "genindex"]
    assert chapter_docnames(names) == names[:3]
    assert solution_docnames(names) == ["solutions/01_motivation"]
    assert is_chapter_notebook("chapters/01_motivation")
    assert not is_chapter_notebook("chapters/intro")
    assert not is_chapter_notebook("solutions/01_motivation")


def test_source_file_finds_the_page_source(tmp_path: Path) -> None:
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "01_x.ipynb").write_text("{}")
    assert source_file(tmp_path, "chapters/01_x") == tmp_path / "chapters" / "01_x.ipynb"
    assert source_file(tmp_path, "chapters/02_y") is None


def test_missing_build_message_names_the_fix(tmp_path: Path) -> None:
    assert "make book" in missing_build_message(tmp_path)
    (tmp_path / "index.html").write_text("<html></html>")
    assert missing_build_message(tmp_path) is None


@pytest.mark.parametrize(
    "alt",
    [
        "Leaky ReLU and ReLU on [-3, 3]: the leaky one keeps a slope of 0.1 below zero",
        "Fraction of dead units per layer",
    ],
)
def test_real_alt_text_passes(alt: str) -> None:
    assert alt_text_problem(alt, "../_images/3f2a9c0d.png") is None


@pytest.mark.parametrize(
    ("alt", "src", "reason"),
    [
        (None, "a.png", "no alt attribute"),
        ("", "a.png", "empty"),
        ("   ", "a.png", "empty"),
        ("../_images/3f2a9c0d41b2e7aa.png", "../_images/3f2a9c0d41b2e7aa.png", "file name"),
        ("plot.png", "x.png", "file name"),
        ("relu_curve", "../_images/relu_curve", "file name"),
        ("3f2a9c0d41b2e7aa", "x.png", "hash"),
        ("image", "x.png", "generic"),
        ("Figure 2", "x.png", "generic"),
        ("-- 1 --", "x.png", "no words"),
    ],
)
def test_bad_alt_text_is_caught(alt: str | None, src: str, reason: str) -> None:
    problem = alt_text_problem(alt, src)
    assert problem is not None and reason in problem


def test_heading_order() -> None:
    good = [(1, "T"), (2, "a"), (3, "b"), (2, "c"), (3, "d"), (4, "e")]
    assert heading_order_problems(good) == []
    assert "first heading is h2" in heading_order_problems([(2, "a"), (3, "b")])[0]
    assert "h3 skipped" in heading_order_problems([(1, "T"), (2, "a"), (4, "b")])[0]
    assert "h2 skipped" in heading_order_problems([(1, "T"), (3, "b")])[0]
    assert "more than one h1" in heading_order_problems([(1, "T"), (2, "a"), (1, "U")])[0]
    assert heading_order_problems([]) == ["the article has no heading"]


def test_toc_problems_names_each_missing_section() -> None:
    headings = [(1, "Title", "title"), (2, "Why", "why"), (3, "How", "how"), (4, "Deep", "deep")]
    assert toc_problems(headings, {"why", "how"}) == []
    missing = toc_problems(headings, {"why"})
    assert len(missing) == 1 and "'How'" in missing[0]
    assert "no anchor" in toc_problems([(2, "Raw", "")], set())[0]


@pytest.mark.parametrize(
    "text",
    [
        "Traceback (most recent call last):\n  File ...",
        "-" * 75 + "\nValueError                                Traceback (most recent call last)",
        "| α | accuracy |\n|---:|---:|\n| 0.01 | 60.1% |",
        "| z | | w1 | |:---|:---|---:| | -1.0000 |",
    ],
)
def test_output_problem_catches_errors(text: str) -> None:
    assert output_problem(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "mean squared error 0.031",
        "tensor([0.1, 2.0])",
        "errors: 0",
        "ValueError: negative_slope must be finite, got nan",  # printed on purpose, caught
    ],
)
def test_output_problem_passes_ordinary_output(text: str) -> None:
    assert output_problem(text) is None


def test_cite_keys_reads_myst_and_rest_roles() -> None:
    text = (
        "ReLU {cite:p}`nair2010rectified, glorot2011deep` and {cite}`maas2013rectifier`; "
        "{cite:t}`{see}he2015delving{p. 3}` and :cite:p:`xu2015empirical`."
    )
    assert cite_keys(text) == [
        "nair2010rectified",
        "glorot2011deep",
        "maas2013rectifier",
        "he2015delving",
        "xu2015empirical",
    ]
    assert cite_keys("no citations, just `code`") == []


def test_normalise_text_ignores_case_and_punctuation() -> None:
    assert normalise_text("Delving Deep into {ImageNet}: 2015!") == "delvingdeepintoimagenet2015"


@pytest.fixture
def crawl_site(tmp_path: Path):
    """Write a site, given as ``{path: text}``, into a temporary folder and crawl it."""

    def write_and_crawl(files: dict[str, str]):
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return crawl(tmp_path)

    return write_and_crawl


def test_crawl_passes_a_consistent_site_and_counts_external_links(crawl_site) -> None:
    report = crawl_site(
        {
            "index.html": '<meta http-equiv="Refresh" content="0; url=chapters/intro.html" />',
            "chapters/intro.html": (
                '<h1 id="top">Intro</h1><a href="#top">self</a> <a href="api.html#f">f</a> '
                '<a href="../_static/s.css?v=1">css</a> <img src="../_images/a%20b.png" alt="x"> '
                '<a href="https://example.org/x">out</a> <a href="mailto:a@b.c">mail</a> '
                '<a href="#">menu</a> <a href="../sub/">dir</a> <a href="api.html#old">old</a>'
            ),
            "chapters/api.html": '<dt id="f">f</dt><a name="old"></a>',
            "_static/s.css": "body {}",
            "_static/vendor.html": '<a href="missing.html">not ours</a>',
            "_images/a b.png": "png",
            "sub/index.html": "<p>sub</p>",
        }
    )
    assert report.broken == []
    assert report.pages == 4  # _static is not crawled
    assert report.external == {"https://example.org/x"}
    assert report.anchors == 3
    assert report.internal == 7


def test_crawl_finds_missing_pages_files_and_anchors(crawl_site) -> None:
    broken = crawl_site(
        {
            "index.html": '<meta http-equiv="refresh" content="0; url=gone.html">',
            "a.html": (
                '<a href="b.html#nope">x</a> <a href="#also-nope">y</a> '
                '<script src="_static/missing.js"></script> <a href="s.css#x">z</a>'
            ),
            "b.html": '<p id="yes">b</p>',
            "s.css": "",
        }
    ).broken
    assert len(broken) == 5, broken
    assert any("gone.html" in item for item in broken)
    assert any("id='nope'" in item for item in broken)
    assert any("id='also-nope'" in item for item in broken)
    assert any("missing.js" in item for item in broken)
    assert any("non-HTML" in item for item in broken)


def test_serve_directory_serves_on_loopback_then_stops(tmp_path: Path) -> None:
    (tmp_path / "hello.html").write_text("<p>hello</p>")
    with serve_directory(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(base_url + "hello.html", timeout=5) as response:
            assert response.read() == b"<p>hello</p>"
    with pytest.raises(OSError):
        urllib.request.urlopen(base_url + "hello.html", timeout=5)


def test_find_chromium_prefers_chromium_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMIUM_PATH", "/opt/my/chrome")
    assert find_chromium() == "/opt/my/chrome"
    monkeypatch.delenv("CHROMIUM_PATH")
    monkeypatch.setenv("PATH", "")
    expected = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    assert find_chromium() == expected


def test_find_chromium_searches_path_when_debian_chromium_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chrome = tmp_path / "google-chrome"
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    real_access = os.access
    monkeypatch.delenv("CHROMIUM_PATH", raising=False)
    monkeypatch.setattr(
        "browser_helpers.os.access",
        lambda path, mode: False if path == "/usr/bin/chromium" else real_access(path, mode),
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_chromium() == str(chrome)
    chrome.unlink()
    assert find_chromium() is None


@pytest.mark.parametrize(("value", "required"), [("", False), ("0", False), ("1", True)])
def test_browser_required(monkeypatch: pytest.MonkeyPatch, value: str, required: bool) -> None:
    monkeypatch.setenv("RECTIFIERS_REQUIRE_BROWSER", value)
    assert browser_required() is required


def test_browser_required_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECTIFIERS_REQUIRE_BROWSER", "yes")
    with pytest.raises(ValueError, match="RECTIFIERS_REQUIRE_BROWSER"):
        browser_required()


def test_overflow_problem_uses_the_pages_scroll_width() -> None:
    assert overflow_problem(390, 390, []) is None
    problem = overflow_problem(561, 390, ["dt.sig (right edge 561 px): relu(x)"])
    assert problem is not None and "561 px wide in a 390 px viewport" in problem
    assert "dt.sig" in problem
    assert "no single element" in overflow_problem(400, 390, [])


def test_clipped_code_problems_name_the_longest_line() -> None:
    fits = {"text": "x = 1\n", "overflow": 0, "output": False}
    clipped = {"text": "short\n" + "y" * 120 + "\n", "overflow": 240, "output": False}
    output = {"text": "z" * 150, "overflow": 30, "output": True}
    assert clipped_code_problems([fits]) == []
    problems = clipped_code_problems([fits, clipped, output])
    assert len(problems) == 2
    assert problems[0].startswith("code block scrolls sideways by 240 px: 'yyy")
    assert problems[1].startswith("text output scrolls sideways by 30 px")
    assert clipped_code_problems([{"text": "a", "overflow": 1}]) == []  # rounding


def test_visible_glue_problems_ignore_outputs() -> None:
    code = {"text": "x = 1\nglue('acc', x, display=False)\n", "overflow": 0, "output": False}
    printed = {"text": "glue(...) is a function", "overflow": 0, "output": True}
    assert visible_glue_problems([code, printed]) == [
        "visible glue( call: \"glue('acc', x, display=False)\""
    ]
    assert visible_glue_problems([{"text": "from myst_nb import glue\n", "overflow": 0}]) == []
