"""Showing what a server sent, safely: control characters and bad UTF-8 made visible.

A line from the network is never written raw to a terminal: an escape
sequence in it could move the cursor, retitle the window or worse. Text is
split into plain runs and escapes, so a caller can style the escapes.
"""

from __future__ import annotations

import os
import re

__all__ = ["escape_line", "escape_text", "use_colour"]

# C0 controls but TAB, DEL, C1 controls, bidi overrides/isolates, and the
# surrogates that ``surrogateescape`` makes of bytes that are not UTF-8.
_UNSAFE = re.compile("([\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]+)")
_NAMED = {"\r": "\\r", "\n": "\\n", "\x1b": "\\e"}


def _escape_char(char: str) -> str:
    code = ord(char)
    named = _NAMED.get(char)
    if named is not None:
        return named
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not valid UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape_line(line: bytes) -> list[tuple[bool, str]]:
    """``line`` as (is_escape, text) runs, safe to write to a terminal."""
    text = line.decode("utf-8", "surrogateescape")
    if text.isprintable():
        return [(False, text)]
    runs: list[tuple[bool, str]] = []
    for index, part in enumerate(_UNSAFE.split(text)):
        if not part:
            continue
        if index % 2:
            runs.append((True, "".join(map(_escape_char, part))))
        else:
            runs.append((False, part))
    return runs


def escape_text(line: bytes) -> str:
    """``line`` as one safe string (escapes inline)."""
    return "".join(text for _, text in escape_line(line))


def use_colour(stream_is_tty: bool) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set, nor on a dumb terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM", "") == "dumb":
        return False
    return stream_is_tty
