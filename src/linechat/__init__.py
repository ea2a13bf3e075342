"""linechat: line protocols (SMTP, POP3, IMAP, Redis inline, IRC...) on asyncio.

The layers, from the bytes up: :class:`LineFramer` (sans-I/O framing),
:class:`LineProtocol` (asyncio callbacks, the fast path) and
:class:`LineStream` (coroutines).
"""

from .errors import ConnectionClosed, IdleTimeout, LineTooLong, ProtocolError
from .framing import LineFramer
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
    "LineTooLong",
    "ProtocolError",
    "StreamServer",
    "connect",
    "start_server",
]

__version__ = "0.1.0"
