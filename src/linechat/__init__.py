"""linechat: line protocols (SMTP, POP3, IMAP, Redis inline, IRC...) on asyncio.

The layers, from the bytes up: :class:`LineFramer` (sans-I/O framing),
:class:`LineProtocol` (asyncio callbacks, the fast path) and
:class:`LineStream` (coroutines).

The asyncio layers and the service API are imported on first use, so a tool
that needs only the framer (or the client, whose start-up time counts) does
not pay for them.
``dir(linechat)``, ``help(linechat)`` and completion list them all the same.
"""

from __future__ import annotations

import importlib
import importlib.machinery

from . import framing as _framing
from .errors import (
    ConfigError,
    ConnectionClosed,
    IdleTimeout,
    LineTimeout,
    LineTooLong,
    ProtocolError,
    ServiceError,
)
from .framing import LineFramer

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time

if TYPE_CHECKING:
    from typing import Any

    from .protocol import LineProtocol
    from .server import LineServer, run, serve
    from .service import Option, ServeContext, Service, service_defaults
    from .stream import LineStream, StreamServer, connect, start_server

__all__ = [
    "COMPILED",
    "ConfigError",
    "ConnectionClosed",
    "IdleTimeout",
    "LineFramer",
    "LineProtocol",
    "LineServer",
    "LineStream",
    "LineTimeout",
    "LineTooLong",
    "Option",
    "ProtocolError",
    "ServeContext",
    "Service",
    "ServiceError",
    "StreamServer",
    "connect",
    "run",
    "serve",
    "service_defaults",
    "start_server",
]

#: The one place the version is kept (pyproject.toml reads it from here).
__version__ = "0.1.0"

#: True when the hot modules (framing, protocol layer, idle timer) are the
#: ones compiled by mypyc (the optional compiled build), False for pure Python.
#: They are built and installed together: the framer says for all of them.
COMPILED: bool = (_framing.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))

_LAZY = {
    "LineProtocol": "protocol",
    "LineServer": "server",
    "LineStream": "stream",
    "Option": "service",
    "ServeContext": "service",
    "Service": "service",
    "service_defaults": "service",
    "StreamServer": "stream",
    "connect": "stream",
    "start_server": "stream",
    "run": "server",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'linechat' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, the lazily imported ones included (for dir, help, completion)."""
    return sorted({*globals(), *__all__})
