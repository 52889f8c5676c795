"""Untrusted text made safe for the instructor's terminal, logs and grade book.

A submission controls what it prints and much of what ends up in a row's detail. Terminal
control sequences in it (ESC ``\\x1b[...``, the 8-bit CSI ``\\x9b``, OSC title and clipboard
sequences, bidirectional overrides) could rewrite what the instructor sees when a log is
``cat``-ed or a detail printed. Everything here keeps the text readable and makes every such
character visible and inert.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, C1 controls (as characters), and Unicode format
# characters that reorder or hide text (bidi embeddings, overrides and isolates).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_line(text: object, limit: int = 300) -> str:
    """One line of untrusted text: printable characters only, whitespace collapsed, bounded."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def neutralise(data: bytes) -> bytes:
    """Output bytes with every control character but tab and newline shown as ``\\xNN``.

    Example:
        >>> neutralise(b"ok\\x1b[2J\\n")
        b'ok\\\\x1b[2J\\n'
    """
    text = data.decode("utf-8", errors="replace")
    shown = _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )
    return shown.encode("utf-8")
