"""The built book as a reader sees it: every chapter and exercise page, in headless Chromium.

The book (``_build/html``) is served on a loopback port and every page listed under
``chapters/`` or ``solutions/`` in ``_toc.yml`` is opened at desktop width. A page passes when
its math is typeset (MathJax served by the book itself), its figures load and have real alt
text, no cell shows an error, every code block has a copy button, its sections are in the
"On this page" contents, its headings are in order, its launch/download buttons are there, and
it loaded nothing from outside the book. Full-page screenshots at desktop and phone widths go
to ``_build/screenshots/``. Exercise pages must also keep their solutions folded until clicked.

Chromium is never downloaded: the test uses the one installed (``make browser`` installs
Debian's where it can), and skips loudly without one unless ``RECTIFIERS_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from browser_helpers import (
    CHROMIUM_ARGS,
    CHROMIUM_NAMES,
    alt_text_problem,
    book_dir,
    browser_required,
    chapter_docnames,
    find_chromium,
    heading_order_problems,
    is_chapter_notebook,
    output_problem,
    screenshot_dir,
    serve_directory,
    solution_docnames,
    source_file,
    toc_docnames,
    toc_problems,
)

pytestmark = pytest.mark.browser

DOCNAMES = toc_docnames(book_dir() / "_toc.yml")
CHAPTER_PAGES = chapter_docnames(DOCNAMES)
SOLUTION_PAGES = solution_docnames(DOCNAMES)

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 20_000

# Upstream, not ours: Jupyter Book 1 emits sphinx-thebe 0.3.1's inline script (which declares
# ``const THEBE_JS_URL``) twice on every page, and the second declaration throws. Thebe is off,
# so nothing breaks; every other JavaScript error fails the page.
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)

# Waits for MathJax's first typesetting pass; false when the page did not load MathJax.
WAIT_FOR_MATHJAX = """async () => {
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return false;
    await MathJax.startup.promise;
    return true;
}"""

# Everything the checks need from the rendered page, read in one pass.
PAGE_FACTS = r"""() => {
    const article = document.querySelector("article.bd-article");
    if (!article) return null;
    // A heading's anchor is the id of the section it titles (Sphinx puts ids on sections).
    const anchorOf = (h) => h.id || (h.parentElement.tagName === "SECTION"
        && h.parentElement.querySelector(":scope > h1, :scope > h2, :scope > h3, :scope > h4, "
            + ":scope > h5, :scope > h6") === h ? h.parentElement.id : "");
    const textOf = (h) => h.textContent.replace(/#\s*$/, "").trim();
    const inOutput = (el) => el.closest(".cell_output") !== null;
    const toc = [...document.querySelectorAll("#pst-page-toc-nav a[href^='#']")];
    const maths = [...article.querySelectorAll(".math")];
    // TeX that MathJax could not read: an <merror>, or (its noundefined extension) an
    // undefined macro shown as red text.
    const mathErrors = () => {
        if (!(window.MathJax && MathJax.startup && MathJax.startup.document)) return [];
        const bad = [];
        for (const item of MathJax.startup.document.math) {
            const mml = MathJax.startup.toMML(item.root);
            if (/<merror/.test(mml) || /<mtext[^>]*mathcolor="red"[^>]*>\\/.test(mml)) {
                bad.push(item.math.trim().slice(0, 80));
            }
        }
        return bad;
    };
    return {
        lang: document.documentElement.getAttribute("lang"),
        headings: [...article.querySelectorAll("h1, h2, h3, h4, h5, h6")].map(
            (h) => [Number(h.tagName[1]), textOf(h), anchorOf(h)]),
        tocAnchors: toc.map((a) => decodeURIComponent(a.getAttribute("href").slice(1))),
        tocVisibleAnchors: toc.filter((a) => a.checkVisibility()).map(
            (a) => decodeURIComponent(a.getAttribute("href").slice(1))),
        images: [...document.images].map((img) => ({
            src: img.getAttribute("src") || "", alt: img.getAttribute("alt"),
            width: img.naturalWidth, inArticle: article.contains(img)})),
        mathElements: maths.length,
        mathUntypeset: maths.filter((m) => !m.querySelector("mjx-container")).map(
            (m) => m.textContent.trim().slice(0, 80)),
        mathContainers: article.querySelectorAll("mjx-container").length,
        mathErrors: mathErrors(),
        errorOutputs: [...article.querySelectorAll(
            ".output.stderr, .output.traceback, .output.error")].map(
            (o) => o.className + ": " + o.textContent.trim().slice(0, 200)),
        outputTexts: [...article.querySelectorAll(".cell_output")].map((o) => o.textContent),
        codeBlocks: [...article.querySelectorAll("div.highlight")].filter((d) => !inOutput(d)).map(
            (d) => ({hasCopy: d.querySelector("button.copybtn") !== null,
                     inCell: d.closest(".cell_input") !== null,
                     start: d.textContent.trim().slice(0, 60)})),
        launch: [...document.querySelectorAll(".dropdown-launch-buttons a")].map((a) => a.href),
        download: [...document.querySelectorAll(
            ".dropdown-download-buttons a.btn-download-source-button")].map(
            (a) => a.getAttribute("href")),
        repository: [...document.querySelectorAll("a.btn-source-repository-button")].map(
            (a) => a.href),
    };
}"""


_CLEARED: list[bool] = []


@dataclass
class Session:
    context: object  # playwright's BrowserContext
    base_url: str
    blocked: list[str] = field(default_factory=list)


def _no_browser(reason: str) -> None:
    if browser_required():
        pytest.fail(f"RECTIFIERS_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(
        f"!!! BROWSER TESTS NOT RUN: {reason}. Install Chromium (`make browser` does it as root "
        "on Debian) or set CHROMIUM_PATH !!!"
    )


@pytest.fixture(scope="module")
def chromium(built_html: Path) -> Iterator[object]:
    executable = find_chromium()
    if executable is None:
        _no_browser(f"no Chromium or Chrome found (/usr/bin/chromium, {', '.join(CHROMIUM_NAMES)})")
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        pytest.fail(f"CHROMIUM_PATH={executable!r} is not an executable file")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _no_browser(f"the Playwright client is not importable ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def session(chromium: object, built_html: Path) -> Iterator[Session]:
    if not _CLEARED:  # once per run (test_browser_layout.py shares this fixture)
        shutil.rmtree(screenshot_dir(), ignore_errors=True)  # no stale shots of removed pages
        _CLEARED.append(True)
    screenshot_dir().mkdir(parents=True, exist_ok=True)
    with serve_directory(built_html) as base_url:
        port = urlsplit(base_url).port
        context = chromium.new_context(viewport=DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        current = Session(context, base_url)

        # The book must be self-contained: anything not from our loopback server is refused
        # and recorded, and the page that asked for it fails.
        def gatekeeper(route: object) -> None:
            url = urlsplit(route.request.url)
            if url.hostname == "127.0.0.1" and url.port == port:
                route.continue_()
            else:
                current.blocked.append(route.request.url)
                route.abort("blockedbyclient")

        context.route("**/*", gatekeeper)
        try:
            yield current
        finally:
            context.close()


@dataclass
class OpenPage:
    page: object
    problems: list[str]


def _open(session: Session, built_html: Path, docname: str) -> OpenPage:
    if not (built_html / f"{docname}.html").is_file():
        pytest.fail(f"{docname} is in _toc.yml but {built_html} has no {docname}.html: rebuild")
    page = session.context.new_page()
    problems: list[str] = []

    def on_error(error: object) -> None:
        if str(error) not in KNOWN_JS_ERRORS:
            problems.append(f"JavaScript error: {error}")

    page.on("pageerror", on_error)
    page.on(
        "response",
        lambda response: (
            problems.append(f"HTTP {response.status} for {response.url}")
            if response.status >= 400
            else None
        ),
    )
    session.blocked.clear()
    page.goto(session.base_url + f"{docname}.html", wait_until="load")
    return OpenPage(page, problems)


def _settle(page: object) -> bool:
    """Wait for math and images; returns whether MathJax ran."""
    typeset = page.evaluate(WAIT_FOR_MATHJAX)
    page.evaluate("() => document.querySelectorAll('img').forEach((i) => { i.loading = 'eager'; })")
    page.wait_for_function("() => [...document.images].every((i) => i.complete)")
    return typeset


def _repository_config() -> dict:
    config = yaml.safe_load((book_dir() / "_config.yml").read_text(encoding="utf-8"))
    return {
        "repository": config.get("repository") or {},
        "launch": config.get("launch_buttons") or {},
    }


def _launch_problems(docname: str, facts: dict) -> list[str]:
    """Download and repository buttons everywhere; Binder and Colab on notebook pages."""
    problems = []
    source = source_file(book_dir(), docname)
    settings = _repository_config()
    repo_url = (settings["repository"].get("url") or "").rstrip("/")
    if not facts["download"]:
        problems.append("no 'download source' button")
    elif source is not None and not facts["download"][0].endswith(source.name):
        problems.append(f"the download button offers {facts['download'][0]}, not {source.name}")
    if not repo_url:
        problems.append("_config.yml sets no repository url")
    elif [url.rstrip("/") for url in facts["repository"]] != [repo_url]:
        problems.append(f"repository buttons {facts['repository']} are not one link to {repo_url}")
    if source is None or source.suffix != ".ipynb":
        return problems
    repo_path = urlsplit(repo_url).path.strip("/")
    branch = settings["repository"].get("branch", "")
    # An exercise page launches the blank notebook (_ext/exercise_buttons.py), not the solved one.
    launched = docname.replace("solutions/", "exercises/", 1)
    in_repo = str(Path(settings["repository"].get("path_to_book") or "") / f"{launched}.ipynb")
    expected = {
        "Binder": f"{settings['launch'].get('binderhub_url', '').rstrip('/')}/v2/gh/{repo_path}/"
        f"{branch}?urlpath=lab/tree/{in_repo}",
        "Colab": f"{settings['launch'].get('colab_url', '').rstrip('/')}/github/{repo_path}/blob/"
        f"{branch}/{in_repo}",
    }
    for name, url in expected.items():
        if url not in facts["launch"]:
            problems.append(f"no {name} launch button to {url} (have {facts['launch']})")
    if not (book_dir() / in_repo).is_file():
        problems.append(f"launch buttons point at {in_repo}, which is not in the repository")
    return problems


def _page_problems(docname: str, facts: dict, typeset: bool) -> list[str]:
    problems = []
    if facts["lang"] != "en":
        problems.append(f'<html lang="{facts["lang"]}">, expected lang="en"')

    if facts["mathElements"]:
        if not typeset:
            problems.append("the page has math but MathJax did not load")
        if facts["mathUntypeset"]:
            problems.append(f"math left as TeX source: {facts['mathUntypeset'][:3]}")
        if not facts["mathContainers"]:
            problems.append("no rendered math (mjx-container) on a page with math")
    elif is_chapter_notebook(docname):
        problems.append("a chapter notebook with no math on its page")
    problems += [f"MathJax error: {error}" for error in facts["mathErrors"]]

    for image in facts["images"]:
        if image["width"] == 0:
            problems.append(f"image did not load: {image['src']}")
        reason = alt_text_problem(image["alt"], image["src"])
        if reason:
            problems.append(f"image {image['src']}: {reason}")

    problems += [f"error output: {text}" for text in facts["errorOutputs"]]
    for text in facts["outputTexts"]:
        reason = output_problem(text)
        if reason:
            problems.append(f"cell output shows {reason}: {text.strip()[:200]!r}")

    for block in facts["codeBlocks"]:
        if not block["hasCopy"]:
            where = "code cell" if block["inCell"] else "code block"
            problems.append(f"{where} without a copy button: {block['start']!r}")

    headings = [tuple(heading) for heading in facts["headings"]]
    problems += heading_order_problems([(level, text) for level, text, _ in headings])
    problems += toc_problems(headings, set(facts["tocAnchors"]))
    for level, text, anchor in headings:
        listed, shown = anchor in facts["tocAnchors"], anchor in facts["tocVisibleAnchors"]
        if level == 2 and listed and not shown:
            problems.append(f"h2 {text!r} is in the contents but not visible at desktop width")

    problems += _launch_problems(docname, facts)
    return problems


def _screenshot_name(docname: str, width: str) -> Path:
    return screenshot_dir() / f"{docname.replace('/', '__')}.{width}.png"


@pytest.mark.parametrize("docname", CHAPTER_PAGES)
def test_chapter_page_reads_well(session: Session, built_html: Path, docname: str) -> None:
    opened = _open(session, built_html, docname)
    page = opened.page
    try:
        typeset = _settle(page)
        facts = page.evaluate(PAGE_FACTS)
        assert facts is not None, f"{docname}: no <article class='bd-article'> on the page"
        problems = opened.problems + _page_problems(docname, facts, typeset)
        page.screenshot(path=_screenshot_name(docname, "desktop"), full_page=True)
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(200)  # let the layout reflow before the phone shot
        page.screenshot(path=_screenshot_name(docname, "phone"), full_page=True)
        problems += [f"tried to load from outside the book: {url}" for url in session.blocked]
        print(
            f"\n{docname}: {facts['mathContainers']} typeset math, {len(facts['images'])} images, "
            f"{len(facts['codeBlocks'])} code blocks, {len(facts['headings'])} headings"
        )
    finally:
        page.close()
    assert not problems, f"{docname}.html:\n  - " + "\n  - ".join(problems)


@pytest.mark.parametrize(
    "docname",
    SOLUTION_PAGES
    or [pytest.param(None, marks=pytest.mark.skip(reason="no solutions/ page in _toc.yml yet"))],
)
def test_solutions_stay_folded_until_clicked(
    session: Session, built_html: Path, docname: str
) -> None:
    from playwright.sync_api import expect

    opened = _open(session, built_html, docname)
    page = opened.page
    try:
        page.wait_for_load_state("load")
        solutions = page.locator("article .solution")
        assert solutions.count() > 0, f"{docname}: no sphinx-exercise solution on an exercise page"
        for index in range(solutions.count()):
            solution = solutions.nth(index)
            title = solution.locator(":scope > .admonition-title").inner_text().strip()
            body = solution.locator(":scope > :not(.admonition-title)")
            button = solution.locator("button.toggle-button")
            assert button.count() == 1, f"{docname}: solution {title!r} is not a dropdown"
            assert body.count() > 0, f"{docname}: solution {title!r} is empty"
            shown = [body.nth(i).is_visible() for i in range(body.count())]
            assert not any(shown), f"{docname}: solution {title!r} is open before any click"
            assert button.get_attribute("aria-expanded") == "false"
            button.click()
            expect(body.first).to_be_visible()
            expect(button).to_have_attribute("aria-expanded", "true")
        assert not opened.problems, f"{docname}: {opened.problems}"
        assert not session.blocked, f"{docname}: loaded from outside the book: {session.blocked}"
    finally:
        page.close()
