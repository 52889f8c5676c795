"""Serve MathJax from the built book itself, so math renders with no network.

Sphinx loads MathJax from a CDN by default. The PyPI package ``django-static-mathjax`` ships
MathJax 3 as plain static files (it does not need Django); this extension copies its ``es5``
bundle into ``_static/mathjax`` and points ``mathjax_path`` at it. Written by hand because no
Sphinx extension on PyPI bundles MathJax 3.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

BUNDLE = "tex-chtml.js"


def _es5_dir() -> Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            "offline_mathjax: the 'django-static-mathjax' package is not installed"
        )
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (es5 / BUNDLE).is_file():
        raise ExtensionError(f"offline_mathjax: {es5 / BUNDLE} not found")
    return es5


def _configure(app: Sphinx, config: Config) -> None:
    _es5_dir()  # fail early, before a long build, if the bundle is missing
    config.mathjax_path = f"mathjax/{BUNDLE}"  # relative paths are served from _static/


def _copy_bundle(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        shutil.copytree(_es5_dir(), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _configure, priority=900)
    app.connect("build-finished", _copy_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
