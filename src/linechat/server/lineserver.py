"""The server runner: listeners, TLS, the connection limit, logging, shutdown.

It runs any :class:`~linechat.protocol.LineProtocol` factory; it never prints
or exits (the CLI does), it logs to the ``linechat.server`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..handler_task import HandlerTask
from ..idle_watch import IdleWatch
from ..protocol import LineProtocol
from ..proxy_accept import ProxyPolicy, read_proxy_header
from .listeners import (
    AcceptedFd,
    AcceptedSocket,
    AcceptFailures,
    Acceptor,
    accepted_socket,
    bind_tcp,
    bind_unix,
    release_unix,
    socket_kind,
)

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_TLS_HANDSHAKE_TIMEOUT",
    "LineServer",
    "ProxyPolicy",
    "format_address",
    "tls_server_context",
]

log = logging.getLogger("linechat.server")

DEFAULT_GRACE = 5.0
#: Seconds a peer has to finish its TLS handshake (asyncio's own default is 60).
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0


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


#: What a plain connection's set-up is handed: the socket, or uvloop's stand-in.
_Conn = AcceptedSocket | AcceptedFd


class _Starting:
    """Told when a plain connection's set-up ends: on failure, its slot is given back."""

    __slots__ = ("conn", "protocol", "server")

    def __init__(self, server: LineServer, protocol: LineProtocol, conn: _Conn) -> None:
        self.server, self.protocol, self.conn = server, protocol, conn

    def handler_done(self, exc: BaseException | None, cancelled: bool) -> None:
        if (exc is not None or cancelled) and self.protocol.transport is None:
            self.conn.release()
            self.server._never_connected(self.protocol, exc)


def takes_descriptors(loop: asyncio.AbstractEventLoop) -> bool:
    """Does ``loop.connect_accepted_socket`` take an :class:`AcceptedFd` (uvloop's does)?"""
    uvloop = sys.modules.get("uvloop")
    return uvloop is not None and isinstance(loop, uvloop.Loop)


