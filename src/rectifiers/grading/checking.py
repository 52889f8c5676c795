"""Checking one auto-graded item against a running submission: its public then hidden cases.

``check_item`` sends each case's inputs to the sandboxed child, parses its plain-data answer
strictly (``rectifiers.grading.wire``), computes the expected output here with the trusted item
and compares; it returns an ``Outcome`` whose ``detail`` is for the instructor and whose
``public`` text never shows a hidden case's inputs, expected value or what the submission
produced after it saw them. Running the notebook and the policy around it (deadlines, restarts,
rows) stay in ``rectifiers.grading.engine``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import torch

from . import wire
from ._child import Child, _Lost, _Protocol, _Timeout
from ._text import clean_line as _clean
from .item import AutoItem

_MEMORY_WORDS = (
    "memoryerror",
    "can't allocate memory",
    "cannot allocate memory",
    "out of memory",
    "bad_alloc",
)


@dataclass
class Outcome:
    """How one item (or, while it is checked, one case) went: a ``grades.csv`` status and why."""

    status: str
    detail: str = ""
    #: The student-visible text when it differs from ``detail`` (``None``: the same).
    public: str | None = None
    #: For a partial-credit item that did not pass: the fraction of its points earned.
    credit: float = 0.0


def _memory_note(text: str, memory_mb: int) -> str:
    lowered = text.lower()
    if any(word in lowered for word in _MEMORY_WORDS):
        return f" [memory limit {memory_mb} MB]"
    return ""


def check_item(
    child: Child,
    item: AutoItem,
    rng: torch.Generator,
    deadline: float,
    errors: list[dict],
    *,
    call_timeout: float,
    memory_mb: int,
) -> tuple[Outcome, bool]:
    """``(outcome, child still usable)`` for one item: all its public then hidden cases.

    An all-or-nothing item stops at its first failed case; a partial-credit item
    (``credit == "cases"``) goes on while the child is usable and earns
    ``passed / total`` of its points. ``call_timeout`` bounds each call (seconds) within
    ``deadline``; ``memory_mb`` is the cap named when a failure looks like lack of memory.
    """
    try:
        cases = [("public", i, c) for i, c in enumerate(item.public_cases(), 1)]
        cases += [("hidden", i, c) for i, c in enumerate(item.hidden_cases(rng), 1)]
        requests = [item.request(case) for _, _, case in cases]
    except Exception as error:  # noqa: BLE001 - a bug in trusted item code must not stop the class
        return _item_bug(item, error), True
    partial = getattr(item, "credit", "all") == "cases"
    hidden_total = sum(kind == "hidden" for kind, _, _ in cases)
    passed, first, alive = 0, None, True
    for (kind, number, case), request in zip(cases, requests, strict=True):
        outcome, alive, final = _check_case(
            child,
            item,
            (kind, number, hidden_total),
            case,
            request,
            deadline,
            errors,
            call_timeout=call_timeout,
            memory_mb=memory_mb,
        )
        if outcome is None:
            passed += 1
            continue
        first = first or outcome
        if final or not partial or not alive:
            break
    if first is None:
        return Outcome("passed", f"all {len(cases)} case{'s' * (len(cases) != 1)} passed"), True
    if partial and passed:
        summary = f"{passed} of {len(cases)} cases passed; first failure: "
        first.credit = passed / len(cases)
        first.public = summary + (first.detail if first.public is None else first.public)
        first.detail = summary + first.detail
    return first, alive


def _check_case(
    child: Child,
    item: AutoItem,
    where: tuple[str, int, int],
    case: Any,
    request: dict,
    deadline: float,
    errors: list[dict],
    *,
    call_timeout: float,
    memory_mb: int,
) -> tuple[Outcome | None, bool, bool]:
    """``(outcome or None when the case passed, child still usable, stop the item)``.

    For a hidden case the student-visible text (``Outcome.public``) names the case by its
    number only: never its inputs, the expected value, or text the submission produced
    after it was given them (exception messages and type names, its output).
    """
    kind, number, hidden_total = where
    label = f"{kind} case {number}: {item.describe(case)}"
    shown = f"hidden case {number} of {hidden_total}" if kind == "hidden" else None

    def fail(status: str, detail: str, public: str | None = None) -> Outcome:
        if shown is None:
            return Outcome(status, detail)
        return Outcome(status, detail, public if public is not None else shown)

    hint = f" Hint: {item.hint}" if item.hint else ""
    nonce = secrets.token_hex(8)
    call_deadline = min(deadline, time.monotonic() + call_timeout)
    try:
        child.send({"type": "probe", "nonce": nonce, "request": request})
        message = child.receive(call_deadline)
    except _Timeout:
        limit = "the notebook's time limit" if call_deadline == deadline else f"{call_timeout:g} s"
        return (
            fail(
                "timeout",
                f"{label}: no answer within {limit}",
                f"{shown}: no answer within {limit}",
            ),
            False,
            True,
        )
    except _Lost as lost:
        note = _memory_note(
            child.output.value().decode(errors="replace")[-4000:] + str(lost), memory_mb
        )
        text = f"the notebook process {lost}{note}"
        return fail("error", f"{label}: {text}", f"{shown}: {text}"), False, True
    except _Protocol as error:
        text = f"the notebook process broke the grading protocol ({error})"
        return fail("error", text, text), False, True
    reply = message.get("reply") if isinstance(message, dict) else None
    if not (
        isinstance(message, dict)
        and message.get("type") == "reply"
        and message.get("nonce") == nonce
        and isinstance(reply, dict)
    ):
        text = "the notebook process broke the grading protocol (unexpected reply)"
        return fail("error", text, text), False, True
    status = reply.get("status")
    if status == "missing":
        detail = f"not attempted: `{item.name}` is not defined"
        public = detail + (" (a cell raised an exception)" if _cell_note(errors, 0) else "")
        return (
            Outcome("failed", detail + _cell_note(errors, memory_mb), public),
            True,
            True,
        )
    if status == "not_implemented":
        text = f"not attempted: `{item.name}` raises NotImplementedError"
        return Outcome("failed", text), True, True
    if status == "error":
        kind_text = _clean(reply.get("type", "Error"), 80)
        text = f"{kind_text}: {_clean(reply.get('message', ''), 200)}"
        detail = f"{label}: raised {text}{_memory_note(text, memory_mb)}"
        return fail("error", detail, f"{shown}: raised an exception.{hint}"), True, False
    if status != "ok" or "output" not in reply:
        text = "the notebook process broke the grading protocol (bad reply status)"
        return fail("error", text, text), False, True
    try:
        output = wire.decode(reply["output"])
    except Exception as error:  # noqa: BLE001 - any value that cannot be rebuilt is an error
        detail = f"{label}: the result cannot be checked ({_clean(error, 150)})"
        return fail("error", detail, f"{shown}: the result cannot be checked"), True, False
    try:
        expected = item.reference(case)
    except Exception as error:  # noqa: BLE001 - as above
        return _item_bug(item, error), True, True
    try:
        ok, detail = item.compare(output, expected)
    except Exception as error:  # noqa: BLE001 - a compare that chokes on odd output is a fail
        ok, detail = (
            False,
            f"the output could not be compared ({type(error).__name__}: {_clean(error, 150)})",
        )
    if ok:
        return None, True, False
    return (
        fail("failed", f"{label}: {_clean(detail, 300)}.{hint}", f"{shown}: wrong output.{hint}"),
        True,
        False,
    )


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {_clean(error, 200)}"


def _item_bug(item: AutoItem, error: Exception) -> Outcome:
    """The outcome when the trusted item itself fails: an error to fix in the item, not a zero."""
    return Outcome(
        "error",
        f"grader error in item {item.id} (not the submission's fault): "
        f"{type(error).__name__}: {error}",
        # The trusted code's message may quote a hidden case: the student gets none of it.
        "the grader could not check this item (not your fault; your instructor is told)",
    )


def _cell_error(entry: dict) -> dict:
    index = entry.get("index")
    return {
        "index": index if type(index) is int else -1,
        "type": _clean(entry.get("type", ""), 80),
        "message": _clean(entry.get("message", ""), 200),
    }


def _cell_note(errors: list[dict], memory_mb: int) -> str:
    """Mention the first cell that failed for another reason than an unfinished exercise."""
    for error in errors:
        if error["type"] != "NotImplementedError":
            text = f"{error['type']}: {error['message']}"
            return f" (cell {error['index']} raised {text}{_memory_note(text, memory_mb)})"
    return ""
