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
from collections.abc import Callable, Coroutine
from typing import Any

from .errors import ProtocolError
from .idle_watch import IdleWatch
from .protocol import LineProtocol
from .proxy_accept import ProxyPolicy, read_proxy_header

__all__ = ["LineServer", "ProxyPolicy", "format_address", "tls_server_context"]

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

    __slots__ = ()

    def connection_started(self) -> None:
        self.write_line(b"ERROR too many connections")
        self.close()


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
        proxy: ProxyPolicy | None = None,
    ) -> None:
        self.protocol_factory = protocol_factory
        self.max_connections = max_connections
        self.proxy = proxy
        #: The open connections (a dict as an ordered set: about half a set's memory).
        self.connections: dict[LineProtocol, None] = {}
        self.served = 0
        self._servers: list[asyncio.Server] = []
        # Behind a PROXY-protocol balancer: our own listeners and accept loops.
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # One bound method for every connection (one each would be 64 B apiece).
        self._on_closed = self._ended
        # The idle timeouts of our connections: one look through self.connections.
        self._idle_watch: IdleWatch | None = None

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
        port = self.sockets[-1].getsockname()[1]
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
        if self.proxy is not None:
            return self._bind_proxied(host, port, ssl_context, reuse_port, self.proxy)
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
        servers = [sock for server in self._servers for sock in server.sockets]
        return servers + self._listeners

    def _bind_proxied(
        self,
        host: str | None,
        port: int,
        ssl_context: ssl.SSLContext | None,
        reuse_port: bool,
        policy: ProxyPolicy,
    ) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        addresses = []
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(1024)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._listeners.append(sock)
            addresses.append(format_address(sock.getsockname()))
            self._spawn(self._accept_proxied(sock, ssl_context, policy))
        return addresses

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_proxied(
        self, listener: socket.socket, ssl_context: ssl.SSLContext | None, policy: ProxyPolicy
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, and the like: try again soon
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._spawn(self._start_proxied(conn, address, ssl_context, policy))

    async def _start_proxied(
        self,
        conn: socket.socket,
        address: Any,
        ssl_context: ssl.SSLContext | None,
        policy: ProxyPolicy,
    ) -> None:
        """Read the PROXY header, then run the connection as any other."""
        protocol: LineProtocol | None = None
        try:
            conn.setblocking(False)
            header = (
                await read_proxy_header(conn, policy) if policy.expects_header(address) else None
            )
            protocol = self._accept()
            if header is not None:
                protocol.peer = header.peer
                protocol.proxy_header = header
            accepted = protocol
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: accepted, conn, ssl=ssl_context
            )
        except (ProtocolError, TimeoutError, OSError) as exc:
            reason = "no PROXY header in time" if isinstance(exc, TimeoutError) else exc
            log.warning("%s rejected: %s", format_address(address), reason)
            conn.close()
            if protocol is not None and not protocol.is_connected:
                protocol.close_exception = exc
                protocol.connected_at = time.monotonic()
                protocol.connection_lost(None)  # never connected: settle its accounts
        except asyncio.CancelledError:
            conn.close()
            raise

    def _accept(self) -> LineProtocol:
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            log.warning("connection refused: limit of %d reached", self.max_connections)
            return _Refused()
        protocol = self.protocol_factory()
        self.connections[protocol] = None
        self.served += 1
        protocol.on_closed = self._on_closed
        if protocol.idle_timeout is not None:
            step = protocol.idle_step()
            if self._idle_watch is None:
                loop = asyncio.get_running_loop()
                self._idle_watch = IdleWatch(loop, step, shared=self.connections)
            if self._idle_watch.step == step:  # else it gets a watch of its own
                protocol.idle_watch = self._idle_watch
        return protocol

    def _ended(self, protocol: LineProtocol) -> None:
        self.connections.pop(protocol, None)
        if log.isEnabledFor(logging.INFO):
            reason = protocol.close_exception
            log.info(
                "%s closed after %.3f s: %d lines/%d B in, %d lines/%d B out%s (%d open)",
                format_address(protocol.peer),
                time.monotonic() - protocol.connected_at,
                protocol.lines_in,
                protocol.bytes_in,
                protocol.lines_out,
                protocol.bytes_out,
                f" ({reason})" if reason else "",
                len(self.connections),
            )

    async def shutdown(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop accepting, answer what was read, close everything within ``grace`` s.

        Each connection closes with ``close_for_shutdown()``: no reset for a
        peer that sent more in the last moment. Those not gone after the
        grace are dropped.
        """
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for listener in self._listeners:
            listener.close()
        pending = list(self.connections)
        for protocol in pending:
            protocol.close_for_shutdown()
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
