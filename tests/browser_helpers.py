"""What the tests of the built book share: where it is, which pages it has, a loopback web
server, the Chromium finder, and the rules a page is held to.

The rules are plain functions of plain data, so that ``tests/test_browser_rules.py`` can show
each one failing on a bad example; ``tests/test_browser.py`` (in Chromium) and
``tests/test_links.py`` (on the HTML files) apply them to the real book.

The book checked is the Jupyter Book project in ``$RECTIFIERS_BOOK_DIR`` (default: this
repository), built into its ``_build/html``.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import yaml
from bs4 import BeautifulSoup

REPO = Path(__file__).resolve().parents[1]
SOURCE_SUFFIXES = (".ipynb", ".md", ".rst")
BUILD_HINT = (
    "build the book first: `make book` (or `make test`, which builds it strictly before the "
    "browser tests)"
)

# --------------------------------------------------------------------------------------------
# The book and its pages


def book_dir() -> Path:
    """The Jupyter Book project under test (the repository unless ``$RECTIFIERS_BOOK_DIR``)."""
    return Path(os.environ.get("RECTIFIERS_BOOK_DIR") or REPO).resolve()


def html_dir() -> Path:
    return book_dir() / "_build" / "html"


def screenshot_dir() -> Path:
    return book_dir() / "_build" / "screenshots"


def missing_build_message(html: Path) -> str | None:
    """Why the built book at ``html`` cannot be tested, or None when it can."""
    if not (html / "index.html").is_file():
        return f"the built book is missing ({html}/index.html does not exist): {BUILD_HINT}"
    return None


def toc_docnames(toc_file: Path) -> list[str]:
    """Every page of a Jupyter Book ``_toc.yml``, in reading order, without file suffixes."""
    toc = yaml.safe_load(toc_file.read_text(encoding="utf-8"))
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_file}: expected a mapping with a 'root' key")
    found = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                found.append(node["file"])
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    names = []
    for name in found:
        path = PurePosixPath(name)
        if path.suffix in SOURCE_SUFFIXES:
            path = path.with_suffix("")
        if str(path) not in names:
            names.append(str(path))
    return names


def chapter_docnames(docnames: Sequence[str]) -> list[str]:
    """The reader's pages: everything under ``chapters/`` and ``solutions/``."""
    return [name for name in docnames if name.startswith(("chapters/", "solutions/"))]


def solution_docnames(docnames: Sequence[str]) -> list[str]:
    return [name for name in docnames if name.startswith("solutions/")]


def source_file(book: Path, docname: str) -> Path | None:
    """The source of a page (``.ipynb``, ``.md`` or ``.rst``), or None if there is none."""
    for suffix in SOURCE_SUFFIXES:
        candidate = book / f"{docname}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def is_chapter_notebook(docname: str) -> bool:
    """A numbered chapter notebook (``chapters/NN_*``): these always have math."""
    return re.fullmatch(r"chapters/\d\d_[^/]+", docname) is not None


# --------------------------------------------------------------------------------------------
# Serving and browsing


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass  # the tests report failed requests themselves, from the browser's side


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port for the duration; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """``$CHROMIUM_PATH``, else Debian's ``/usr/bin/chromium``, else a Chromium/Chrome on PATH."""
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit  # the caller checks it: a wrong explicit path is an error, not a skip
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_required() -> bool:
    """Whether ``$RECTIFIERS_REQUIRE_BROWSER`` turns a missing browser into a failure."""
    value = os.environ.get("RECTIFIERS_REQUIRE_BROWSER", "")
    if value not in ("", "0", "1"):
        raise ValueError(f"RECTIFIERS_REQUIRE_BROWSER must be '0' or '1', got {value!r}")
    return value == "1"


# --------------------------------------------------------------------------------------------
# Rules for one page


_GENERIC_ALT = re.compile(
    r"(image|img|figure|fig|picture|photo|plot|graph|chart|output|png|svg|untitled)\W*\d*",
    re.IGNORECASE,
)
_FILE_NAME = re.compile(r"\S+\.(png|jpe?g|gif|svg|webp|bmp|pdf)", re.IGNORECASE)
_HASH = re.compile(r"[0-9a-f]{8,}(\.\w+)?", re.IGNORECASE)


def alt_text_problem(alt: str | None, src: str = "") -> str | None:
    """Why ``alt`` is not real alternative text for the image at ``src``; None when it is."""
    if alt is None:
        return "no alt attribute"
    text = " ".join(alt.split())
    if not text:
        return "empty alt text"
    if _FILE_NAME.fullmatch(text) or text == PurePosixPath(urlsplit(src).path).name:
        return f"alt text is a file name ({text!r})"
    if _HASH.fullmatch(text):
        return f"alt text is a hash ({text!r})"
    if _GENERIC_ALT.fullmatch(text):
        return f"alt text is a generic word ({text!r})"
    if not re.search(r"[A-Za-z]{2}", text):
        return f"alt text has no words ({text!r})"
    return None


