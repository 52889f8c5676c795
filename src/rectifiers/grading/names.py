"""Student folder names as the grade book shows them: exactly, unambiguously, never merged.

A class's folders come from unzip, an LMS download or a student's own machine, so a name can be
invalid UTF-8 (Python decodes those bytes as lone surrogates), carry invisible characters
(zero-width spaces, bidirectional controls), leading or trailing blanks, or two spellings of one
accented letter. Each such folder is a different student, so each must get its own, visibly
different, row. ``display_name`` writes the name with every such character escaped, and the
mapping is one-to-one, so two folders never share a row and the name can be read back
(``folder_name``).

``skipped_entries`` lists the entries of the submissions folder that are not graded, each with
its reason (dot-folders included).
"""

from __future__ import annotations

import os
import re
import unicodedata

from .engine import discover_students

_ESCAPE = re.compile(r"\\(\\|x\{([0-9a-f]{2})\}|u\{([0-9a-f]{1,6})\})")


def _plain(name: str, index: int, composed: bool) -> bool:
    """Whether ``name[index]`` may be shown as itself."""
    char = name[index]
    if char == "\\" or not char.isprintable():  # isprintable is False for Cc, Cf, Zl, Zp, Cs...
        return False
    if char == "'" and index == 0:  # a spreadsheet would read it as its text-prefix mark
        return False
    if char == " ":  # one space between two visible characters; otherwise blanks are invisible
        inner = 0 < index < len(name) - 1
        return inner and name[index - 1] != " " and name[index + 1] != " "
    if char.isspace():  # no-break and other exotic spaces look like " "
        return False
    # Two spellings of "é" (composed, or "e" + combining accent) look the same: show the marks
    # of a name that is not in the composed form (NFC).
    return composed or not unicodedata.category(char).startswith("M")


def display_name(name: str) -> str:
    r"""The folder name as text that shows every character: exact and one-to-one.

    Kept as is: printable characters, and single spaces between visible characters.
    Escaped: ``\`` as ``\\``; an undecodable byte ``B`` as ``\x{b}`` (two hex digits); any
    other character that is invisible, blank at either end, repeated or exotic whitespace, a
    combining mark in a name that is not NFC-normalised, or a leading ``'``, as ``\u{hex}``.

    Args:
        name: a folder name as ``os.scandir`` returns it (undecodable bytes as surrogates).

    Returns:
        The name to show; ``folder_name`` reverses it.

    Example:
        >>> display_name("bob\u200b"), display_name("ann "), display_name("caf\udce9")
        ('bob\\u{200b}', 'ann\\u{20}', 'caf\\x{e9}')
    """
    composed = unicodedata.normalize("NFC", name) == name
    parts = []
    for index, char in enumerate(name):
        code = ord(char)
        if char == "\\":
            parts.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape of a raw byte
            parts.append(f"\\x{{{code - 0xDC00:02x}}}")
        elif _plain(name, index, composed):
            parts.append(char)
        else:
            parts.append(f"\\u{{{code:x}}}")
    return "".join(parts)


def folder_name(shown: str) -> str:
    """The folder name that ``display_name`` showed as ``shown`` (its inverse)."""

    def unescape(match: re.Match) -> str:
        if match.group(1) == "\\":
            return "\\"
        if match.group(2) is not None:
            return chr(0xDC00 + int(match.group(2), 16))
        return chr(int(match.group(3), 16))

    return _ESCAPE.sub(unescape, shown)


def is_exact(name: str) -> bool:
    """Whether the name is shown as itself (no escape was needed)."""
    return display_name(name) == name


def skipped_entries(root: str) -> list[tuple[str, str]]:
    """``(display name, reason)`` for every entry of ``root`` that is not graded as a student.

    The graded folders are exactly ``discover_students(root)``; everything else is listed here.
    """
    graded = set(discover_students(root))
    skipped = []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name in graded:
                continue
            if entry.is_symlink():
                reason = "a symbolic link, not followed"
            elif not entry.is_dir(follow_symlinks=False):
                reason = "not a folder"
            elif entry.name.startswith("."):
                reason = "a hidden folder (its name starts with '.')"
            else:
                reason = "not graded"
            skipped.append((display_name(entry.name), reason))
    return skipped
