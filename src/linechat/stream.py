"""The stream layer: line I/O as coroutines, for code that reads top to bottom.

:class:`LineStream` stands on the protocol layer and shares its limits, flow
control and idle timeout. Unlike ``asyncio.StreamReader`` it hands out lines
without their delimiter, returns ``None`` at end of stream instead of raising,
raises :class:`~linechat.LineTooLong` (not ``LimitOverrunError``), and reads
lazily: bytes are split into lines only when asked for, so a switch to a
counted read or to TLS (STARTTLS) sees exactly the bytes that follow.

Writes are gathered until the event loop's next turn (or until the handler
waits for input), so a reply of many lines costs one system call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import ssl
import types
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeVar

from .errors import ConnectionClosed, IdleTimeout, LineTooLong, ProtocolError
from .framing import DEFAULT_MAX_LINE_LENGTH
from .protocol import LineProtocol
from .server import LineServer

__all__ = ["LineStream", "StreamServer", "connect", "start_server"]

log = logging.getLogger("linechat.stream")

TASK_NAME = "linechat stream handler"
_QUIET_CONTEXT = contextvars.Context()

#: Unread input held before the peer stops being read (a waiting reader
#: always gets to read on, up to the line-length limit).
READ_HIGH_WATER = 64 * 1024

Handler = Callable[["LineStream"], Coroutine[Any, Any, None]]


class _StreamProtocol(LineProtocol):
    """The protocol under a LineStream: buffers input, fulfils the pending read."""

    __slots__ = ("_reading_paused", "eof", "handler", "stream", "task")
    coalesce_writes = True

    def __init__(self, handler: Handler | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.handler = handler
        self.stream = LineStream(self, server_side=handler is not None)
        self.eof = False
        self.task: asyncio.Task[None] | None = None
        self._reading_paused = False

    def connection_started(self) -> None:
        if self.handler is not None:
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self.handler(self.stream), name=TASK_NAME)
            # Our own callback needs no copy of the handler's context (~64 B each).
            self.task.add_done_callback(self._handler_done, context=_QUIET_CONTEXT)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        """The handler returned or raised: close its connection, never the server."""
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, LineTooLong):
            self.line_too_long(exc)  # the protocol layer's policy: answer, then close
        elif exc is not None and not isinstance(
            exc, ConnectionClosed | ConnectionError | IdleTimeout
        ):
            log.error("handler failed for %s; closing its connection", self.peer, exc_info=exc)
            self.abort()
            return
        self.close()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.bytes_in += len(data)  # the idle timer watches it
        stream, framer = self.stream, self.framer
        if stream._reader is not None:
            if stream._want < 0 and not framer.buffered and stream._next >= len(stream._lines):
                stream._split_now(data)  # a line is awaited: no copy into the buffer first
            else:
                framer.receive(data)
            stream._fulfil()
            return
        framer.receive(data)
        if framer.buffered > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self._set_reading(False)

    def eof_received(self) -> bool:
        self.eof = True
        self.stream._fulfil()
        return True  # keep our side open: the handler decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.stream._fulfil()

    def resume_writing(self) -> None:
        # Reading stays paused while unread input is over its high-water mark.
        self._writing_paused = False
        self._wake_drainers()
        if not self._reading_paused:
            self._set_reading(True)

    def _written(self) -> None:
        # With no more input in hand the handler will wait for some next:
        # send now, as asyncio streams do. Otherwise let the batch build up.
        stream = self.stream
        if stream._next >= len(stream._lines) and not self.framer.buffered:
            self._flush()
        else:
            super()._written()

    def about_to_wait(self) -> None:
        """A read must wait: send the replies queued, and read the peer again."""
        self._flush()
        if self._reading_paused:
            self._reading_paused = False
            if not self._writing_paused:
                self._set_reading(True)

    def _set_reading(self, on: bool) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()


_LINE, _NEXT = -1, -2  # what a pending read wants; n >= 0 is readexactly(n)

T = TypeVar("T")


@types.coroutine
def _ready(value: T) -> Generator[Any, None, T]:
    """An awaitable that is already done: cheaper than a finished Future."""
    return value
    yield  # a generator, hence awaitable


class LineStream:
    """One line-oriented connection, read and written with coroutines.

    ``readline()`` returns a line without its delimiter, or ``None`` once the
    peer has closed and every line was read. An unterminated last line is
    returned like any other; :attr:`unterminated` then says so.

    The read methods return awaitables, not coroutines: a line in hand costs
    next to nothing, a read that must wait costs one future, and no coroutine
    frame stays alive while a connection is idle. One read may wait at a time.
    """

    __slots__ = (
        "_ended",
        "_error",
        "_lines",
        "_next",
        "_protocol",
        "_reader",
        "_want",
        "server_side",
        "unterminated",
    )

    def __init__(self, protocol: _StreamProtocol, *, server_side: bool) -> None:
        self._protocol = protocol
        # The lines of the framer's last feed(), and how many were handed out.
        self._lines: Sequence[bytes] = ()
        self._next = 0
        self._error: LineTooLong | None = None
        self._ended = False  # the framer has seen the end of stream
        self._reader: asyncio.Future[Any] | None = None  # the pending read
        self._want = _LINE
        self.server_side = server_side
        self.unterminated = False

    # -- reading -----------------------------------------------------------

    def readline(self) -> Awaitable[bytes | None]:
        """The next line, delimiter removed; ``None`` at a clean end of stream."""
        i = self._next
        if i < len(self._lines):  # the fast path: a line in hand
            self._next = i + 1
            return _ready(self._lines[i])
        return self._read(_LINE)

    def readexactly(self, n: int) -> Awaitable[bytes]:
        """Exactly ``n`` raw bytes (a counted payload); mixes freely with lines.

        Raises :class:`ConnectionClosed` if the stream ends first.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._read(n)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        i = self._next
        if i < len(self._lines):
            self._next = i + 1
            return _ready(self._lines[i])
        return self._read(_NEXT)

    def resync(self) -> None:
        """After :class:`LineTooLong`: skip the rest of that line and read on."""
        self._protocol.framer.resync()

    def _read(self, want: int) -> asyncio.Future[Any]:
        if self._reader is not None and not self._reader.done():
            raise RuntimeError("another read is already waiting on this stream")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reader, self._want = future, want
        self._fulfil()
        if self._reader is not None:
            self._protocol.about_to_wait()
        return future

    def _fulfil(self) -> None:
        """Settle the pending read if what it wants is here (or never will be)."""
        future = self._reader
        if future is None:
            return
        if future.done():  # cancelled by its awaiter: nothing was consumed
            self._reader = None
            return
        try:
            found, value = self._take(self._want)
        except BaseException as exc:
            self._reader = None
            future.set_exception(exc)
            return
        if found:
            self._reader = None
            future.set_result(value)

    def _split_now(self, data: bytes) -> None:
        """Frame a chunk straight away (every earlier line was read, a line is awaited)."""
        if self._ended or self._error is not None:
            self._protocol.framer.receive(data)
            return
        try:
            lines = self._protocol.framer.feed(data)
        except LineTooLong as exc:
            lines, self._error = exc.lines, exc
        if lines:
            self._lines, self._next = lines, 0
            self._protocol.lines_in += len(lines)

    def _take(self, want: int) -> tuple[bool, Any]:
        protocol, framer = self._protocol, self._protocol.framer
        finished = protocol.eof or protocol._gone
        if want >= 0:
            if self._next < len(self._lines):
                framer.rewind(self._next)
            self._lines, self._next = (), 0
            data = framer.read_exactly(want)
            if data is not None:
                return True, data
            if finished:
                raise ConnectionClosed(
                    f"stream ended {framer.buffered} bytes into a {want}-byte read"
                )
            return False, None
        i = self._next
        if i < len(self._lines):
            self._next = i + 1
            return True, self._lines[i]
        self._lines, self._next = (), 0  # let the last batch go, and its chunk
        framer.commit()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if not self._ended:
            if not framer.buffered and not finished:
                return False, None
            try:
                lines = framer.feed(b"")
            except LineTooLong as exc:
                lines, self._error = exc.lines, exc
            if lines:
                self._lines, self._next = lines, 1
                protocol.lines_in += len(lines)
                return True, lines[0]
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if not finished:
                return False, None
            self._ended = True
            rest = framer.feed_eof()
            if rest:
                self.unterminated = True
                protocol.lines_in += 1
                return True, rest[0]
        # Every byte the peer sent was handed out: say how the stream ended.
        reason = protocol.close_exception
        if isinstance(reason, IdleTimeout):
            raise reason
        if reason is not None and not protocol.eof:
            raise ConnectionClosed(str(reason) or type(reason).__name__) from reason
        if want == _NEXT:
            raise StopAsyncIteration
        return True, None

    # -- writing -----------------------------------------------------------

    def write_line(self, line: bytes | str) -> None:
        """Queue one line; it leaves with the others at the loop's next turn."""
        self._protocol.write_line(line)

    def write_lines(self, lines: Iterable[bytes | str], *, prefix: bytes = b"") -> None:
        self._protocol.write_lines(lines, prefix=prefix)

    def write_raw(self, data: bytes) -> None:
        self._protocol.write_raw(data)

    async def drain(self) -> None:
        """Send what is queued; wait while the peer is not reading (flow control)."""
        protocol = self._protocol
        if protocol.closed.done():
            raise ConnectionClosed(str(protocol.close_exception or "connection is closed"))
        protocol._flush()
        await protocol.drain()

    def write_eof(self) -> None:
        """Half-close: send what is queued, then tell the peer we are done sending."""
        protocol = self._protocol
        protocol._flush()
        if protocol.transport is not None and protocol.transport.can_write_eof():
            protocol.transport.write_eof()

    async def aclose(self) -> None:
        """Send what is queued, close, and wait until the connection is gone."""
        self._protocol.close()
        await asyncio.shield(self._protocol.closed)

    def abort(self) -> None:
        """Drop the connection now."""
        self._protocol.abort()

    async def __aenter__(self) -> LineStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- TLS -----------------------------------------------------------------

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        """Upgrade to TLS in place (STARTTLS); lines already sent by the peer refuse it.

        A peer that pipelined anything after its STARTTLS command is injecting
        plaintext into the coming TLS session (CVE-2011-0411):
        :class:`ProtocolError` is raised and the caller should close.
        """
        if self._next < len(self._lines):
            raise ProtocolError(
                "peer sent data before the TLS handshake (plaintext injection, CVE-2011-0411)"
            )
        await self._protocol.start_tls(
            context,
            server_side=self.server_side,
            server_hostname=server_hostname,
            handshake_timeout=handshake_timeout,
        )

    # -- about the connection ------------------------------------------------

    @property
    def peer(self) -> Any:
        """The peer's address (``(host, port)``, or a path for Unix sockets)."""
        return self._protocol.peer

    @property
    def tls(self) -> ssl.SSLObject | None:
        """The TLS session (version, cipher, peer certificate), or ``None``."""
        return self.get_extra_info("ssl_object")  # type: ignore[no-any-return]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self._protocol.transport
        return default if transport is None else transport.get_extra_info(name, default)

    @property
    def closed(self) -> asyncio.Future[None]:
        return self._protocol.closed

    @property
    def protocol(self) -> LineProtocol:
        return self._protocol


