"""``line``: no reply rules at all (the default; what ``linechat connect`` always did).

Every line is sent at once and every line received is shown; nothing waits.
Pipe mode runs its bulk path instead of this class; it is here so that every
dialect name has a module, and for the terminal's (empty) completion.
"""

from __future__ import annotations

from .base import Dialect, Event

__all__ = ["Line"]


class Line(Dialect):
    name = "line"

    def submit(self, line: bytes) -> bytes:
        return line + self.newline

    def feed(self, data: bytes) -> list[Event]:
        self._reader.feed(data)
        events: list[Event] = []
        while (line := self._reader.line()) is not None:
            events.append(line)
        return events
