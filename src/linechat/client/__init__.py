"""The client behind ``linechat connect``: a connection, pipe mode, terminal mode.

:mod:`.session` connects (TCP or Unix, TLS, STARTTLS) and gives a
:class:`ClientProtocol`; :mod:`.pipe` runs it against stdin/stdout in bulk;
:mod:`.plain` is pipe mode without asyncio, for a plain connection (it
starts sooner); :mod:`.terminal` (imported on demand: it needs
prompt_toolkit) runs a line editor. Like the rest of the library, none of it
prints or exits. The names below are imported on first use, so that the
asyncio-free path does not pay for the rest.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from .basics import ConnectError
    from .ends import Ending
    from .pipe import run_pipe
    from .session import ClientProtocol, ConnectOptions, client_tls_context, connect

__all__ = [
    "ClientProtocol",
    "ConnectError",
    "ConnectOptions",
    "Ending",
    "client_tls_context",
    "connect",
    "run_pipe",
]

_LAZY = {
    "ClientProtocol": "session",
    "ConnectError": "basics",
    "ConnectOptions": "session",
    "Ending": "ends",
    "client_tls_context": "session",
    "connect": "session",
    "run_pipe": "pipe",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
