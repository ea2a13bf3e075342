"""The stream layer: line I/O as coroutines, for code that reads top to bottom.

:class:`LineStream` is a :class:`~linechat.protocol.LineProtocol` read with
coroutines: it shares the protocol layer's limits, flow control and idle
timeout. Unlike ``asyncio.StreamReader`` it hands out lines without their
delimiter, returns ``None`` at end of stream instead of raising, raises
:class:`~linechat.LineTooLong` (not ``LimitOverrunError``), and reads lazily:
bytes are split into lines only when asked for, so a switch to a counted read
or to TLS (STARTTLS) sees exactly the bytes that follow.

A server's handler runs in a :class:`~linechat.handler_task.HandlerTask`:
when the line it waits for arrives, ``data_received`` resumes it at once,
and the replies it writes leave in one system call when it waits again.
One object per connection (the stream is its own protocol) keeps an idle
connection small.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import types
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeVar

from .errors import ConnectionClosed, IdleTimeout, LineTimeout, LineTooLong, ProtocolError
from .framing import DEFAULT_MAX_LINE_LENGTH
from .handler_task import WAIT_FOR_INPUT, HandlerTask
from .protocol import _LINGER, LineProtocol
from .server import LineServer

__all__ = ["LineStream", "StreamServer", "connect", "start_server"]

log = logging.getLogger("linechat.stream")

#: Unread input held before the peer stops being read (a waiting reader
#: always gets to read on, up to the line-length limit).
READ_HIGH_WATER = 64 * 1024

Handler = Callable[["LineStream"], Coroutine[Any, Any, None]]

_LINE, _NEXT = -1, -2  # what a pending read wants; n >= 0 is readexactly(n)

T = TypeVar("T")


@types.coroutine
def _ready(value: T) -> Generator[Any, None, T]:
    """An awaitable that is already done: cheaper than a finished Future."""
    return value
    yield  # a generator, hence awaitable


class _Read(Generator[Any, None, Any]):
    """The awaitable ``readline()`` & co. return when nothing is in hand.

    Awaited by the stream's :class:`HandlerTask` (a server's handler) it
    yields ``WAIT_FOR_INPUT``, and the task is resumed from ``data_received``
    with no future at all, usually with the line itself; awaited by anything
    else (a client's own task) it waits on a future that the input's arrival
    resolves. Either way it takes what it wants only when resumed, so a read
    cancelled before that consumes nothing. One per stream, reused: one read
    may wait at a time.
    """

    __slots__ = ("_future", "_stream", "active", "want")

    def __init__(self, stream: LineStream) -> None:
        self._stream = stream
        self.want = _LINE
        self.active = False  # handed out and not finished
        self._future: asyncio.Future[None] | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        return self

    def __next__(self) -> Any:
        stream = self._stream
        self._future = None
        if (  # the usual case, inline: every line read, nothing more in hand
            stream._next >= len(stream._lines)
            and not stream.framer.buffered
            and stream._error is None
            and not (stream.eof or stream._gone or stream._ended)
        ):
            stream._lines, stream._next = (), 0  # let the last batch go, and its chunk
            stream.framer.commit()
            task = stream.task
            # Run from data_received (which sends the replies as it returns)
            # with reading on: nothing to do but wait.
            if (
                task is not None
                and task.stepping
                and stream._in_chunk
                and not stream._reading_paused
            ):
                return WAIT_FOR_INPUT
            return self._park(stream)
        try:
            found, value = stream._take(self.want)
        except BaseException:
            self.active = False
            raise
        if found:
            self.active = False
            raise StopIteration(value)
        return self._park(stream)

    def _park(self, stream: LineStream) -> Any:
        """Nothing to take: wait (what to yield to whoever runs the awaiting coroutine)."""
        stream._about_to_wait()
        task = stream.task
        if task is not None and task.stepping:
            return WAIT_FOR_INPUT
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future._asyncio_future_blocking = True
        self._future = future
        return future

    def send(self, value: Any) -> Any:
        if value is None:
            return self.__next__()
        self.active = False  # the handler's task hands over the line read for us
        raise StopIteration(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Cancelled (or anything thrown in): stop waiting, nothing was consumed."""
        self.close()
        if val is None:
            val = typ if isinstance(typ, BaseException) else typ()
        if tb is not None:
            val = val.with_traceback(tb)
        raise val

    def close(self) -> None:
        self.active = False
        if self._future is not None:
            self._future.cancel()
            self._future = None

    def wake(self) -> None:
        """Input, end of stream or an error came: resume the reader if it can go on."""
        stream = self._stream
        future = self._future
        if future is not None:
            if not future.done() and stream._ready_for(self.want):
                future.set_result(None)
            return
        task = stream.task
        if task is not None and task.waiting_for_input and stream._ready_for(self.want):
            task.step()


class LineStream(LineProtocol):
    """One line-oriented connection, read and written with coroutines.

    ``readline()`` returns a line without its delimiter, or ``None`` once the
    peer has closed and every line was read. An unterminated last line is
    returned like any other; :attr:`unterminated` then says so.

    The read methods return awaitables, not coroutines: a line in hand costs
    next to nothing, and a read that must wait costs no allocation (plus a
    future when a task other than the stream's handler awaits it). One read
    may wait at a time.

    Made by :func:`connect` and :func:`start_server`; as a protocol it is
    built with a ``handler`` (server side: run for the connection) or none.
    """

    __slots__ = (
        "_ended",
        "_error",
        "_lines",
        "_next",
        "_read",
        "_reading_paused",
        "eof",
        "task",
        "unterminated",
    )
    coalesce_writes = True

    def __init__(self, handler: Handler | None = None, **options: Any) -> None:
        super().__init__(**options)
        # The lines of the framer's last feed(), and how many were handed out.
        self._lines: Sequence[bytes] = ()
        self._next = 0
        self._error: LineTooLong | None = None
        self._ended = False  # the framer has seen the end of stream
        self._read: _Read | None = None  # made at the first read that waits
        self._reading_paused = False
        #: The peer has sent its end of stream.
        self.eof = False
        self.unterminated = False
        #: Runs the handler (server side), from the connection on.
        self.task = None if handler is None else HandlerTask(handler(self), self)

    @property
    def server_side(self) -> bool:
        return self.task is not None

    # -- the handler -----------------------------------------------------------

    def connection_started(self) -> None:
        if self.task is not None:
            self.task.start()

    def handler_done(self, exc: BaseException | None, cancelled: bool) -> None:
        """The handler returned or raised: close its connection, never the server.

        What it wrote before it raised is sent before the close; the error is
        logged once, with its traceback.
        """
        if isinstance(exc, LineTooLong):
            self._line_too_long(exc)  # the protocol layer's policy: answer, then close
        elif exc is not None and not isinstance(
            exc, ConnectionClosed | ConnectionError | IdleTimeout
        ):
            log.error("handler failed for %s; closing its connection", self.peer, exc_info=exc)
            if self.close_exception is None:
                self.close_exception = exc
        self.close()

    def _stop_input(self) -> None:
        """close_for_shutdown(): the handler reads the lines in hand, then its end of stream."""
        task = self.task
        if task is None or task.done():
            self.close()
            return
        self._ended = True  # what is buffered beyond the lines in hand is dropped
        self._set_reading(False)  # read again (and drop) once the handler has closed
        self._in_chunk = True
        try:
            self._input_changed()
        finally:
            self._end_chunk()

    # -- input (asyncio.Protocol) ------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closing:
            if self._ending & _LINGER:
                self._drop_input(len(data))
            return
        self.bytes_in += len(data)  # the idle timer watches it
        framer = self.framer
        read = self._read
        if read is None or not read.active:
            framer.receive(data)
            if framer.buffered > READ_HIGH_WATER and not self._reading_paused:
                self._reading_paused = True
                self._set_reading(False)
            return
        if read.want < 0 and self._next >= len(self._lines) and not self._ended and not self._error:
            # A line is awaited and every earlier one was read: split now (feed()
            # also returns complete lines received earlier, first).
            self._frame(data)
        else:
            framer.receive(data)
        if len(data) > self._slice and framer.buffered > READ_HIGH_WATER:
            self._reading_paused = True  # a backlog: read on once it is handled
            self._set_reading(False)
        # Replies the handler writes now leave together, when it waits again.
        self._in_chunk = True
        try:
            task = self.task
            i = self._next
            if task is not None and task.waiting_for_input and i < len(self._lines):
                self._next = i + 1  # the common case: hand the handler its line
                task.step(self._lines[i])
            else:
                read.wake()
        finally:
            # _end_chunk(), inline: once per chunk while a handler reads.
            self._in_chunk = False
            out = self._out
            transport = self.transport
            if out and transport is not None:
                reply = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                self.bytes_out += len(reply)
                transport.write(reply)
            if self._closing:
                self._close_transport()

    def eof_received(self) -> bool:
        if self._closing:
            return False  # our side is done too (a close on shutdown waits for this)
        self.eof = True
        self._input_changed()
        return True  # keep our side open: the handler decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        never_connected = self.transport is None
        super().connection_lost(exc)
        if self.task is not None and never_connected:
            self.task.discard()  # the handler never ran
        self._input_changed()

    def resume_writing(self) -> None:
        # Reading stays paused while unread input is over its high-water mark.
        self._writing_paused = False
        self._wake_drainers()
        if not self._reading_paused:
            self._set_reading(True)
        if self._next < len(self._lines):  # a read waits for the lines in hand: next turn
            asyncio.get_running_loop().call_soon(self._resume_reads)

    def _resume_reads(self) -> None:
        if self._writing_paused and not self._gone:
            return
        self._in_chunk = True
        try:
            self._input_changed()
        finally:
            self._end_chunk()

    def _replies_fit(self) -> bool:
        """Every 16 lines handed out of one batch: may the handler read on?

        Not once the replies it queued pass ``write_high_water`` and the peer
        takes none of them: the read then waits until writing resumes, so a
        peer that never reads costs at most the mark plus 16 lines' replies.
        """
        return self._gone or not self._replies_over_mark()

    def _line_in_progress(self) -> bool:
        """For the line deadline: part of a line arrived while the handler waits for it."""
        read = self._read
        return (
            bool(self.framer.buffered)
            and read is not None
            and read.active
            and not self._writing_paused
        )

    def _written(self) -> None:
        # With no more input in hand the handler will wait for some next:
        # send now, as asyncio streams do. Otherwise let the batch build up.
        if self._next >= len(self._lines) and not self.framer.buffered:
            self._flush()
        else:
            super()._written()

    def _about_to_wait(self) -> None:
        """A read must wait: send the replies queued, and read the peer again."""
        if not self._in_chunk:  # else data_received sends them as it returns
            self._flush()
        if self._reading_paused and self.framer.buffered <= READ_HIGH_WATER:
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

    # -- reading -----------------------------------------------------------

    def readline(self) -> Awaitable[bytes | None]:
        """The next line, delimiter removed; ``None`` at a clean end of stream."""
        i = self._next
        if i < len(self._lines) and (i & 15 or not i or self._replies_fit()):  # a line in hand
            self._next = i + 1
            return _ready(self._lines[i])
        return self._wait(_LINE)

    def readexactly(self, n: int) -> Awaitable[bytes]:
        """Exactly ``n`` raw bytes (a counted payload); mixes freely with lines.

        Raises :class:`ConnectionClosed` if the stream ends first.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._wait(n)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        i = self._next
        if i < len(self._lines) and (i & 15 or not i or self._replies_fit()):
            self._next = i + 1
            return _ready(self._lines[i])
        read = self._read  # _wait(_NEXT), inline: once per line a handler waits for
        if read is None or read.active:
            return self._wait(_NEXT)
        read.active = True
        read.want = _NEXT
        return read

    def resync(self) -> None:
        """After :class:`LineTooLong`: skip the rest of that line and read on."""
        self._ending &= ~_LINGER
        self.framer.resync()

    def _input_unread(self) -> bool:
        """At a close: input the handler did not read (lines in hand, a backlog, an
        over-long line it was told of), unless the peer already ended its stream."""
        if self.eof:
            return False
        return self._next < len(self._lines) or self._reading_paused or super()._input_unread()

    def _wait(self, want: int) -> _Read:
        read = self._read
        if read is None:
            read = self._read = _Read(self)
        elif read.active:
            raise RuntimeError("another read is already waiting on this stream")
        read.active = True
        read.want = want
        return read

    def _input_changed(self) -> None:
        """Input, end of stream or connection loss: wake the read waiting, if any."""
        read = self._read
        if read is not None and read.active:
            read.wake()

    def _ready_for(self, want: int) -> bool:
        """Would a read of ``want`` finish now? (Frames buffered input; consumes nothing.)"""
        if want >= 0 or self._next < len(self._lines) or self._error is not None:
            return True  # a counted read looks for itself
        if self.eof or self._gone or self._ended:
            return True
        return bool(self.framer.buffered) and (bool(self._frame(b"")) or self._error is not None)

    def _frame(self, data: bytes) -> list[bytes]:
        """Split ``data`` and what is buffered into lines in hand (``_lines``).

        Every line handed out before: the new ones replace them. A line over
        the limit is kept in ``_error``, raised once the lines before it were
        read. Returns the new lines.

        A big read (or backlog) is not split all at once: a short line costs
        some 40 bytes as a bytes object, so at most 256 lines or a slice's
        worth of bytes come in hand, and the rest stays raw in the framer.
        """
        framer = self.framer
        try:
            if len(data) + framer.buffered > self._slice:
                lines = self._pull_lines(data)
            else:
                lines = framer.feed(data)
        except LineTooLong as exc:
            lines, self._error = exc.lines, exc
        if lines:
            self._lines, self._next = lines, 0
            self.lines_in += len(lines)
        return lines

    def _pull_lines(self, data: bytes) -> list[bytes]:
        """Take lines one by one from the buffer, up to 256 or a slice's worth of bytes."""
        framer = self.framer
        if data:
            framer.receive(data)
        lines: list[bytes] = []
        size, limit = 0, self._slice
        while size < limit and len(lines) < 256:
            try:
                line = framer.next_line()
            except LineTooLong as exc:
                exc.lines = lines
                raise
            if line is None:
                break
            lines.append(line)
            size += len(line) + 2
        return lines

    def _take(self, want: int) -> tuple[bool, Any]:
        framer = self.framer
        finished = self.eof or self._gone
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
            if self._writing_paused and not self._gone:
                return False, None  # the peer reads none of the replies: wait
            self._next = i + 1
            return True, self._lines[i]
        self._lines, self._next = (), 0  # let the last batch go, and its chunk
        framer.commit()
        if self._error is not None:
            error, self._error = self._error, None
            self._ending |= _LINGER  # a close before resync() leaves the line's rest unread
            raise error
        if not self._ended:
            if not framer.buffered and not finished:
                return False, None
            if framer.buffered > self._slice and (self._in_chunk or self._gone):
                # A backlog, framed a batch per turn of the loop: the other
                # connections get theirs in between.
                asyncio.get_running_loop().call_soon(self._resume_reads)
                return False, None
            if lines := self._frame(b""):
                self._next = 1
                return True, lines[0]
            if self._error is not None:
                error, self._error = self._error, None
                self._ending |= _LINGER  # a close before resync() leaves the line's rest unread
                raise error
            if not finished:
                return False, None
            self._ended = True
            rest = framer.feed_eof()
            if rest and not isinstance(self.close_exception, LineTimeout):  # else a line cut short
                self.unterminated = True
                self.lines_in += 1
                return True, rest[0]
        # Every byte the peer sent was handed out: say how the stream ended.
        reason = self.close_exception
        if isinstance(reason, IdleTimeout):
            raise reason
        if reason is not None and not self.eof:
            raise ConnectionClosed(str(reason) or type(reason).__name__) from reason
        if want == _NEXT:
            raise StopAsyncIteration
        return True, None

    # -- writing (write_line, write_lines, write_raw: the protocol layer's) ----

    async def drain(self) -> None:
        """Send what is queued; wait while the peer is not reading (flow control)."""
        if self.closed.done():
            raise ConnectionClosed(str(self.close_exception or "connection is closed"))
        self._flush()
        await super().drain()

    def write_eof(self) -> None:
        """Half-close: send what is queued, then tell the peer we are done sending."""
        self._flush()
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    async def aclose(self) -> None:
        """Send what is queued, close, and wait until the connection is gone."""
        self.close()
        await asyncio.shield(self.closed)

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
        server_side: bool | None = None,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        """Upgrade to TLS in place (STARTTLS); lines already sent by the peer refuse it.

        A peer that pipelined anything after its STARTTLS command is injecting
        plaintext into the coming TLS session (CVE-2011-0411):
        :class:`ProtocolError` is raised and the caller should close.
        ``server_side`` defaults to the stream's side (a handler's: server).
        """
        if self._next < len(self._lines):
            raise ProtocolError(
                "peer sent data before the TLS handshake (plaintext injection, CVE-2011-0411)"
            )
        await super().start_tls(
            context,
            server_side=self.server_side if server_side is None else server_side,
            server_hostname=server_hostname,
            handshake_timeout=handshake_timeout,
        )

    # -- about the connection ------------------------------------------------

    @property
    def tls(self) -> ssl.SSLObject | None:
        """The TLS session (version, cipher, peer certificate), or ``None``."""
        return self.get_extra_info("ssl_object")  # type: ignore[no-any-return]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self.transport
        return default if transport is None else transport.get_extra_info(name, default)


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

    def factory() -> LineStream:
        return LineStream(
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
        _, stream = await opening
    return stream


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
        return LineStream(handler, **options)

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
    line_timeout: float | None = None,
    max_connections: int | None = None,
) -> StreamServer:
    """Serve ``handler(stream)`` per connection; one handler's failure closes only its own."""
    factory = stream_protocol_factory(
        handler,
        delimiter=delimiter,
        max_line_length=max_line_length,
        lenient=lenient,
        idle_timeout=idle_timeout,
        line_timeout=line_timeout,
    )
    server = LineServer(factory, max_connections=max_connections)
    if unix is not None:
        await server.listen_unix(unix, ssl_context=ssl)
    else:
        await server.listen_tcp(host, port or 0, ssl_context=ssl)
    return StreamServer(server)
