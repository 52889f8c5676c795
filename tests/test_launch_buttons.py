"""Every launch and download button of every page gives the right notebook.

On an exercise page (``solutions/NN_topic``), Binder, Colab and the ``.ipynb`` download give the
blank notebook ``exercises/NN_topic.ipynb``, never the solved one (``_ext/exercise_buttons.py``);
on a chapter page they give the chapter's own notebook; the other pages have no launch buttons.
The URLs are read in headless Chromium from the built book (``_build/html``), as a reader's
click would follow them, and each download is fetched and compared byte for byte with the file
in the repository. The extension's own logic is also tested without a browser, on the
theme's button structure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.request import urlopen

import pytest
import yaml
from browser_helpers import (
    CHROMIUM_ARGS,
    book_dir,
    browser_required,
    find_chromium,
    html_dir,
    missing_build_message,
    serve_directory,
    toc_docnames,
)
from sphinx.errors import ExtensionError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
import exercise_buttons  # noqa: E402 (the book's local extension folder, not a package)

DOCNAMES = toc_docnames(book_dir() / "_toc.yml")

READ_BUTTONS = """() => ({
    launch: [...document.querySelectorAll(".dropdown-launch-buttons a")].map(
        (a) => ({text: a.textContent.trim(), href: a.href})),
    download: [...document.querySelectorAll(".dropdown-download-buttons a")].map(
        (a) => ({text: a.textContent.trim(), href: a.href})),
})"""


def expected_launch(docname: str) -> dict[str, str] | None:
    """The Binder and Colab URLs a page must offer (None: it must offer none), from _config.yml."""
    notebook = {"chapters": docname, "solutions": "exercises/" + docname.partition("/")[2]}.get(
        docname.partition("/")[0]
    )
    if notebook is None or not (book_dir() / f"{docname}.ipynb").is_file():
        return None
    config = yaml.safe_load((book_dir() / "_config.yml").read_text(encoding="utf-8"))
    repo, launch = config["repository"], config["launch_buttons"]
    slug = urlsplit(repo["url"]).path.strip("/")
    in_repo = "/".join(filter(None, [repo.get("path_to_book", "").strip("/"), notebook]))
    branch = repo.get("branch", "main")
    return {
        "Binder": f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{slug}/{branch}"
        f"?urlpath=lab/tree/{in_repo}.ipynb",
        "Colab": f"{launch['colab_url'].rstrip('/')}/github/{slug}/blob/{branch}/{in_repo}.ipynb",
    }


def expected_download(docname: str) -> Path | None:
    """The repository file the page's ``.ipynb`` download must be identical to."""
    folder, _, name = docname.partition("/")
    path = book_dir() / f"{docname}.ipynb"
    if folder == "solutions" and path.is_file():
        return book_dir() / "exercises" / f"{name}.ipynb"
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------------
# The extension on the theme's button structure (no browser)


def _context(pagename: str) -> dict:
    def pathto(target: str, resource: int = 0) -> str:
        return "../" + target

    notebook = f"{pagename}.ipynb"
    return {
        "pathto": pathto,
        "header_buttons": [
            {
                "label": "download-buttons",
                "buttons": [
                    {"type": "link", "url": f"../_sources/{notebook}", "text": ".ipynb"},
                    {"type": "javascript", "javascript": "window.print()", "text": ".pdf"},
                ],
            },
            {
                "label": "launch-buttons",
                "buttons": [
                    {
                        "type": "link",
                        "text": "Binder",
                        "url": f"B/v2/gh/o/r/main?urlpath=lab/tree/{notebook}",
                    },
                    {"type": "link", "text": "Colab", "url": f"C/github/o/r/blob/main/{notebook}"},
                ],
            },
        ],
    }


class _App:
    def __init__(self, srcdir: Path, launch: bool = True) -> None:
        self.srcdir = str(srcdir)
        options = {"launch_buttons": {"binderhub_url": "B"} if launch else {}}
        self.config = type("Config", (), {"html_theme_options": options})()


@pytest.fixture
def book(tmp_path: Path) -> Path:
    for folder in ("solutions", "exercises", "chapters"):
        (tmp_path / folder).mkdir()
    (tmp_path / "solutions" / "01_a.ipynb").write_text("{}")
    (tmp_path / "exercises" / "01_a.ipynb").write_text("{}")
    (tmp_path / "chapters" / "01_a.ipynb").write_text("{}")
    return tmp_path


