"""The built book's layout, in headless Chromium: nothing clipped, nothing wider than a phone,
no bookkeeping on show, and the α explorer responds to its slider.

Every page listed under ``chapters/`` or ``solutions/`` in ``_toc.yml`` is opened at desktop
width (1280 px): no visible code block or text output may scroll sideways, and no visible code
may call ``glue(``. Then at phone width (390 px) the page's own ``scrollWidth`` may not exceed
the viewport (wide tables and display math scroll inside their own boxes, see
``_static/layout.css``). Chapter 03's α explorer is moved with the mouse, and the figure must
change. The browser set-up (server, gatekeeper, Chromium) is the one of ``test_browser.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_browser as shared
from browser_helpers import (
    LAYOUT_FACTS,
    clipped_code_problems,
    overflow_problem,
    screenshot_dir,
    visible_glue_problems,
)
from test_browser import CHAPTER_PAGES, PHONE, Session, _open, _settle

# The browser, server and gatekeeper of test_browser.py, as this module's fixtures (the built
# book, built_html, comes from conftest.py).
chromium = shared.chromium
session = shared.session

pytestmark = pytest.mark.browser

EXPLORER_PAGE = "chapters/03_negative_slope"
EXPLORER_STATE = """() => {
    const gd = document.getElementById("alpha-explorer");
    if (!gd || !gd.data || !gd.layout) return null;
    return {
        active: gd.layout.sliders[0].active,
        steps: gd.layout.sliders[0].steps.length,
        title: gd.layout.title.text,
        function: Array.from(gd.data[0].y).slice(0, 20),
        derivative: Array.from(gd.data[1].y).slice(0, 20),
        marker: Array.from(gd.data[3].y),
    };
}"""


@pytest.mark.parametrize("docname", CHAPTER_PAGES)
def test_nothing_is_clipped_or_too_wide(session: Session, built_html: Path, docname: str) -> None:
    opened = _open(session, built_html, docname)
    page = opened.page
    try:
        _settle(page)
        desktop = page.evaluate(LAYOUT_FACTS)
        problems = [f"at 1280 px: {p}" for p in clipped_code_problems(desktop["blocks"])]
        problems += visible_glue_problems(desktop["blocks"])
        wide = overflow_problem(desktop["scrollWidth"], desktop["viewport"], desktop["culprits"])
        problems += [f"at 1280 px: {wide}"] if wide else []
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(300)  # let the layout reflow
        phone = page.evaluate(LAYOUT_FACTS)
        wide = overflow_problem(phone["scrollWidth"], phone["viewport"], phone["culprits"])
        problems += [f"at 390 px: {wide}"] if wide else []
        print(
            f"\n{docname}: {len(desktop['blocks'])} visible code blocks and text outputs; "
            f"page width {desktop['scrollWidth']} px at 1280, {phone['scrollWidth']} px at 390"
        )
    finally:
        page.close()
    assert not problems, f"{docname}.html:\n  - " + "\n  - ".join(problems)


def test_the_alpha_explorer_follows_its_slider(session: Session, built_html: Path) -> None:
    if EXPLORER_PAGE not in CHAPTER_PAGES:
        pytest.fail(f"{EXPLORER_PAGE} is not in _toc.yml")
    opened = _open(session, built_html, EXPLORER_PAGE)
    page = opened.page
    try:
        page.wait_for_function(EXPLORER_STATE.replace("() => {", "() => {", 1))
        before = page.evaluate(EXPLORER_STATE)
        assert before is not None, "no α explorer (#alpha-explorer) drawn by Plotly on the page"
        rail = page.locator("#alpha-explorer .slider-rail-touch-rect").first
        rail.scroll_into_view_if_needed()
        box = rail.bounding_box()
        assert box is not None, "the explorer has no slider rail"
        # Click near the right end of the rail: the last step, the largest slope.
        page.mouse.click(box["x"] + box["width"] - 4, box["y"] + box["height"] / 2)
        page.wait_for_function(
            "(old) => document.getElementById('alpha-explorer').layout.title.text !== old",
            arg=before["title"],
        )
        after = page.evaluate(EXPLORER_STATE)
        page.locator("#alpha-explorer").screenshot(
            path=screenshot_dir() / "chapters__03_negative_slope.explorer.png"
        )
        assert after["active"] == before["steps"] - 1, (before["active"], after["active"])
        assert after["function"] != before["function"], "Leaky ReLU's curve did not change"
        assert after["derivative"] != before["derivative"], "the derivative did not change"
        assert after["marker"] != before["marker"], "the accuracy marker did not move"
        assert "α = 1:" in after["title"], after["title"]
        assert not opened.problems, opened.problems
        assert not session.blocked, f"loaded from outside the book: {session.blocked}"
    finally:
        page.close()
