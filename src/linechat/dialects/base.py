"""What every dialect shares: the turn-taking interface and a bounded line reader.

A dialect knows one protocol's reply rules and nothing of sockets. The
client hands it each input line (:meth:`Dialect.submit`, which answers with
the bytes to put on the wire) and every chunk received (:meth:`Dialect.feed`,
which answers with events in order: a line to show, a line to send by itself,
the end of a reply and whether it was an error). While :attr:`Dialect.waiting`
is true the client sends nothing more: that is lockstep.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "MAX_COUNTED",
    "MAX_LINE",
    "Dialect",
    "DialectError",
    "Done",
    "Event",
    "LineReader",
    "Send",
]

#: The longest line a dialect keeps while it waits for its end (memory bound).
MAX_LINE = 16 * 1024 * 1024
#: The largest counted item (bulk string, literal, data block) accepted from a server.
MAX_COUNTED = 512 * 1024 * 1024


class DialectError(Exception):
    """The server (or the input) broke the protocol's rules; the message says how."""


# Done and Send are plain classes rather than dataclasses: importing
# dataclasses (and inspect with it) costs the asyncio-free client start-up time.


class Done:
    """A reply is complete: the client's turn again.

    ``error`` is the protocol's own failure (SMTP 4xx/5xx, ``-ERR``, ``NO``...);
    ``more`` is a go-ahead in the middle of a command (SMTP 354, IMAP ``+``),
    after which the next input lines belong to the same command.
    """

    __slots__ = ("error", "more")

    def __init__(self, error: bool = False, more: bool = False) -> None:
        self.error = error
        self.more = more

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Done):
            return NotImplemented
        return (self.error, self.more) == (other.error, other.more)

    def __hash__(self) -> int:
        return hash((Done, self.error, self.more))

    def __repr__(self) -> str:
        return f"Done(error={self.error}, more={self.more})"


class Send:
    """Bytes the dialect answers by itself (an IRC ``PONG``), ended and ready to send."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Send):
            return NotImplemented
        return self.data == other.data

    def __hash__(self) -> int:
        return hash((Send, self.data))

    def __repr__(self) -> str:
        return f"Send(data={self.data!r})"


#: What :meth:`Dialect.feed` gives, in order: ``bytes`` is one line to show.
Event = bytes | Done | Send


class LineReader:
    """Splits a byte stream into lines (CRLF or bare LF), with counted reads between.

    O(n) in the bytes fed, however they are chunked; bounded: a line longer
    than :data:`MAX_LINE` is a :class:`DialectError`.
    """

    __slots__ = ("_buffer", "_scanned", "_start")

    def __init__(self) -> None:
        self._buffer: bytes | bytearray = b""
        self._start = 0  # consumed bytes at the front, dropped at the next feed
        self._scanned = 0  # no LF before this index

    def feed(self, data: bytes) -> None:
        start = self._start
        if start >= len(self._buffer):  # all consumed (the usual case): no copy at all
            self._buffer = data
            self._start = self._scanned = 0
            return
        buffer = self._buffer
        if not isinstance(buffer, bytearray):
            buffer = self._buffer = bytearray(buffer)
        if start:
            del buffer[:start]
            self._scanned = max(0, self._scanned - start)
            self._start = 0
        buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._start

    def line(self) -> bytes | None:
        """The next whole line without its end, or None until it has come."""
        buffer, start = self._buffer, self._start
        end = buffer.find(b"\n", start if start > self._scanned else self._scanned)
        if end < 0:
            self._scanned = len(buffer)
            if len(buffer) - start > MAX_LINE:
                raise DialectError(f"a line longer than {MAX_LINE} bytes")
            return None
        self._start = self._scanned = end + 1
        if end > start and buffer[end - 1] == 13:
            end -= 1
        return bytes(buffer[start:end])

    def exactly(self, count: int) -> bytes | None:
        """``count`` bytes, or None until they have all come."""
        start = self._start
        if len(self._buffer) - start < count:
            return None
        self._start = start + count
        if self._scanned < self._start:
            self._scanned = self._start
        return bytes(self._buffer[start : start + count])


class Dialect:
    """The reply rules of one protocol, for one connection.

    Subclasses set the class attributes and implement :meth:`submit` and
    :meth:`feed`. ``newline`` ends every line sent.
    """

    name: ClassVar[str] = ""
    #: The server speaks first; the client waits for it before the first command.
    greeting: ClassVar[bool] = False
    #: The polite way to leave, sent after an error reply stops a script.
    quit: ClassVar[bytes | None] = None
    #: Command names, for completion on a terminal.
    commands: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        newline: bytes = b"\r\n",
        greeting: bool | None = None,
        verbatim: bool = False,
        unstuff: bool = False,
        raw: bool = False,
    ) -> None:
        self.newline = newline
        #: POP3: show multi-line replies dot-unstuffed. Redis: print values raw.
        self.unstuff = unstuff
        self.raw = raw
        #: Input lines are already as on the wire (a transcript replayed): no
        #: tags added, no dot-stuffing, no lengths filled in.
        self.verbatim = verbatim
        #: True while a reply is expected: send nothing more until a Done.
        self.waiting = self.greeting if greeting is None else greeting
        #: True when the reply being waited for ends only by the server's
        #: silence (an IRC command without reply numerics): the client calls
        #: :meth:`silence` after its ``--wait`` time without data.
        self.silence_ends = False
        self._reader = LineReader()
        self.start()

    def start(self) -> None:
        """Set up the dialect's own state (called by ``__init__``)."""

    def submit(self, line: bytes) -> bytes:
        """Take one input line; return the bytes to send for it (maybe none yet)."""
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Event]:
        """Take bytes from the server; return what they make, in order."""
        raise NotImplementedError

    def silence(self) -> list[Event]:
        """The server has been quiet for the wait time: end a reply that ends so."""
        self.silence_ends = False
        self.waiting = False
        return [Done()]

    @property
    def needs_input(self) -> bool:
        """True while a command is incomplete without more input lines (its data)."""
        return False

    @property
    def mid_reply(self) -> bool:
        """True when part of a reply has been received and its end has not."""
        return False


def split_first(line: bytes) -> tuple[bytes, bytes]:
    """The first word, upper-cased, and the rest after one space."""
    word, _, rest = line.strip().partition(b" ")
    return word.upper(), rest
