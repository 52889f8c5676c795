"""The built book's links and citations, read from the HTML files (no browser needed).

Marked ``browser`` because it needs the built book, which ``make test`` builds after the unit
tests; ``make browser`` runs it with the Chromium tests.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml
from browser_helpers import (
    book_dir,
    cite_keys,
    crawl,
    normalise_text,
    source_file,
    toc_docnames,
)
from bs4 import BeautifulSoup
from pybtex.database import parse_file
from pybtex.richtext import Text

pytestmark = pytest.mark.browser


def test_every_internal_link_and_anchor_resolves(built_html: Path) -> None:
    report = crawl(built_html)
    print(
        f"\nlinks: {report.pages} pages, {report.internal} internal links "
        f"({report.anchors} with #anchors), {len(report.broken)} broken, "
        f"{len(report.external)} distinct external links (counted, not fetched)"
    )
    assert report.pages > 0 and report.internal > 0, f"no pages or links found under {built_html}"
    assert not report.broken, f"{len(report.broken)} broken links:\n  " + "\n  ".join(report.broken)


def test_every_toc_page_was_built(built_html: Path) -> None:
    missing = [
        name
        for name in toc_docnames(book_dir() / "_toc.yml")
        if not (built_html / f"{name}.html").is_file()
    ]
    assert not missing, f"in _toc.yml but not in {built_html} (stale build? rebuild): {missing}"


def _bibliography() -> dict[str, str]:
    """BibTeX key -> the entry's title as plain, normalised text."""
    config = yaml.safe_load((book_dir() / "_config.yml").read_text(encoding="utf-8"))
    titles = {}
    for bib in config.get("bibtex_bibfiles") or []:
        for key, entry in parse_file(str(book_dir() / bib)).entries.items():
            title = Text.from_latex(entry.fields.get("title", "")).render_as("text")
            titles[key] = normalise_text(title)
    return titles


def test_every_citation_resolves_to_a_bibliography_entry(built_html: Path) -> None:
    titles = _bibliography()
    entries: dict[Path, set[str]] = {}  # bibliography page -> ids of its entries
    for page in built_html.rglob("*.html"):
        if "_static" in page.relative_to(built_html).parts:
            continue
        soup = BeautifulSoup(page.read_bytes(), "html.parser")
        found = {tag["id"] for tag in soup.select("[role=doc-biblioentry][id]")}
        if found:
            entries[page.resolve()] = found

    problems, citations = [], 0
    for docname in toc_docnames(book_dir() / "_toc.yml"):
        page = built_html / f"{docname}.html"
        source = source_file(book_dir(), docname)
        if not page.is_file() or source is None:
            continue  # reported by test_every_toc_page_was_built
        soup = BeautifulSoup(page.read_bytes(), "html.parser")
        article = soup.select_one("article") or soup
        prose = " ".join(t for t in article.find_all(string=True) if t.find_parent("pre") is None)
        if "??" in prose:
            problems.append(f"{docname}: '??' (an unresolved reference) in the text")
        links = article.select(".bibtex-citation a[href]")
        for link in links:
            citations += 1
            target = urlsplit(urljoin(f"/{docname}.html", link["href"]))
            target_page = (built_html / unquote(target.path).lstrip("/")).resolve()
            if unquote(target.fragment) not in entries.get(target_page, set()):
                problems.append(
                    f"{docname}: citation {link.get_text()!r} -> {link['href']} is "
                    "not an entry of a bibliography page"
                )
        rendered = [normalise_text(link.get("title", "")) for link in links]
        for key in cite_keys(source.read_text(encoding="utf-8")):
            if key not in titles:
                problems.append(f"{docname}: cites {key!r}, which no bibtex_bibfiles entry has")
            elif not any(titles[key] and titles[key] in title for title in rendered):
                problems.append(f"{docname}: the citation of {key!r} is missing from the page")
    print(
        f"\ncitations: {citations} citation links, {sum(map(len, entries.values()))} "
        f"bibliography entries on {len(entries)} page(s)"
    )
    assert not problems, "\n  ".join(problems)
