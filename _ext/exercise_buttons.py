"""Exercise pages hand out the blank notebook, never the solved one.

An exercise page of the book is rendered from its solved notebook, ``solutions/NN_topic.ipynb``,
so the theme's launch buttons (Binder, Colab) and its ``.ipynb`` download button would give a
learner the answers. This extension points them at the generated blank notebook,
``exercises/NN_topic.ipynb``, and copies that notebook into the site for the download. Chapter
pages are left as the theme makes them.

Written as an extension because sphinx-book-theme (1.x) builds the button URLs from the page's
own path and has no setting to name another file. It edits the theme's ``header_buttons`` after
the theme has filled them (``html-page-context``, priority above the theme's 501) and fails the
build when a button it must rewrite is not there, so a theme change cannot silently bring the
solved notebook back.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

#: The page folder whose notebooks are solved, and the folder of their blank twins.
SOLVED, BLANK = "solutions", "exercises"
#: Where the blank notebooks are copied in the built site (beside the theme's page sources).
DOWNLOAD_DIR = "_sources"


def blank_notebook(srcdir: Path, pagename: str) -> str | None:
    """``exercises/NN_topic.ipynb`` for the page ``solutions/NN_topic``, if that file exists."""
    folder, _, name = pagename.partition("/")
    if folder != SOLVED or not name or "/" in name:
        return None
    relative = f"{BLANK}/{name}.ipynb"
    return relative if (srcdir / relative).is_file() else None


def _buttons(context: dict[str, Any], label: str) -> list[dict[str, Any]]:
    for group in context.get("header_buttons", []):
        if group.get("label") == label:
            return group.get("buttons", [])
    return []


def point_at_blank(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Rewrite an exercise page's launch and notebook-download URLs to the blank notebook."""
    blank = blank_notebook(Path(app.srcdir), pagename)
    if blank is None:
        return
    book_path = app.config.html_theme_options.get("path_to_docs", "").strip("/")
    prefix = f"{book_path}/" if book_path else ""
    solved_in_repo, blank_in_repo = f"{prefix}{pagename}.ipynb", f"{prefix}{blank}"

    launch = [b for b in _buttons(context, "launch-buttons") if b.get("type") == "link"]
    if app.config.html_theme_options.get("launch_buttons") and not launch:
        raise ExtensionError(f"exercise_buttons: {pagename} has no launch buttons to rewrite")
    for button in launch:
        if solved_in_repo not in button["url"]:
            raise ExtensionError(
                f"exercise_buttons: the {button.get('text')} button of {pagename} does not name "
                f"{solved_in_repo} ({button['url']}); the theme changed, update this extension"
            )
        button["url"] = button["url"].replace(solved_in_repo, blank_in_repo)

    pathto = context["pathto"]
    download = pathto(DOWNLOAD_DIR, 1) + "/" + blank
    rewritten = 0
    for button in _buttons(context, "download-buttons"):
        if button.get("type") == "link" and button.get("url", "").endswith(f"/{pagename}.ipynb"):
            button["url"] = download
            button["tooltip"] = "Download the exercise notebook"
            rewritten += 1
    if not rewritten:
        raise ExtensionError(f"exercise_buttons: {pagename} has no .ipynb download button")


def copy_blank_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """Put every exercise page's blank notebook where its download button points."""
    if exception is not None or app.builder.format != "html":
        return
    srcdir = Path(app.srcdir)
    for docname in sorted(app.env.found_docs):
        blank = blank_notebook(srcdir, docname)
        if blank is not None:
            target = Path(app.outdir) / DOWNLOAD_DIR / blank
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(srcdir / blank, target)


def setup(app: Sphinx) -> dict[str, Any]:
    # After sphinx-book-theme's add_launch_buttons and add_header_buttons (priority 501).
    app.connect("html-page-context", point_at_blank, priority=600)
    app.connect("build-finished", copy_blank_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
