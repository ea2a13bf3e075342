"""linechat: line protocols (SMTP, POP3, IMAP, Redis inline, IRC...) on asyncio.

The layers, from the bytes up: :class:`LineFramer` (sans-I/O framing),
:class:`LineProtocol` (asyncio callbacks, the fast path) and
:class:`LineStream` (coroutines).

The asyncio layers are imported on first use, so a tool that needs only the
framer (or the client, whose start-up time counts) does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ConnectionClosed,
    IdleTimeout,
    LineTimeout,
    LineTooLong,
    ProtocolError,
    ServiceError,
)
from .framing import LineFramer
from .service import Option, ServeContext, Service, service_defaults

if TYPE_CHECKING:
    from .protocol import LineProtocol
    from .server import LineServer
    from .stream import LineStream, StreamServer, connect, start_server

__all__ = [
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
    "service_defaults",
    "start_server",
]

__version__ = "0.1.0"

_LAZY = {
    "LineProtocol": "protocol",
    "LineServer": "server",
    "LineStream": "stream",
    "StreamServer": "stream",
    "connect": "stream",
    "start_server": "stream",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'linechat' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
