"""One timer for the idle timeouts of many connections.

A timer per connection costs about 180 bytes (its handle, a bound method, a
heap slot) for as long as the connection lives. Connections with the same
idle timeout share an :class:`IdleWatch` instead: every ``timeout / 4`` it
asks each of them whether input came since the last look. A silent peer is
found between 1 and 1.25 timeouts after its last byte, as with a timer of
its own; a connection costs a dict entry, or nothing when a server's own
table of connections is what the watch looks through.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any, Protocol

__all__ = ["IdleWatch", "Watched", "watch"]

log = logging.getLogger("linechat.protocol")

# The watch's callback is ours: one shared context, not a copy per timer.
_CONTEXT = contextvars.Context()


class Watched(Protocol):
    idle_watch: IdleWatch | None

    def look_idle(self, now: float) -> None:
        """Called every step with the loop's time: close if silent too long."""


class IdleWatch:
    """Connections of one loop looked at every ``step`` s.

    Its own table (connections added and discarded one by one), or
    ``shared``: a table kept by someone else (a server's connections), which
    add() and discard() leave alone.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        step: float,
        shared: dict[Any, None] | None = None,
    ) -> None:
        self.loop = loop
        self.step = step
        self.shared = shared is not None
        #: An ordered set (a dict: about half a set's memory).
        self.watched: dict[Any, None] = {} if shared is None else shared
        self._handle: asyncio.TimerHandle | None = None

    def add(self, connection: Watched) -> None:
        if not self.shared:
            self.watched[connection] = None
        if self._handle is None:
            self._handle = self.loop.call_later(self.step, self._look, context=_CONTEXT)

    def discard(self, connection: Watched) -> None:
        if not self.shared:
            self.watched.pop(connection, None)

    def _look(self) -> None:
        self._handle = None
        now = self.loop.time()
        for connection in list(self.watched):
            if connection.idle_watch is self:
                try:
                    connection.look_idle(now)
                except Exception:  # one connection's failure must not stop the others' timers
                    log.exception("idle timer failed for %r", connection)
        if self.watched:
            self._handle = self.loop.call_later(self.step, self._look, context=_CONTEXT)
        elif _watches.get((self.loop, self.step)) is self:
            del _watches[self.loop, self.step]


_watches: dict[tuple[asyncio.AbstractEventLoop, float], IdleWatch] = {}


def watch(connection: Watched, step: float) -> IdleWatch:
    """Look at ``connection`` every ``step`` s; discard it from the watch returned when done."""
    loop = asyncio.get_running_loop()
    idle_watch = _watches.get((loop, step))
    if idle_watch is None:
        idle_watch = _watches[loop, step] = IdleWatch(loop, step)
    idle_watch.add(connection)
    return idle_watch
