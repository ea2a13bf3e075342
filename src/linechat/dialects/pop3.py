"""POP3 (RFC 1939) reply rules.

A reply starts ``+OK`` or ``-ERR`` (an error); the server greets first. After
``+OK``, CAPA, RETR, TOP, and LIST, UIDL or AUTH without an argument go on
with lines up to one holding only ``.``; with ``unstuff`` their lines are
shown as the message is (one leading ``.`` removed, the final ``.`` not
shown). A ``+`` line (a SASL challenge) is a go-ahead: the next input line is
the answer to it.
"""

from __future__ import annotations

from .base import Dialect, DialectError, Done, Event, split_first

__all__ = ["Pop3"]

_MULTI_ALWAYS = frozenset((b"CAPA", b"RETR", b"TOP"))
_MULTI_BARE = frozenset((b"LIST", b"UIDL", b"AUTH"))


class Pop3(Dialect):
    name = "pop3"
    greeting = True
    quit = b"QUIT"
    commands = (
        "USER", "PASS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET",
        "QUIT", "TOP", "UIDL", "CAPA", "STLS", "AUTH", "UTF8",
    )  # fmt: skip

    def start(self) -> None:
        self._multi = False  # the reply awaited is multi-line if it is +OK
        self._in_body = False

    @property
    def mid_reply(self) -> bool:
        return self._in_body

    def submit(self, line: bytes) -> bytes:
        word, rest = split_first(line)
        self._multi = word in _MULTI_ALWAYS or (word in _MULTI_BARE and not rest.strip())
        self.waiting = True
        return line + self.newline

    def feed(self, data: bytes) -> list[Event]:
        self._reader.feed(data)
        events: list[Event] = []
        while (line := self._reader.line()) is not None:
            if self._in_body:
                if line == b".":
                    self._in_body = False
                    self.waiting = False
                    if not self.unstuff:
                        events.append(line)
                    events.append(Done())
                else:
                    events.append(line[1:] if self.unstuff and line[:1] == b"." else line)
                continue
            events.append(line)
            if line.startswith(b"+OK"):
                if self._multi:
                    self._multi = False
                    self._in_body = True
                    continue
                events.append(Done())
            elif line.startswith(b"-ERR"):
                events.append(Done(error=True))
            elif line[:1] == b"+":
                events.append(Done(more=True))
            else:
                raise DialectError(f"not a POP3 reply line: {line[:80]!r}")
            self._multi = False
            self.waiting = False
        return events
