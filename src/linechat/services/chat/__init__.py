"""The chat service: IRC rooms for real IRC clients (``linechat serve chat``).

- :mod:`.irc`: the sans-I/O IRC message parser and formatter;
- :mod:`.rooms`: who is on and in which channel, and the fan-out;
- :mod:`.hub`: one process's chat (flush once per loop pass, send queues, pings);
- :mod:`.server`: one client's connection (registration, commands, flood control);
- :mod:`.redis_backplane`: the chat shared by several servers through Redis;
- :mod:`.service`: the options ``linechat serve chat`` takes.
"""

from __future__ import annotations

from .service import SERVICE

__all__ = ["SERVICE"]
