"""Sans-I/O WHOIS query validation (RFC 3912): one line in, a lookup key or an error out.

RFC 3912 leaves the query's syntax to the server. This server's rule: at most
:data:`MAX_QUERY_BYTES` bytes of UTF-8 text without control characters;
surrounding spaces are ignored and keys compare case-insensitively
(``str.casefold``), so ``Example.COM`` finds the record ``example.com``.
"""

from __future__ import annotations

__all__ = ["MAX_QUERY_BYTES", "QueryError", "lookup_key", "normalise_query"]

#: The longest query accepted, in bytes, line end excluded.
MAX_QUERY_BYTES = 256

# C0 controls (a tab included) and DEL, each mapped to NUL (itself one of them);
# every other byte to itself.
_CONTROL_TO_NUL = bytes(0 if byte < 0x20 or byte == 0x7F else byte for byte in range(256))


class QueryError(ValueError):
    """The query is not acceptable; ``str(exc)`` is the reason, for the answer."""


def normalise_query(line: bytes) -> str:
    """The query as text, stripped of surrounding spaces; raises :class:`QueryError`."""
    if len(line) > MAX_QUERY_BYTES:
        raise QueryError(f"query longer than {MAX_QUERY_BYTES} bytes")
    # Two C passes, with no table built per call (a delete set would make one):
    # control bytes become NULs (a line without any comes back as it is).
    if 0 in line.translate(_CONTROL_TO_NUL):
        raise QueryError("query contains control characters")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise QueryError("query is not valid UTF-8") from None
    # C1 controls (U+0080..U+009F) are control characters too.
    if not text.isascii() and any("\x80" <= char <= "\x9f" for char in text):
        raise QueryError("query contains control characters")
    text = text.strip(" ")
    if not text:
        raise QueryError("empty query")
    return text


def lookup_key(name: str) -> str:
    """The case-insensitive form records are stored and looked up under."""
    return name.casefold()
