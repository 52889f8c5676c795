"""``check("<item id>", globals())``: the public check a learner runs in the notebook.

It runs the item's public cases in the learner's own kernel, through the same request, encoding
and comparison as the grader, and shows one line: PASS, FAIL (with the first difference and the
item's hint), NOT ATTEMPTED or WRITTEN ANSWER. It never shows a traceback and returns ``None``.
Passing it is necessary, not sufficient: the grader runs hidden cases drawn at grading time.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import probe, wire
from .item import AutoItem, Item

#: True inside the grader's sandbox, where the notebook's check cells do nothing.
GRADING = False

_STYLE = {
    "PASS": ("\u2705", "#1b5e20", "#e8f5e9"),
    "FAIL": ("\u274c", "#b71c1c", "#ffebee"),
    "NOT ATTEMPTED": ("\u270f\ufe0f", "#5d4037", "#fff8e1"),
    "WRITTEN ANSWER": ("\U0001f4dd", "#0d47a1", "#e3f2fd"),
    "UNKNOWN": ("\u2753", "#4a148c", "#f3e5f5"),
}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a public check: ``status`` (a key of the styles above) and ``message``."""

    status: str
    message: str

    def text(self) -> str:
        """Plain-text line (what nbval compares)."""
        return f"{_STYLE[self.status][0]} {self.status}: {self.message}"

    def html(self) -> str:
        """The same line, styled."""
        icon, colour, background = _STYLE[self.status]
        box = f"border-left:4px solid {colour};background:{background};padding:0.4em 0.8em;"
        label = f'<strong style="color:{colour}">{self.status}</strong>'
        return f'<div style="{box}">{icon} {label}: {html.escape(self.message)}</div>'


def run_public_checks(item: Item, namespace: Mapping[str, Any]) -> CheckResult:
    """Run ``item``'s public cases against ``namespace``; the result ``check`` shows."""
    if not isinstance(item, AutoItem):
        return CheckResult(
            "WRITTEN ANSWER", f"{item.id} is graded by hand ({item.points:g} points)."
        )
    cases = item.public_cases()
    for index, case in enumerate(cases, start=1):
        reply = probe.handle(namespace, item.request(case))
        status = reply["status"]
        if status in ("missing", "not_implemented"):
            return CheckResult(
                "NOT ATTEMPTED",
                f"`{item.name}` is not defined yet or still raises NotImplementedError: "
                "write your solution in the cell above and run it.",
            )
        if status == "error":
            return CheckResult(
                "FAIL",
                f"{item.describe(case)} raised {reply['type']}: {reply['message']}. "
                f"Hint: {item.hint}".rstrip(),
            )
        try:
            output = wire.decode(reply["output"])
            ok, detail = item.compare(output, item.reference(case))
        except wire.WireError as error:
            ok, detail = False, f"the result cannot be checked: {error}"
        if not ok:
            return CheckResult(
                "FAIL",
                f"check {index} of {len(cases)}, {item.describe(case)}: {detail}. "
                f"Hint: {item.hint}".rstrip(),
            )
    return CheckResult(
        "PASS",
        f"`{item.name}` passed {len(cases)} public check{'s' * (len(cases) != 1)}. "
        "Grading also runs hidden checks on new inputs.",
    )


def check(item_id: str, namespace: Mapping[str, Any]) -> None:
    """Run the public checks of exercise ``item_id`` on what the notebook defined.

    Args:
        item_id: the exercise's id, as printed in the notebook.
        namespace: the notebook's globals: pass ``globals()``.

    Returns:
        ``None``: the result is displayed (HTML with a plain-text fallback).

    Example:
        >>> def leaky_relu(x, negative_slope=0.01):
        ...     return torch.where(x > 0, x, negative_slope * x)
        >>> check("ex.leaky_relu", globals())  # doctest: +SKIP
        ✅ PASS: `leaky_relu` passed 3 public checks. Grading also runs hidden checks on new inputs.
    """
    if GRADING:
        return None
    from .items import find_item

    if not isinstance(namespace, Mapping):
        raise TypeError(
            f"namespace must be the notebook's globals() (a dict), got {type(namespace).__name__}"
        )
    try:
        item = find_item(item_id)
    except (KeyError, TypeError):
        result = CheckResult(
            "UNKNOWN", f"there is no exercise {item_id!r}: keep the check cell as it was given."
        )
    else:
        result = run_public_checks(item, namespace)
    _display(result)
    return None


def _display(result: CheckResult) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with every Jupyter install
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display({"text/plain": result.text(), "text/html": result.html()}, raw=True)
    else:
        print(result.text())
