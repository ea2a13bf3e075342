"""Line ends in pipe mode, converted chunk by chunk: LF or CRLF in, the wire's or LF out.

Apart from :mod:`.ends` (which keeps :class:`.ends.Ending`, an enum) so that
the command's fast path (:mod:`linechat.cli.fastpath`) imports neither
``enum`` nor ``re``: together with what they pull in, a quarter of the
instructions ``linechat connect`` ran before its first byte.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from re import Pattern

__all__ = ["LineEnds", "ReceivedEnds"]

#: Up to this size a chunk is checked for a lone CR with two counts; above
#: it, with a compiled pattern (``re`` imported then, once). Two counts cost
#: about 1.5 times the search on bulk data, and ``re`` costs a few
#: milliseconds to import: a session of a few lines never needs it.
SMALL = 16 * 1024

_lone_cr: Pattern[bytes] | None = None


def _has_lone_cr(data: bytes) -> bool:
    """Whether a CR in ``data`` is followed by something other than LF (or ends it)."""
    if len(data) <= SMALL:
        return data.count(b"\r") != data.count(b"\r\n")
    global _lone_cr
    if _lone_cr is None:
        import re

        _lone_cr = re.compile(b"\r[^\n]")
    return data.endswith(b"\r") or _lone_cr.search(data) is not None


class _ToLF:
    """CRLF or LF line ends to LF, chunk by chunk, in C.

    A CR at the end of a chunk waits for the next one (it may start with LF).
    """

    def __init__(self) -> None:
        self._cr = False
        self._open_line = False  # bytes since the last line end

    def convert(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        if not data:
            return data
        if b"\r" in data:
            # With no lone CR, deleting every CR is turning CRLF into LF, and
            # the check plus ``translate`` take half the time of
            # ``bytes.replace`` with its two-byte pattern (24 MB: 17 ms against 33).
            if _has_lone_cr(data):
                data = data.replace(b"\r\n", b"\n")
            else:
                data = data.translate(None, b"\r")
        self._open_line = not data.endswith(b"\n")
        return data


class LineEnds(_ToLF):
    """Turn input line ends (LF or CRLF) into ``newline``.

    An unterminated last line is ended at :meth:`finish`.
    """

    def __init__(self, newline: bytes = b"\r\n") -> None:
        super().__init__()
        self.newline = newline

    def convert(self, data: bytes) -> bytes:
        data = super().convert(data)
        if data and self.newline != b"\n":
            data = data.replace(b"\n", self.newline)
        return data

    def finish(self) -> bytes:
        """What still has to be sent at the end of input (a lone last CR ends a line)."""
        if self._cr or self._open_line:
            self._cr = self._open_line = False
            return self.newline
        return b""


class ReceivedEnds(_ToLF):
    """Received bytes as output: CRLF becomes LF.

    The same result as splitting lines leniently (CRLF or LF) and printing
    each with LF, without a Python object per line. :meth:`finish` ends an
    unterminated last line.
    """

    def finish(self) -> bytes:
        tail = b"\r" if self._cr else b""
        if self._cr or self._open_line:
            tail += b"\n"
        self._cr = self._open_line = False
        return tail