class LineServer:
    """Serve ``protocol_factory`` on one or more listeners.

    ``max_connections`` (``None`` for no limit): past it a new peer gets an
    error line and is closed, and the others are not disturbed. A connection
    takes its slot when accepted and gives it back on every way out,
    including a TLS handshake that fails, is abandoned or takes longer than
    ``tls_handshake_timeout`` seconds.

    Every listener is accepted on by a :class:`~.listeners.Acceptor` (the
    same on asyncio and uvloop), which knows each peer's address from the
    accept itself.
    """

    def __init__(
        self,
        protocol_factory: Callable[[], LineProtocol],
        *,
        max_connections: int | None = None,
        proxy: ProxyPolicy | None = None,
        tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    ) -> None:
        self.protocol_factory = protocol_factory
        self.max_connections = max_connections
        self.proxy = proxy
        self.tls_handshake_timeout = tls_handshake_timeout
        #: The open connections (a dict as an ordered set: about half a set's memory).
        self.connections: dict[LineProtocol, None] = {}
        self.served = 0
        self.accept_failures = AcceptFailures()
        self._listeners: list[socket.socket] = []
        self._acceptors: list[Acceptor] = []
        self._unix_paths: list[tuple[str, tuple[int, int]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Plain connections whose set-up waits for the loop to make them (see _start_plain).
        self._starting: list[tuple[Any, Any, LineProtocol, _Conn]] = []
        self._finish_scheduled = False
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
        sockets = bind_tcp(host, port, reuse_port=reuse_port)
        return [self.listen_socket(sock, ssl_context=ssl_context) for sock in sockets]

    async def listen_unix(self, path: str, *, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on the Unix socket ``path``, unless a server already answers there.

        A stale socket file is replaced; the file is removed at shutdown if
        it is still ours. OSError (EADDRINUSE, EEXIST) says why not.
        """
        sock, identity = bind_unix(path)
        self._unix_paths.append((path, identity))
        return self.listen_socket(sock, ssl_context=ssl_context)

    def listen_socket(
        self, sock: socket.socket, *, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Accept on an already listening socket (bound here, or inherited); its address."""
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        kind = socket_kind(sock)
        family = kind[0]
        unix = family == socket.AF_UNIX
        # uvloop takes the bare descriptor: no socket object per connection.
        bare = takes_descriptors(loop)

        def accepted(fd: int, address: Any) -> None:
            if unix:
                address = None
            conn: _Conn | None = None
            try:
                if ssl_context is None and (
                    self.proxy is None or not self.proxy.expects_header(address)
                ):
                    conn = AcceptedFd(fd, family) if bare else accepted_socket(kind, fd)
                    self._start_plain(loop, conn, address)  # the common case, without a Task
                else:
                    conn = accepted_socket(kind, fd)
                    self._spawn(self._start(conn, address, ssl_context))
            except Exception:  # the service's constructor failed: this peer only
                log.exception("cannot start a connection from %s", format_address(address))
                if conn is None:
                    os.close(fd)
                else:
                    conn.release()

        def batch_done() -> None:
            self._batch_accepted(loop)

        acceptor = Acceptor(loop, sock, accepted, self.accept_failures, batch_done)
        self._listeners.append(sock)
        self._acceptors.append(acceptor)
        acceptor.start()
        name = sock.getsockname()
        return str(name) if unix else format_address(name)

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._listeners)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(
        self, conn: socket.socket, address: Any, ssl_context: ssl.SSLContext | None
    ) -> None:
        """Read a PROXY header if one is due, then make the connection (and its TLS)."""
        protocol: LineProtocol | None = None
        policy = self.proxy
        try:
            conn.setblocking(False)
            header = None
            if policy is not None and policy.expects_header(address):
                header = await read_proxy_header(conn, policy)
            protocol = self._accept()
            protocol.peer = address
            if header is not None:
                protocol.proxy_header = header
                if header.peer is not None:  # a LOCAL header (health check) has none
                    protocol.peer = header.peer
            accepted = protocol
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                lambda: accepted,
                conn,
                ssl=ssl_context,
                ssl_handshake_timeout=self.tls_handshake_timeout if ssl_context else None,
            )
        except Exception as exc:  # a bad header, a failed handshake, a reset: this peer only
            conn.close()
            if protocol is None:  # the PROXY header was missing or bad
                reason = "no PROXY header in time" if isinstance(exc, TimeoutError) else exc
                log.warning("%s rejected: %s", format_address(address), reason)
            else:  # never connected: give its slot back (else connection_lost does)
                self._never_connected(protocol, exc)
        except asyncio.CancelledError:  # shutdown, mid-handshake
            conn.close()
            if protocol is not None:
                self._never_connected(protocol, None)
            raise
        else:
            if protocol.transport is None:
                # Done, yet never connected: uvloop's TLS layer reports a
                # connection lost mid-handshake without an error as a success.
                transport.close()
                self._never_connected(protocol, ConnectionResetError("closed during the handshake"))

    def _start_plain(self, loop: asyncio.AbstractEventLoop, conn: _Conn, address: Any) -> None:
        """Make a plain connection: the loop's own coroutine, stepped by hand.

        Its first step opens the transport and has the loop schedule
        ``connection_made``, then waits for it to be done. Rather than a
        task (or a callback per connection) to resume it, the coroutines of
        one batch of accepts wait in ``_starting``, and one callback, queued
        behind the batch's ``connection_made`` calls (:meth:`_batch_accepted`),
        finishes them all.
        """
        protocol = self._accept()
        protocol.peer = address
        # An AcceptedFd only ever goes to uvloop, which takes one.
        starting = loop.connect_accepted_socket(lambda: protocol, conn)  # type: ignore[arg-type]
        try:
            waiting = starting.send(None)
        except StopIteration:
            return
        except BaseException as exc:
            self._start_failed(protocol, conn, exc)
            return
        self._starting.append((starting, waiting, protocol, conn))

    def _batch_accepted(self, loop: asyncio.AbstractEventLoop) -> None:
        """A batch of accepts is done: finish their set-ups once the loop has made them."""
        if self._starting and not self._finish_scheduled:
            self._finish_scheduled = True
            loop.call_soon(self._finish_starts)

    def _finish_starts(self) -> None:
        self._finish_scheduled = False
        pending, self._starting = self._starting, []
        for starting, waiting, protocol, conn in pending:
            if waiting.__class__ is asyncio.Future and waiting.done():
                try:
                    waiting = starting.send(None)
                except StopIteration:
                    continue  # made: the usual end
                except BaseException as exc:
                    self._start_failed(protocol, conn, exc)
                    continue
            # Waiting for something else: driven the general way from here.
            HandlerTask(starting, _Starting(self, protocol, conn)).adopt(waiting)

    def _start_failed(self, protocol: LineProtocol, conn: _Conn, exc: BaseException) -> None:
        """A plain connection's set-up raised: close what no transport took, free its slot."""
        if protocol.transport is None:
            conn.release()
            cancelled = isinstance(exc, asyncio.CancelledError)
            self._never_connected(protocol, None if cancelled else exc)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc

    def _never_connected(self, protocol: LineProtocol, exc: BaseException | None) -> None:
        """A connection that failed before it was made (TLS handshake): release it.

        Only if the loop never connected it: a connection made (even if gone
        already) is released by its own ``connection_lost``, exactly once.
        """
        if protocol.transport is not None or protocol._gone:
            return
        if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionAbortedError):
            exc = TimeoutError(f"TLS handshake not done in {self.tls_handshake_timeout:g} s")
        protocol.close_exception = exc
        protocol.connected_at = time.monotonic()
        protocol.connection_lost(None)  # settles its accounts: on_closed frees the slot

    def _accept(self) -> LineProtocol:
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            log.warning("connection refused: limit of %d reached", self.max_connections)
            return _Refused()
        protocol = self.protocol_factory()
        self.connections[protocol] = None
        self.served += 1
        protocol.on_closed = self._on_closed
        if protocol.idle_timeout is not None or protocol.line_timeout is not None:
            step = protocol.idle_step()
            if self._idle_watch is None:
                loop = asyncio.get_running_loop()
                self._idle_watch = IdleWatch(loop, step, shared=self.connections)
            if self._idle_watch.step == step:  # else it gets a watch of its own
                protocol.idle_watch = self._idle_watch
        return protocol

    def _ended(self, protocol: LineProtocol) -> None:
        if self.connections.pop(protocol, self) is self:
            return  # released already (or never counted): once only
        reason = protocol.close_exception
        if (
            protocol.bytes_in == 0
            and protocol.bytes_out == 0
            and (reason is None or isinstance(reason, ConnectionError))
        ):
            # The peer connected and left: a health check or a port scan, not an error.
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s connected and closed without a byte (%s) (%d open)",
                    format_address(protocol.peer),
                    reason or "clean",
                    len(self.connections),
                )
        elif log.isEnabledFor(logging.INFO):
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
        for acceptor in self._acceptors:
            acceptor.close()
        for task in list(self._tasks):
            task.cancel()
        for listener in self._listeners:
            listener.close()
        for path, identity in self._unix_paths:
            release_unix(path, identity)
        deadline = asyncio.get_running_loop().time() + grace
        pending = list(self.connections)
        handlers = [t for p in pending if (t := getattr(p, "task", None)) and not t.done()]
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
        await _finish_handlers(handlers, deadline)


async def _finish_handlers(handlers: list[Any], deadline: float) -> None:
    """Stream handlers get until ``deadline`` to return (their reads see the end
    of stream); then they are cancelled, and get one more second to clean up."""
    loop = asyncio.get_running_loop()
    for cancelled in (False, True):
        while handlers and loop.time() < deadline:
            await asyncio.sleep(0.02)
            handlers = [task for task in handlers if not task.done()]
        if not handlers or cancelled:
            return
        log.warning("%d handlers still running at the end of the grace; cancelled", len(handlers))
        for task in handlers:
            task.cancel()
        deadline = loop.time() + 1.0
