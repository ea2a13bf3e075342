"""SMTP (RFC 5321) reply rules.

A reply is one or more lines ``NNN-text`` ended by a line ``NNN text`` (or a
bare ``NNN``); 4xx and 5xx are errors. The server greets first. After a 354
(the go-ahead for DATA) the input lines are the message body, sent without
waiting, dot-stuffed (a line starting with ``.`` gets one more), until an
input line holding only ``.`` ends it and waits for the reply.
"""

from __future__ import annotations

from .base import Dialect, DialectError, Done, Event

__all__ = ["Smtp"]


class Smtp(Dialect):
    name = "smtp"
    greeting = True
    quit = b"QUIT"
    commands = (
        "HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "VRFY", "EXPN",
        "HELP", "NOOP", "QUIT", "STARTTLS", "AUTH", "BDAT",
    )  # fmt: skip

    def start(self) -> None:
        self._body = False
        self._partial = False

    @property
    def needs_input(self) -> bool:
        return self._body

    @property
    def mid_reply(self) -> bool:
        return self._partial

    def submit(self, line: bytes) -> bytes:
        if self._body:
            if line == b".":
                self._body = False
                self.waiting = True
            elif line.startswith(b".") and not self.verbatim:
                line = b"." + line
            return line + self.newline
        self.waiting = True
        return line + self.newline

    def feed(self, data: bytes) -> list[Event]:
        self._reader.feed(data)
        events: list[Event] = []
        while (line := self._reader.line()) is not None:
            code = line[:3]
            if not (code.isdigit() and len(code) == 3 and line[3:4] in (b"", b" ", b"-")):
                raise DialectError(f"not an SMTP reply line: {line[:80]!r}")
            events.append(line)
            if line[3:4] == b"-":
                self._partial = True
                continue
            self._partial = False
            self.waiting = False
            if code == b"354":
                self._body = True
                events.append(Done(more=True))
            else:
                events.append(Done(error=code[:1] in (b"4", b"5")))
        return events
