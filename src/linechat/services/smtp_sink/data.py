"""The text of ``DATA``: lines in, message bytes out. Sans-I/O.

The reader takes the lines a strict CRLF framer split (so a line never holds a
CRLF, but may hold a bare CR or LF) and returns the message bytes they carry,
dot-unstuffed (RFC 5321 4.5.2), each line ended by CRLF again. The end of the
text is a line holding only ``.``: the byte sequence CRLF ``.`` CRLF and
nothing else.

**Bare CR and LF are refused, not normalised.** Another server may end a line
(or the message) at a bare LF where this one does not; a message carrying
``<LF>.<CR><LF>`` or ``<CR>.<CR>`` can then hide a second message from the
first server's checks: SMTP smuggling. A message holding a bare CR or LF
anywhere is read to its true end (CRLF.CRLF), stored nowhere, and answered
``554 5.6.0``. RFC 5321 2.3.8 forbids them; every mail library sends CRLF.
Rejecting keeps what is stored byte for byte what was sent, and makes the
sending application's bug visible instead of silently rewriting its mail.

Whole batches are handled with C-level list and bytes operations (one
``join``, two ``count``), not per line: this is the hot path of a mail sink.
The size limit is checked as text arrives: past it, nothing more is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BARE_LINE_END", "LINE_TOO_LONG", "DataReader", "too_big"]

END = b"."
CRLF = b"\r\n"

#: Replies to the final dot of a refused message.
BARE_LINE_END = (
    b"554 5.6.0 Message refused: bare CR or LF in its text; "
    b"lines must end with CRLF (RFC 5321 2.3.8)"
)
LINE_TOO_LONG = b"554 5.6.0 Message refused: a line of its text is too long"


def too_big(limit: int) -> bytes:
    """The reply to a message over the size limit (RFC 1870)."""
    return b"552 5.3.4 Message size exceeds fixed limit of %d bytes" % limit


class DataReader:
    """One message's text: :meth:`feed` lines until :attr:`done`.

    ``max_size`` bounds the message (dot-unstuffed, CRLFs included: RFC 1870's
    measure). Once it is passed, or a bare CR or LF is seen, :attr:`refusal`
    holds the reply for the final dot and :meth:`feed` returns nothing more;
    the caller drops what it stored.
    """

    __slots__ = ("done", "max_size", "refusal", "size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0
        self.done = False
        #: The error reply for the final dot, once the message is refused.
        self.refusal: bytes | None = None

    def feed(self, lines: Sequence[bytes], start: int = 0) -> tuple[bytes, int]:
        """Take ``lines[start:]`` up to the end line.

        Returns the message bytes they add (empty once refused) and the index
        of the first line after the end line, or ``len(lines)`` when the end is
        still to come.
        """
        if self.done:
            raise ValueError("the message text has ended")
        try:
            end = lines.index(END, start)
        except ValueError:
            end = len(lines)
            stop = end
        else:
            self.done = True
            stop = end + 1
        if end == start or self.refusal is not None:
            return b"", stop
        chunk = list(lines[start:end])
        count = len(chunk)
        chunk.append(b"")  # so the join ends with a CRLF
        text = CRLF.join(chunk)
        # Each CRLF the join put in adds one CR and one LF: any other is bare.
        if text.count(b"\n") != count or text.count(b"\r") != count:
            self.refuse(BARE_LINE_END)
            return b"", stop
        if text[:1] == b"." or b"\n." in text:
            text = (CRLF + text).replace(b"\r\n.", CRLF)[2:]
        self.size += len(text)
        if self.size > self.max_size:
            self.refuse(too_big(self.max_size))
            return b"", stop
        return text, stop

    def line_too_long(self) -> None:
        """The framer met a line over its limit (and skips it): refuse the message."""
        self.refuse(LINE_TOO_LONG)

    def refuse(self, reply: bytes) -> None:
        """Refuse the message with ``reply`` (the first reason given stands)."""
        if self.refusal is None:
            self.refusal = reply
