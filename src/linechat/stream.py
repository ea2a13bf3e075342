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
from typing import Any

from .errors import ConnectionClosed, IdleTimeout, LineTimeout, LineTooLong, ProtocolError
from .framing import DEFAULT_MAX_LINE_LENGTH
from .handler_task import WAIT_FOR_INPUT, HandlerTask
from .protocol import _LINGER, LineProtocol
from .server import LineServer

__all__ = ["LineStream", "StreamServer", "connect", "start_server"]

log = logging.getLogger("linechat.stream")

#: Unread input held before the peer stops being read (a waiting reader
#: always gets to read on, up to the line-length limit). Reading resumes once
#: that backlog is handled, not at the mark: the next read (256 KiB on uvloop)
#: then lands on an empty buffer, not on the mark's worth of older input.
READ_HIGH_WATER = 64 * 1024

Handler = Callable[["LineStream"], Coroutine[Any, Any, None]]

_LINE, _NEXT = -1, -2  # what a pending read wants; n >= 0 is readexactly(n)
#: _take() found nothing to return, and input it holds waits to be read (a
#: backlog, lines in hand while writing is paused): not a reason to read more.
_BACKLOG: Any = object()


class LineStream(LineProtocol):
    """One line-oriented connection, read and written with coroutines.

    ``readline()`` returns a line without its delimiter, or ``None`` once the
    peer has closed and every line was read. An unterminated last line is
    returned like any other; :attr:`unterminated` then says so.

    The read methods return generator-based coroutines (``types.coroutine``;
    ``await`` them, or hand them to ``asyncio.ensure_future``/``wait_for``):
    a line in hand costs one small generator, and a read that must wait costs
    no future when the stream's own handler awaits it (one when another task
    does). One read may wait at a time; a second raises ``RuntimeError``
    when awaited.

    Made by :func:`connect` and :func:`start_server`; as a protocol it is
    built with a ``handler`` (server side: run for the connection) or none.
    """

    __slots__ = (
        "_ended",
        "_error",
        "_handing",
        "_lines",
        "_next",
        "_reading_paused",
        "_waiter",
        "_want",
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
        #: What the read waiting wants (_LINE, _NEXT, n >= 0 for readexactly(n)),
        #: None while no read waits: input is then only buffered, not split.
        self._want: int | None = None
        #: The future a read waits on when a task other than the handler's awaits it.
        self._waiter: asyncio.Future[None] | None = None
        #: True while data_received hands a line to the handler: every line
        #: in the buffer is in ``_lines`` and reading is on, so the handler's
        #: next read, with no line in hand, can wait at once (set by
        #: data_received only; any other read clears it).
        self._handing = False
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
        if framer._failed:  # an over-long line waits for the handler: keep this for after
            self._keep_input(data)
            return
        want = self._want
        if want is None:  # no read waits: split lazily, when one asks
            framer.receive(data)
            if framer.buffered > READ_HIGH_WATER and not self._reading_paused:
                self._reading_paused = True
                self._set_reading(False)
            return
        task = self.task
        if (  # the handler waits for a line, and nothing holds this chunk back
            want < 0
            and task is not None
            and task.waiting_for_input
            and self._next >= len(self._lines)
            and not (self._ended or self._error or self._writing_paused or self._reading_paused)
            # (the buffer's length: the ``buffered`` property costs a call per chunk)
            and len(data) + len(framer._buf) <= self._slice
        ):
            try:
                lines = framer.feed(data)
            except LineTooLong as exc:
                lines, self._error = exc.lines, exc
                self._lines, self._next = (), 0  # a counted read rewinds past these only
            else:
                if not lines:
                    return  # part of a line: nothing to do until the rest comes
                # The hot path: hand the handler its line, straight into the
                # read it waits in; its replies leave in one write when it
                # waits again.
                self._lines = lines
                self._next = 1
                self.lines_in += len(lines)
                self._in_chunk = self._handing = True
                try:
                    task.resume(lines[0])
                finally:
                    self._handing = False
                    # _end_chunk(), inline (as in LineProtocol.data_received:
                    # keep the two in step).
                    self._in_chunk = False
                    out = self._out
                    transport = self.transport
                    if out and transport is not None:
                        reply = b"".join(out)  # (one item: that very object)
                        out.clear()
                        self.bytes_out += len(reply)
                        transport.write(reply)
                    if self._closing:
                        self._close_transport()
                return
            if lines:
                self._lines, self._next = lines, 0
                self.lines_in += len(lines)
        elif want < 0 and self._next >= len(self._lines) and not self._ended and not self._error:
            # A line is awaited and every earlier one was read: split now (feed()
            # also returns complete lines received earlier, first).
            self._frame(data)
        else:
            framer.receive(data)
        if len(data) > self._slice and framer.buffered > max(READ_HIGH_WATER, want):
            # A backlog (beyond what a counted read waits for): read on once it is handled.
            self._reading_paused = True
            self._set_reading(False)
        self._in_chunk = True
        try:
            self._input_changed()
        finally:
            self._end_chunk()

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

    def pause_writing(self) -> None:
        # Not the protocol layer's: the stream keeps unhandled input in its
        # framer, and ``_held_input`` is only for input after an over-long line
        # (set, it would keep _set_reading(True) from ever reading again).
        self._writing_paused = True
        self._set_reading(False)
        # What is buffered waits for the peer to read (perhaps never): let it
        # take no more memory than its length.
        self.framer.shrink()

    def resume_writing(self) -> None:
        # Reading stays paused while unread input is over its high-water mark.
        self._writing_paused = False
        transport = self.transport
        if transport is not None and not transport.get_write_buffer_limits()[1]:
            transport.set_write_buffer_limits(high=self.write_high_water)  # _wait_for_replies()
        self._wake_drainers()
        if not self._reading_paused:
            self._set_reading(True)
        if self._want is not None:  # a read waits (for lines in hand, a backlog): next turn
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
        return bool(self.framer.buffered) and self._want is not None and not self._writing_paused

    def _written(self) -> None:
        # With no more input in hand the handler will wait for some next:
        # send now, as asyncio streams do. Otherwise let the batch build up.
        if self._next >= len(self._lines) and not self.framer.buffered:
            self._flush()
        else:
            super()._written()

    def _about_to_wait(self, found: Any) -> None:
        """A read must wait: send the replies queued, and read the peer again,
        unless what ``_take()`` ``found`` is a backlog still to be handled."""
        if not self._in_chunk:  # else data_received sends them as it returns
            self._flush()
        if self._reading_paused and found is not _BACKLOG:
            # Nothing left but part of a line (within the line limit), or less
            # than a counted read wants: read on.
            self._reading_paused = False
            if not (self._writing_paused or self._wait_for_replies()):
                self._set_reading(True)

    def _wait_for_replies(self) -> bool:
        """A backlog was handled, but the peer has not taken all its replies:
        should reading wait until it has? Then the transport says so.

        A read now (256 KiB on uvloop) would only wait with them, unhandled,
        if the peer reads no more. The transport's high-water mark drops to 0
        (``pause_writing()`` now, ``resume_writing()`` once every reply is
        sent, which puts it back): meanwhile the kernel still sends what it
        holds.
        """
        transport = self.transport
        if transport is None or self._gone or not transport.get_write_buffer_size():
            return False
        transport.set_write_buffer_limits(high=0)
        if self._writing_paused:
            return True
        transport.set_write_buffer_limits(high=self.write_high_water)  # it did not pause
        return False

    def _keep_input(self, data: bytes) -> None:
        """Input that arrives while the framer is stopped at an over-long line.

        The handler has not said yet what the line was (``resync()``, or raw
        bytes for a counted read): the input after it waits, in order, with
        reading paused (a few reads at most), and goes to the framer then.
        """
        held = self._held_input
        self._held_input = data if held is None else held + data
        self._set_reading(False)

    def _release_input(self) -> None:
        """The framer goes on: give it the input kept meanwhile, and read again."""
        held = self._held_input
        if held is not None:
            self._held_input = None
            self.framer.receive(held)
            if not (self._reading_paused or self._writing_paused):
                self._set_reading(True)

    def _set_reading(self, on: bool) -> None:
        if on and self._held_input is not None:
            return  # input waits for the framer: not more of it
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()

    # -- reading -----------------------------------------------------------

    @types.coroutine
    def readline(self) -> Generator[Any, bytes | None, bytes | None]:
        """The next line, delimiter removed; ``None`` at a clean end of stream."""
        # One local, reused (see __anext__: a waiting read's frame is kept).
        got: Any = self._next
        if got < len(self._lines):
            if got & 15 or not got or self._replies_fit():  # a line in hand
                self._next = got + 1
                return self._lines[got]  # type: ignore[no-any-return]
        elif self._handing and self._want is None:  # as in __anext__
            self._lines, self._next = (), 0
            self.framer.commit()
            self._want = _LINE
            try:
                got = yield WAIT_FOR_INPUT
            finally:
                self._want = None
            if got is not None:
                return got  # type: ignore[no-any-return]
        if self.task is None or not self.task.stepping:  # not the handler's own task
            got = yield from self._read(_LINE)
            return got  # type: ignore[no-any-return]
        # _read(), inline for the handler: an idle handler waits in this frame
        # alone (a nested generator would cost its frame too).
        if self._want is not None:
            raise RuntimeError("another read is already waiting on this stream")
        self._handing = False
        self._want = _LINE
        try:
            while True:
                got = self._take(_LINE)
                if got[0]:
                    return got[1]  # type: ignore[no-any-return]
                self._about_to_wait(got[1])
                got = yield WAIT_FOR_INPUT
                if got is not None:  # data_received handed over the line
                    return got  # type: ignore[no-any-return]
        finally:
            self._want = None

    def readexactly(self, n: int) -> Awaitable[bytes]:
        """Exactly ``n`` raw bytes (a counted payload); mixes freely with lines.

        Raises :class:`ConnectionClosed` if the stream ends first.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._read(n)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    @types.coroutine
    def __anext__(self) -> Generator[Any, bytes | None, bytes]:
        """The next line (``async for``); the cheapest way to read.

        A generator-based coroutine: awaited, it runs in the awaiting
        coroutine's own step, with no awaitable object of its own to call.
        """
        # A handler waiting for input is suspended in here, and an idle
        # connection keeps this frame: one local (the index, then the line),
        # and the batch is not held in it.
        got: Any = self._next
        if got < len(self._lines):
            if got & 15 or not got or self._replies_fit():  # a line in hand
                self._next = got + 1
                return self._lines[got]  # type: ignore[no-any-return]
        elif self._handing and self._want is None:
            # The usual case: data_received handed the handler a line, which
            # it has answered. Every line received was read: let the batch
            # (and its chunk) go, and wait. data_received sends the replies
            # when this yields, and resumes the handler with the next line.
            self._lines, self._next = (), 0
            self.framer.commit()
            self._want = _NEXT
            try:
                got = yield WAIT_FOR_INPUT
            finally:
                self._want = None
            if got is not None:
                return got  # type: ignore[no-any-return]
            # Woken for something else (end of stream, an error): the general way.
        if self.task is None or not self.task.stepping:  # not the handler's own task
            got = yield from self._read(_NEXT)
            return got  # type: ignore[no-any-return]
        # _read(), inline for the handler: an idle handler waits in this frame
        # alone (a nested generator would cost its frame too).
        if self._want is not None:
            raise RuntimeError("another read is already waiting on this stream")
        self._handing = False
        self._want = _NEXT
        try:
            while True:
                got = self._take(_NEXT)
                if got[0]:
                    return got[1]  # type: ignore[no-any-return]
                self._about_to_wait(got[1])
                got = yield WAIT_FOR_INPUT
                if got is not None:  # data_received handed over the line
                    return got  # type: ignore[no-any-return]
        finally:
            self._want = None

    def resync(self) -> None:
        """After :class:`LineTooLong`: skip the rest of that line and read on."""
        self._ending &= ~_LINGER
        self.framer.resync()
        self._release_input()

    def _input_unread(self) -> bool:
        """At a close: input the handler did not read (lines in hand, a backlog, an
        over-long line it was told of), unless the peer already ended its stream."""
        if self.eof:
            return False
        return self._next < len(self._lines) or self._reading_paused or super()._input_unread()

    @types.coroutine
    def _read(self, want: int) -> Generator[Any, Any, Any]:
        """Wait until a read of ``want`` can finish, and finish it.

        Awaited by the stream's :class:`HandlerTask` (a server's handler) it
        yields ``WAIT_FOR_INPUT``: the task is resumed from ``data_received``
        with no future at all, usually with the line itself. Awaited by
        anything else (a client's own task) it waits on a future that the
        input's arrival resolves. Either way it takes what it wants only once
        resumed, so a read cancelled before that consumes nothing. One read
        may wait at a time.
        """
        if self._want is not None:
            raise RuntimeError("another read is already waiting on this stream")
        self._handing = False  # this read may frame, rewind, take: the handover's promise ends
        self._want = want
        try:
            while True:
                found, value = self._take(want)
                if found:
                    return value
                self._about_to_wait(value)
                task = self.task
                if task is not None and task.stepping:
                    value = yield WAIT_FOR_INPUT
                    if value is not None:  # data_received handed over the line
                        return value
                    continue
                waiter = self._waiter = asyncio.get_running_loop().create_future()
                try:
                    yield from waiter
                finally:
                    self._waiter = None
        finally:
            self._want = None

    def _input_changed(self) -> None:
        """Input, end of stream or connection loss: resume the read waiting, if it can go on."""
        want = self._want
        if want is None:
            return
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done() and self._ready_for(want):
                waiter.set_result(None)
            return
        task = self.task
        if task is not None and task.waiting_for_input and self._ready_for(want):
            task.step()

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
            self._lines, self._next = (), 0  # a counted read rewinds past these only
        if lines:
            self._lines, self._next = lines, 0
            self.lines_in += len(lines)
        return lines

    def _pull_lines(self, data: bytes) -> list[bytes]:
        """Split the buffer's first lines, up to 256 or a slice's worth of bytes.

        Split as ``feed()`` splits, so a counted read among them can rewind.
        """
        framer = self.framer
        if data:
            framer.receive(data)
        return framer.split_buffered(self._slice, 256)

    def _take(self, want: int) -> tuple[bool, Any]:
        framer = self.framer
        finished = self.eof or self._gone
        if want >= 0:
            if self._error is not None:
                # The over-long "line" after the lines in hand is raw bytes to a
                # handler that reads them raw (as in LineProtocol._too_long): the
                # framer takes back everything after the last line read, and
                # goes on. With no line of that read in hand it is a line.
                if not self._lines:
                    self._raise_error()
                framer.rewind(self._next)
                self._error = None
                self._release_input()
            elif self._next < len(self._lines):
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
                return False, _BACKLOG  # the peer reads none of the replies: wait
            self._next = i + 1
            return True, self._lines[i]
        self._lines, self._next = (), 0  # let the last batch go, and its chunk
        framer.commit()
        if self._error is not None:
            self._raise_error()
        if not self._ended:
            if not framer.buffered and not finished:
                return False, None
            if framer.buffered > self._slice and (self._in_chunk or self._gone):
                # A backlog, framed a batch per turn of the loop: the other
                # connections get theirs in between.
                asyncio.get_running_loop().call_soon(self._resume_reads)
                return False, _BACKLOG
            if lines := self._frame(b""):
                self._next = 1
                return True, lines[0]
            if self._error is not None:
                self._raise_error()
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

    def _raise_error(self) -> None:
        """Raise the over-long line's error, once the lines before it were read."""
        error, self._error = self._error, None
        assert error is not None
        self._ending |= _LINGER  # a close before resync() leaves the line's rest unread
        raise error

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
