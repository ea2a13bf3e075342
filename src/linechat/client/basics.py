"""What the client shares without asyncio: defaults, ConnectError, error wording.

Imported by the asyncio-free pipe mode (:mod:`.plain`) as well as by
:mod:`.session`, so it stays light: no asyncio, no ssl.
"""

from __future__ import annotations

import _socket  # socket's C half: socket.py's enums cost ~4 ms of start-up
import os
import sys

from ..errors import ConnectionClosed, ProtocolError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "STARTTLS_PROTOCOLS",
    "ConnectError",
    "describe_error",
    "format_address",
]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8007
STARTTLS_PROTOCOLS = ("smtp", "imap", "pop3", "plain")


class ConnectError(Exception):
    """The connection could not be made, or failed (refused, reset, TLS)."""


def format_address(host: str, port: int, unix: str | None = None) -> str:
    """The server's address as messages show it: ``host:port``, ``[v6]:port`` or the path."""
    if unix:
        return unix
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_error(exc: BaseException) -> str:
    """One line for people about a failed connection."""
    if "ssl" in sys.modules:  # else the error cannot be a TLS one (and ssl is slow to import)
        import ssl

        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
        if isinstance(exc, ssl.SSLError):
            return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, _socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionClosed | ProtocolError | ConnectError):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.errno:
            # asyncio's own loop words a refused connection "Connect call failed
            # ('127.0.0.1', 1)" (uvloop: "Connection refused"): the errno says it plainly.
            return os.strerror(exc.errno).lower()
        if exc.strerror:
            return exc.strerror.lower() if exc.strerror[0].isupper() else exc.strerror
        # asyncio's "Multiple exceptions: [Errno 111] ..., [Errno 111] ..." (one per address)
        import re  # here: the fast path of pipe mode never imports re

        codes = set(re.findall(r"\[Errno (\d+)\]", str(exc)))
        if len(codes) == 1:
            return os.strerror(int(codes.pop())).lower()
    return str(exc) or type(exc).__name__