def test_an_exercise_page_points_at_the_blank_notebook(book):
    context = _context("solutions/01_a")
    exercise_buttons.point_at_blank(_App(book), "solutions/01_a", "page.html", context, None)
    download, launch = (group["buttons"] for group in context["header_buttons"])
    assert [b["url"] for b in launch] == [
        "B/v2/gh/o/r/main?urlpath=lab/tree/exercises/01_a.ipynb",
        "C/github/o/r/blob/main/exercises/01_a.ipynb",
    ]
    assert download[0]["url"] == "../_sources/exercises/01_a.ipynb"
    assert download[1] == {"type": "javascript", "javascript": "window.print()", "text": ".pdf"}


def test_a_chapter_page_is_left_alone(book):
    context = _context("chapters/01_a")
    before = repr(context["header_buttons"])
    exercise_buttons.point_at_blank(_App(book), "chapters/01_a", "page.html", context, None)
    assert repr(context["header_buttons"]) == before


def test_a_solution_without_a_blank_twin_is_left_alone(book):
    (book / "exercises" / "01_a.ipynb").unlink()
    context = _context("solutions/01_a")
    before = repr(context["header_buttons"])
    exercise_buttons.point_at_blank(_App(book), "solutions/01_a", "page.html", context, None)
    assert repr(context["header_buttons"]) == before


def test_a_launch_button_it_cannot_rewrite_fails_the_build(book):
    context = _context("solutions/01_a")
    context["header_buttons"][1]["buttons"][1]["url"] = "C/somewhere/else.ipynb"
    with pytest.raises(ExtensionError, match="Colab button of solutions/01_a"):
        exercise_buttons.point_at_blank(_App(book), "solutions/01_a", "page.html", context, None)


def test_missing_buttons_fail_the_build(book):
    context = _context("solutions/01_a")
    context["header_buttons"] = context["header_buttons"][:1]
    with pytest.raises(ExtensionError, match="no launch buttons"):
        exercise_buttons.point_at_blank(_App(book), "solutions/01_a", "page.html", context, None)
    context = _context("solutions/01_a")
    context["header_buttons"][0]["buttons"] = []
    with pytest.raises(ExtensionError, match=r"no \.ipynb download"):
        exercise_buttons.point_at_blank(_App(book), "solutions/01_a", "page.html", context, None)


def test_expected_urls_follow_the_config():
    exercise = expected_launch("solutions/01_motivation")
    assert exercise is not None
    assert all(url.endswith("exercises/01_motivation.ipynb") for url in exercise.values())
    chapter = expected_launch("chapters/01_motivation")
    assert chapter is not None
    assert all(url.endswith("chapters/01_motivation.ipynb") for url in chapter.values())
    assert expected_launch("chapters/intro") is None


# --------------------------------------------------------------------------------------------
# The built book, in Chromium


@pytest.fixture(scope="module")
def pages() -> dict[str, dict]:
    """Each page's launch and download buttons as Chromium sees them, with the server's URL."""
    html = html_dir()
    problem = missing_build_message(html)
    if problem:
        pytest.fail(problem)
    executable = find_chromium()
    if executable is None:
        if browser_required():
            pytest.fail("RECTIFIERS_REQUIRE_BROWSER=1 but no Chromium or Chrome was found")
        pytest.skip("!!! BROWSER TESTS NOT RUN: no Chromium or Chrome found (CHROMIUM_PATH) !!!")
    from playwright.sync_api import sync_playwright

    found = {}
    with serve_directory(html) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            for docname in DOCNAMES:
                page.goto(urljoin(base_url, f"{docname}.html"), wait_until="domcontentloaded")
                found[docname] = page.evaluate(READ_BUTTONS)
            # Fetch each download while the server is up.
            for buttons in found.values():
                for link in buttons["download"]:
                    if link["href"].startswith(base_url) and link["href"].endswith(".ipynb"):
                        with urlopen(link["href"], timeout=10) as response:  # noqa: S310 (loopback)
                            link["body"] = response.read()
        finally:
            browser.close()
    return found


@pytest.mark.browser
@pytest.mark.parametrize("docname", DOCNAMES)
def test_every_button_gives_the_right_notebook(pages, docname):
    buttons = pages[docname]
    launch = {link["text"]: link["href"] for link in buttons["launch"]}
    expected = expected_launch(docname)
    if expected is None:
        assert launch == {}, f"{docname} is not a notebook page but offers {launch}"
    else:
        assert launch == expected
    notebooks = [link for link in buttons["download"] if link["href"].endswith(".ipynb")]
    source = expected_download(docname)
    if source is None:
        assert notebooks == []
        return
    assert len(notebooks) == 1, buttons["download"]
    assert notebooks[0]["body"] == source.read_bytes(), f"download is not {source}"
    if docname.startswith("solutions/"):
        everything = [link["href"] for link in buttons["launch"] + buttons["download"]]
        assert not [url for url in everything if f"{docname}.ipynb" in url], everything
