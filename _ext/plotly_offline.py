"""Serve plotly.js from the built book itself, on the pages that draw a Plotly figure.

A notebook output made by :class:`rectifiers.explorer.SlopeExplorer` is a ``<div>`` and a
script calling ``Plotly.newPlot``; it embeds no library. This extension copies the
``plotly.min.js`` that ships inside the installed ``plotly`` package (the version pinned in the
lock, so the Python and JavaScript sides match) to ``_static/plotly.min.js`` and loads it, with a
plain ``<script>`` in the page head, on the pages that need it. Nothing is fetched from a CDN.
Written by hand because Jupyter Book 1 has no setting for a Plotly bundle outside its own
require.js mechanism.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

FILENAME = "plotly.min.js"


def _bundle() -> Path:
    try:
        import plotly
    except ImportError:
        raise ExtensionError("plotly_offline: the 'plotly' package is not installed") from None
    bundle = Path(plotly.__file__).parent / "package_data" / FILENAME
    if not bundle.is_file():
        raise ExtensionError(f"plotly_offline: {bundle} not found")
    return bundle


def _on_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if "Plotly.newPlot" in context.get("body", ""):
        # Added during html-page-context, the script goes into this page only.
        app.add_js_file(FILENAME, priority=200)


def _copy_bundle(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        shutil.copyfile(_bundle(), Path(app.outdir) / "_static" / FILENAME)


def setup(app: Sphinx) -> dict:
    _bundle()  # fail early, before a long build, if plotly is missing
    app.connect("html-page-context", _on_page)
    app.connect("build-finished", _copy_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
