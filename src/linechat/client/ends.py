"""Line ends in pipe mode, and how a pipe-mode session ends (no asyncio here).

Kept apart from :mod:`.pipe` so the asyncio-free pipe mode (:mod:`.plain`)
can use them without importing asyncio.
"""

from __future__ import annotations

import enum
import re

__all__ = ["Ending", "LineEnds", "ReceivedEnds"]

#: A CR followed by something other than LF. When a chunk has none (and does
#: not end in CR), deleting every CR is the same as turning CRLF into LF, and
#: the search plus ``translate`` take half the time of ``bytes.replace`` with
#: its two-byte pattern (24 MB: 17 ms against 33 ms).
_LONE_CR = re.compile(b"\r[^\n]")


class Ending(enum.Enum):
    """How a session ended (a connection failure is ``ConnectError`` instead)."""

    SERVER_CLOSED = "the server closed the connection"
    WAIT_EXPIRED = "the server sent nothing for the --wait time after the end of input"
    OUTPUT_CLOSED = "stdout was closed"
    INTERRUPTED = "interrupted"


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
            if _LONE_CR.search(data) is None and not data.endswith(b"\r"):
                data = data.translate(None, b"\r")
            else:
                data = data.replace(b"\r\n", b"\n")
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