def heading_order_problems(headings: Sequence[tuple[int, str]]) -> list[str]:
    """Outline problems in ``(level, text)`` headings: one h1 first, no skipped level."""
    if not headings:
        return ["the article has no heading"]
    problems = []
    if headings[0][0] != 1:
        problems.append(f"the first heading is h{headings[0][0]} ({headings[0][1]!r}), not h1")
    extra_h1 = [text for level, text in headings[1:] if level == 1]
    if extra_h1:
        problems.append(f"more than one h1: also {extra_h1}")
    for (before, _), (level, text) in zip(headings, headings[1:], strict=False):
        if level > before + 1:
            problems.append(f"h{before} is followed by h{level} ({text!r}): h{before + 1} skipped")
    return problems


def toc_problems(headings: Sequence[tuple[int, str, str]], toc_anchors: set[str]) -> list[str]:
    """Section headings (h2, h3) of ``(level, text, anchor)`` missing from the page's TOC."""
    problems = []
    for level, text, anchor in headings:
        if level not in (2, 3):
            continue
        if not anchor:
            problems.append(f"h{level} {text!r} has no anchor to link to")
        elif anchor not in toc_anchors:
            problems.append(f"h{level} {text!r} (#{anchor}) is not in the 'On this page' contents")
    return problems


_UNCAUGHT = re.compile(r"Traceback \(most recent call last\)|^-{20,}\n\w+(Error|Exception)", re.M)


# The delimiter row of a Markdown table ("|---:|:---|"), left as text: a rendered table has none.
_RAW_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\|")


def output_problem(text: str) -> str | None:
    """Why a cell's output text shows an uncaught error or unrendered Markdown, or None.

    A chapter may print a caught exception on purpose (``ValueError: ...`` to show what bad
    input gets), so the rule is the mark of an *uncaught* one: a traceback as Python or IPython
    prints it. Error outputs and stderr streams are caught separately, by their CSS classes.
    """
    if _UNCAUGHT.search(text):
        return "a Traceback"
    if _RAW_TABLE.search(text):
        return "a Markdown table as raw text (its output was not rendered as Markdown)"
    return None


_CITE_ROLE = re.compile(r"[{:]cite(?::[a-z]+)?[}:]`([^`]*)`")


def cite_keys(source_text: str) -> list[str]:
    """The BibTeX keys cited in MyST/reST text with ``{cite}``/``{cite:p}``/... roles."""
    keys = []
    for group in _CITE_ROLE.findall(source_text):
        group = re.sub(r"\{[^{}]*\}", "", group)  # pre/post notes: {cite:p}`{see}key{p. 3}`
        keys.extend(key.strip() for key in group.split(",") if key.strip())
    return keys