async def connect(
    host: str | None = None,
    port: int | None = None,
    *,
    unix: str | None = None,
    ssl: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    delimiter: bytes = b"\r\n",
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    lenient: bool = False,
    idle_timeout: float | None = None,
    connect_timeout: float | None = None,
) -> LineStream:
    """Open a line connection over TCP (``host``, ``port``) or a Unix socket."""
    loop = asyncio.get_running_loop()

    def factory() -> _StreamProtocol:
        return _StreamProtocol(
            delimiter=delimiter,
            max_line_length=max_line_length,
            lenient=lenient,
            idle_timeout=idle_timeout,
        )

    if unix is not None:
        opening = loop.create_unix_connection(
            factory, unix, ssl=ssl, server_hostname=server_hostname if ssl else None
        )
    elif host is None or port is None:
        raise ValueError("connect() needs host and port, or unix")
    else:
        opening = loop.create_connection(
            factory, host, port, ssl=ssl, server_hostname=server_hostname if ssl else None
        )
    async with asyncio.timeout(connect_timeout):
        _, protocol = await opening
    return protocol.stream


class StreamServer:
    """A running :func:`start_server`: ``async with`` it, or ``serve_forever()``."""

    def __init__(self, server: LineServer) -> None:
        self.server = server

    @property
    def sockets(self) -> list[Any]:
        return self.server.sockets

    async def serve_forever(self) -> None:
        """Serve until cancelled, then shut down gracefully."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.shutdown()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let handlers' queued replies go, close within ``grace`` s."""
        await self.server.shutdown(grace)

    async def __aenter__(self) -> StreamServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


def stream_protocol_factory(handler: Handler, **options: Any) -> Callable[[], LineProtocol]:
    """A protocol factory that runs ``handler(stream)`` for each connection."""

    def factory() -> LineProtocol:
        return _StreamProtocol(handler, **options)

    return factory


async def start_server(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    unix: str | None = None,
    ssl: ssl.SSLContext | None = None,
    delimiter: bytes = b"\r\n",
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    lenient: bool = False,
    idle_timeout: float | None = None,
    max_connections: int | None = None,
) -> StreamServer:
    """Serve ``handler(stream)`` per connection; one handler's failure closes only its own."""
    factory = stream_protocol_factory(
        handler,
        delimiter=delimiter,
        max_line_length=max_line_length,
        lenient=lenient,
        idle_timeout=idle_timeout,
    )
    server = LineServer(factory, max_connections=max_connections)
    if unix is not None:
        await server.listen_unix(unix, ssl_context=ssl)
    else:
        await server.listen_tcp(host, port or 0, ssl_context=ssl)
    return StreamServer(server)
