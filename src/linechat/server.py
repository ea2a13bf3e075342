"""The server runner: listeners, TLS, the connection limit, logging, shutdown.

It runs any :class:`~linechat.protocol.LineProtocol` factory; it never prints
or exits (the CLI does), it logs to the ``linechat.server`` logger.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import LineProtocol

__all__ = ["LineServer", "format_address", "tls_server_context"]

log = logging.getLogger("linechat.server")

DEFAULT_GRACE = 5.0


def format_address(address: object) -> str:
    """``host:port`` for IPv4, ``[host]:port`` for IPv6, the path for Unix sockets."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "unix socket peer"


def tls_server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server TLS context from PEM files (raises OSError or ssl.SSLError)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


class _Refused(LineProtocol):
    """Answers one error line to a peer past the connection limit, then closes."""

    def connection_started(self) -> None:
        self.write_line(b"ERROR too many connections")
        self.close()


@dataclass
class _Entry:
    protocol: LineProtocol
    started: float


class LineServer:
    """Serve ``protocol_factory`` on one or more listeners.

    ``max_connections`` (``None`` for no limit): past it a new peer gets an
    error line and is closed, and the others are not disturbed.
    """

    def __init__(
        self,
        protocol_factory: Callable[[], LineProtocol],
        *,
        max_connections: int | None = None,
    ) -> None:
        self.protocol_factory = protocol_factory
        self.max_connections = max_connections
        self.connections: set[LineProtocol] = set()
        self.served = 0
        self._servers: list[asyncio.Server] = []

    async def listen_tcp(
        self,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> list[str]:
        """Listen on ``host:port``; return the addresses bound.

        ``localhost`` means both loopbacks, 127.0.0.1 and ::1 (whatever the
        resolver says), on one port even when ``port`` is 0; ::1 is skipped
        where IPv6 is off. ``reuse_port`` lets several processes share the
        port (SO_REUSEPORT), the kernel spreading connections over them.
        """
        if host != "localhost":
            return await self._bind(host, port, ssl_context, reuse_port)
        addresses = await self._bind("127.0.0.1", port, ssl_context, reuse_port)
        port = self._servers[-1].sockets[0].getsockname()[1]
        try:
            addresses += await self._bind("::1", port, ssl_context, reuse_port)
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                await self.shutdown(0)
                raise
            log.debug("::1 unavailable (%s): listening on IPv4 only", exc)
        return addresses

    async def _bind(
        self, host: str | None, port: int, ssl_context: ssl.SSLContext | None, reuse_port: bool
    ) -> list[str]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._accept,
            host,
            port,
            ssl=ssl_context,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        self._servers.append(server)
        return [format_address(sock.getsockname()) for sock in server.sockets]

    async def listen_unix(self, path: str, *, ssl_context: ssl.SSLContext | None = None) -> str:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self._accept, path, ssl=ssl_context, backlog=1024)
        self._servers.append(server)
        return path

    @property
    def sockets(self) -> list[socket.socket]:
        return [sock for server in self._servers for sock in server.sockets]

    def _accept(self) -> LineProtocol:
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            log.warning("connection refused: limit of %d reached", self.max_connections)
            return _Refused()
        protocol = self.protocol_factory()
        self.connections.add(protocol)
        self.served += 1
        entry = _Entry(protocol, time.monotonic())
        protocol.closed.add_done_callback(lambda _: self._ended(entry))
        return protocol

    def _ended(self, entry: _Entry) -> None:
        protocol = entry.protocol
        self.connections.discard(protocol)
        if log.isEnabledFor(logging.INFO):
            reason = protocol.close_exception
            log.info(
                "%s closed after %.3f s: %d lines/%d B in, %d lines/%d B out%s (%d open)",
                format_address(protocol.peer),
                time.monotonic() - entry.started,
                protocol.lines_in,
                protocol.bytes_in,
                protocol.lines_out,
                protocol.bytes_out,
                f" ({reason})" if reason else "",
                len(self.connections),
            )

    async def shutdown(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop accepting, send what is queued, close everything within ``grace`` s."""
        for server in self._servers:
            server.close()
        pending = list(self.connections)
        for protocol in pending:
            protocol.close()
        waiting = [p.closed for p in pending if not p.closed.done()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=grace)
            if late:
                log.warning("%d connections did not finish in %.1f s; dropped", len(late), grace)
                for protocol in pending:
                    if not protocol.closed.done():
                        protocol.abort()
                await asyncio.wait(late, timeout=1.0)
        for server in self._servers:
            await server.wait_closed()