def normalise_text(text: str) -> str:
    """Lower-case letters and digits only, to compare a title with its rendering."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


# --------------------------------------------------------------------------------------------
# The link crawler


_LINK_ATTRIBUTES = {
    "a": "href",
    "area": "href",
    "link": "href",
    "img": "src",
    "script": "src",
    "iframe": "src",
    "source": "src",
    "video": "src",
    "audio": "src",
    "embed": "src",
}
_NOT_FETCHED = ("mailto:", "tel:", "javascript:", "data:")


@dataclass
class LinkReport:
    pages: int = 0
    internal: int = 0
    anchors: int = 0
    external: set[str] = field(default_factory=set)
    broken: list[str] = field(default_factory=list)


def page_ids(soup: BeautifulSoup) -> set[str]:
    ids = {tag["id"] for tag in soup.find_all(id=True)}
    return ids | {tag["name"] for tag in soup.find_all("a", attrs={"name": True})}


def _references(soup: BeautifulSoup) -> Iterator[str]:
    for tag_name, attribute in _LINK_ATTRIBUTES.items():
        for tag in soup.find_all(tag_name):
            value = tag.get(attribute)
            if value is not None:
                yield value.strip()
    for meta in soup.find_all("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)}):
        match = re.search(r"url\s*=\s*(\S+)", meta.get("content", ""), re.IGNORECASE)
        if match:
            yield match.group(1).strip("'\"")


def crawl(root: Path) -> LinkReport:
    """Check every ``href``/``src`` of every HTML page under ``root`` (``_static`` aside).

    A relative link must name a file under ``root``; a ``#fragment`` must be an ``id`` (or
    ``<a name>``) of its target page. Links to other hosts are counted, never fetched.
    """
    report = LinkReport()
    ids_cache: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in ids_cache:
            ids_cache[path] = page_ids(BeautifulSoup(path.read_bytes(), "html.parser"))
        return ids_cache[path]

    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)
    for page in pages:
        report.pages += 1
        soup = BeautifulSoup(page.read_bytes(), "html.parser")
        ids_cache[page] = page_ids(soup)
        page_url = "/" + page.relative_to(root).as_posix()
        for reference in _references(soup):
            if not reference or reference == "#" or reference.startswith(_NOT_FETCHED):
                continue
            parts = urlsplit(reference)
            if parts.scheme or parts.netloc:
                report.external.add(reference)
                continue
            where = f"{page.relative_to(root)}: {reference!r}"
            # Resolved against the page's site path, so ".." cannot climb above the site root.
            target_path = posixpath.normpath(unquote(urlsplit(urljoin(page_url, reference)).path))
            target = root / target_path.lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            report.internal += 1
            if not target.is_file():
                report.broken.append(f"{where} -> {target.relative_to(root)} does not exist")
                continue
            if parts.fragment:
                report.anchors += 1
                if target.suffix != ".html":
                    report.broken.append(f"{where} has an anchor into a non-HTML file")
                elif unquote(parts.fragment) not in ids_of(target):
                    anchor, name = unquote(parts.fragment), target.relative_to(root)
                    report.broken.append(f"{where} -> no id={anchor!r} in {name}")
    return report


# --------------------------------------------------------------------------------------------
# Layout: nothing clipped, nothing wider than the screen, no bookkeeping on show

#: Read in the page at the current viewport: the page's own width and every visible code
#: block or text output, with how far it would have to scroll sideways.
LAYOUT_FACTS = r"""() => {
    const article = document.querySelector("article.bd-article");
    const doc = document.documentElement;
    const right = window.innerWidth;
    // Elements that stick out of the viewport, outside any box that scrolls on its own.
    const scrollsOnItsOwn = (el) => {
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
            const style = getComputedStyle(p);
            if (["auto", "scroll", "hidden"].includes(style.overflowX)) return true;
        }
        return false;
    };
    const culprits = [];
    if (doc.scrollWidth > right) {
        for (const el of document.body.querySelectorAll("*")) {
            const box = el.getBoundingClientRect();
            if (box.width > 0 && box.right > right + 1 && !scrollsOnItsOwn(el)) {
                const cls = (el.getAttribute("class") || "").split(/\s+/).slice(0, 2).join(".");
                culprits.push(`${el.tagName.toLowerCase()}${cls ? "." + cls : ""} `
                    + `(right edge ${Math.round(box.right)} px): `
                    + el.textContent.trim().slice(0, 60));
                if (culprits.length >= 5) break;
            }
        }
    }
    const blocks = article ? [...article.querySelectorAll("div.highlight pre, .cell_output pre")]
        .filter((pre) => pre.checkVisibility())
        .map((pre) => ({
            text: pre.textContent,
            overflow: pre.scrollWidth - pre.clientWidth,
            output: pre.closest(".cell_output") !== null,
        })) : [];
    return {viewport: right, scrollWidth: doc.scrollWidth, culprits, blocks};
}"""


def overflow_problem(scroll_width: int, viewport: int, culprits: Sequence[str]) -> str | None:
    """Why a page is wider than the viewport (the page's own ``scrollWidth``), or None."""
    if scroll_width <= viewport:
        return None
    where = "; ".join(culprits) if culprits else "no single element found"
    return f"the page is {scroll_width} px wide in a {viewport} px viewport ({where})"


def clipped_code_problems(blocks: Sequence[dict], tolerance: int = 1) -> list[str]:
    """Visible code blocks and text outputs that scroll sideways (``overflow`` px hidden)."""
    problems = []
    for block in blocks:
        if block["overflow"] > tolerance:
            kind = "text output" if block.get("output") else "code block"
            longest = max(block["text"].splitlines() or [""], key=len)
            problems.append(
                f"{kind} scrolls sideways by {block['overflow']} px: {longest.strip()[:80]!r}"
            )
    return problems


def visible_glue_problems(blocks: Sequence[dict]) -> list[str]:
    """Visible code that calls ``glue(``: bookkeeping belongs in a ``remove-cell`` cell."""
    return [
        f"visible glue( call: {line.strip()[:80]!r}"
        for block in blocks
        if not block.get("output")
        for line in block["text"].splitlines()
        if "glue(" in line
    ]
