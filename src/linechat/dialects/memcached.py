"""memcached text protocol reply rules (memcached's doc/protocol.txt).

Storage commands (set, add, replace, append, prepend, cas, and meta ``ms``)
take the next input line(s) as their data block: with a length of ``-`` the
next input line is the whole block and its length is filled in; with a
number, input lines are sent until that many bytes (each line with its CRLF
counting). ``noreply`` commands and ``quit`` expect no reply. ``get``-like
commands end at ``END``, their ``VALUE`` blocks read as counted bytes;
``stats`` ends at ``END`` (or ``RESET``/``OK``); meta ``mg``/``ma`` replies
may carry a ``VA`` block. ``ERROR``, ``CLIENT_ERROR`` and ``SERVER_ERROR``
are errors.
"""

from __future__ import annotations

from .base import MAX_COUNTED, Dialect, DialectError, Done, Event

__all__ = ["Memcached"]

_STORAGE = {b"set": 4, b"add": 4, b"replace": 4, b"append": 4, b"prepend": 4, b"cas": 4, b"ms": 2}
_VALUES = frozenset((b"get", b"gets", b"gat", b"gats"))
_ERRORS = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")
_LINE, _VALUES_END, _LIST_END, _META, _NONE = range(5)


class Memcached(Dialect):
    name = "memcached"
    quit = b"quit"
    commands = (
        "set", "add", "replace", "append", "prepend", "cas", "get", "gets", "gat", "gats",
        "delete", "incr", "decr", "touch", "stats", "flush_all", "version", "verbosity",
        "quit", "mg", "ms", "md", "ma", "mn", "me", "lru_crawler", "slabs", "watch",
    )  # fmt: skip

    def start(self) -> None:
        self._kind = _LINE
        self._data_left = 0  # bytes of a data block still to take from the input
        self._fill: list[bytes] | None = None  # a command waiting for its block's length
        self._fill_at = 0
        self._after_data = _LINE
        self._need = -1  # bytes (with CRLF) of a VALUE/VA block still to read
        self._started = False

    @property
    def needs_input(self) -> bool:
        return self._data_left > 0 or self._fill is not None

    @property
    def mid_reply(self) -> bool:
        return self._started

    def submit(self, line: bytes) -> bytes:
        if self._fill is not None:
            words, self._fill = self._fill, None
            words[self._fill_at] = b"%d" % len(line)
            return self._expect_reply(b" ".join(words) + self.newline + line + self.newline)
        if self._data_left:
            self._data_left = max(0, self._data_left - len(line) - len(self.newline))
            if self._data_left:
                return line + self.newline
            return self._expect_reply(line + self.newline)
        words = line.split()
        command = words[0].lower() if words else b""
        quiet = command != b"ms" and words[-1:] == [b"noreply"]
        at = _STORAGE.get(command)
        if at is not None and len(words) > at:
            self._after_data = _NONE if quiet else _META if command == b"ms" else _LINE
            if words[at] == b"-" and not self.verbatim:
                self._fill, self._fill_at = words, at
                self.waiting = False
                return b""
            if words[at].isdigit() and int(words[at]) <= MAX_COUNTED:
                self._data_left = int(words[at]) + len(self.newline)
                self.waiting = False
                return line + self.newline
        if quiet or command == b"quit":
            self._after_data = _NONE
        elif command in _VALUES:
            self._after_data = _VALUES_END
        elif command == b"stats":
            self._after_data = _LIST_END
        elif command in (b"mg", b"ma", b"ms", b"md", b"mn", b"me"):
            self._after_data = _META
        else:
            self._after_data = _LINE
        return self._expect_reply(line + self.newline)

    def _expect_reply(self, data: bytes) -> bytes:
        self._kind = self._after_data
        self.waiting = self._kind != _NONE
        return data

    def feed(self, data: bytes) -> list[Event]:
        reader = self._reader
        reader.feed(data)
        events: list[Event] = []
        while True:
            if self._need >= 0:
                block = reader.exactly(self._need)
                if block is None:
                    return events
                self._need = -1
                if block[-2:] != b"\r\n":
                    raise DialectError("a data block not ended by CRLF")
                events.extend(block[:-2].split(b"\r\n"))
                if self._kind == _META:
                    self._end(events, error=False)
                continue
            line = reader.line()
            if line is None:
                return events
            events.append(line)
            self._started = True
            word = line.split(b" ", 1)[0]
            if word in _ERRORS:
                self._end(events, error=True)
            elif self._kind in (_VALUES_END, _META) and word in (b"VALUE", b"VA"):
                words = line.split()
                at = 3 if word == b"VALUE" else 1
                size = words[at] if len(words) > at else b""
                if not size.isdigit() or int(size) > MAX_COUNTED:
                    raise DialectError(f"a bad {word.decode()} line: {line[:80]!r}")
                self._need = int(size) + 2
            elif self._kind in (_VALUES_END, _LIST_END):
                if word == b"END" or (self._kind == _LIST_END and word in (b"RESET", b"OK")):
                    self._end(events, error=False)
            else:
                self._end(events, error=False)

    def _end(self, events: list[Event], error: bool) -> None:
        self._started = False
        self.waiting = False
        self._kind = _LINE
        events.append(Done(error=error))
