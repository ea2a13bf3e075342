"""How a pipe-mode session ends, and its line-end conversions (no asyncio here).

Kept apart from :mod:`.pipe` so the asyncio-free pipe mode (:mod:`.plain`)
can use them without importing asyncio. The conversions live in
:mod:`.newlines` (no ``enum``, no ``re``: the command's fast path imports
them alone) and are named here too.
"""

from __future__ import annotations

import enum

from .newlines import LineEnds, ReceivedEnds

__all__ = ["Ending", "LineEnds", "ReceivedEnds"]


class Ending(enum.Enum):
    """How a session ended (a connection failure is ``ConnectError`` instead)."""

    SERVER_CLOSED = "the server closed the connection"
    WAIT_EXPIRED = "the server sent nothing for the --wait time after the end of input"
    OUTPUT_CLOSED = "stdout was closed"
    INTERRUPTED = "interrupted"
