"""The protocol layer: an ``asyncio.Protocol`` that speaks lines. The fast path.

Override :meth:`LineProtocol.line_received` (or :meth:`lines_received`, which
gets every line of one chunk at once) and answer with :meth:`write_line`.
Replies written while one chunk is handled leave in a single transport write.

The layer owns what every line service needs and none should repeat:
flow control both ways (a peer that sends but never reads stops being read
before its unsent replies pass twice the high-water mark), an idle timeout, a
per-line deadline, the over-long-line policy, end of stream, a close that
sends no reset (on shutdown, or with the peer's input unread), and a
``closed`` future.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConnectionClosed, IdleTimeout, LineTimeout, LineTooLong, ProtocolError
from .framing import DEFAULT_MAX_LINE_LENGTH, LineFramer
from .idle_watch import IdleWatch, watch

if TYPE_CHECKING:
    from _typeshed import IdentityFunction

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # the pure package does not need mypy_extensions

    def mypyc_attr(*attrs: str, **kwattrs: object) -> IdentityFunction:
        """Read by mypyc at compile time; without mypy_extensions, a decorator that does nothing."""
        return lambda cls: cls


__all__ = ["DEFAULT_WRITE_HIGH_WATER", "LineProtocol", "encode_line"]

log = logging.getLogger("linechat.protocol")

DEFAULT_WRITE_HIGH_WATER = 64 * 1024
#: The most asyncio's socket transport asks recv() for at once. Its default,
#: 256 KiB, is over glibc's mmap threshold: each read maps fresh pages for
#: its bytes object and unmaps them when it shrinks (perf shows the page
#: faults and munmap). 64 KiB come from the heap. uvloop reads into a buffer
#: of its own and is not affected.
READ_SIZE = 64 * 1024


# Why a connection is ending, beyond close() (bits of ``_ending``).
_TIMED_OUT = 1  # the idle timeout or the line deadline closed it
_SHUTDOWN = 2  # close_for_shutdown(): half-close, then wait for the peer's end
_EOF_SENT = 4  # ...and our end of stream is on its way
_LINGER = 8  # closed with input left unread: half-close, drop input (bounded), then close

#: Transport types: has the type a ``max_size`` (asyncio's read size) to cap?
_READ_CAPPED: dict[type, bool] = {}

#: The default read slice (see ``_slice``), one object for every connection.
_SLICE = max(1024, DEFAULT_WRITE_HIGH_WATER // 16)


class _TurnWriter:
    """The connections of one event loop whose replies wait for the end of its turn.

    With :attr:`LineProtocol.defer_replies`, a chunk's replies are queued
    here instead of written; one callback per turn (after every chunk the
    loop read in it was handled) writes them all, back to back.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[LineProtocol] = []

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for protocol in pending:  # (one listed twice: the second finds nothing to send)
            if protocol._closing:
                continue  # close() sent what was queued; abort() drops it
            try:
                protocol._flush()
            except Exception as exc:  # this connection only: the others' replies still go
                log.error("writing replies failed for %s", protocol.peer, exc_info=exc)
                protocol.abort()


#: One per event loop (not holding it: a closed loop's entry goes with it).
_turn_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _TurnWriter] = (
    weakref.WeakKeyDictionary()
)


def _turn_writer(loop: asyncio.AbstractEventLoop) -> _TurnWriter:
    writer = _turn_writers.get(loop)
    if writer is None:
        writer = _turn_writers[loop] = _TurnWriter()
    return writer


def encode_line(line: bytes | str) -> bytes:
    """Lines are bytes on the wire; text is sent as UTF-8. Anything else is a TypeError."""
    if isinstance(line, str):
        return line.encode()
    if isinstance(line, bytes):
        return line
    # As the compiled build says on entry (bytearray, memoryview, None...).
    raise TypeError(f"a line must be bytes or str, not {type(line).__name__}")


# Compiled by mypyc (the optional build), a class that Python code may
# subclass must say so: services, the stream layer and users' protocols do.
@mypyc_attr(allow_interpreted_subclasses=True)
class LineProtocol(asyncio.Protocol):
    """A line-oriented connection, for servers and clients alike.

    ``idle_timeout`` (seconds, ``None`` for none) closes a peer that sends
    nothing for that long, through :meth:`idle_timeout_expired`.
    ``line_timeout`` (seconds, ``None`` for none) is the longest one line may
    take to arrive once its first byte came; past it the peer is closed
    through :meth:`line_timeout_expired` (a slow dribble holds no slot).
    ``write_high_water`` bounds the replies held for a slow reader: past it,
    the peer is not read until they drain below a quarter of it, and input
    already read waits too (see :meth:`data_received`).
    """

    # Slots keep an idle connection small (the target is < 3 KiB in all).
    __slots__ = (
        "_closed",
        "_closing",
        "_drain_waiters",
        "_ending",
        "_eof_pending",
        "_flush_scheduled",
        "_gone",
        "_held",
        "_held_input",
        "_in_chunk",
        "_last_read",
        "_line_started",
        "_lines_seen",
        "_linger_left",
        "_one_by_one",
        "_out",
        "_prefix",
        "_prefixed",
        "_pulling",
        "_raw_wanted",
        "_seen_bytes",
        "_slice",
        "_stop_batch",
        "_turn",
        "_unsent_seen",
        "_writing_paused",
        "bytes_in",
        "bytes_out",
        "close_exception",
        "connected_at",
        "delimiter",
        "framer",
        "idle_timeout",
        "idle_watch",
        "line_timeout",
        "lines_in",
        "lines_out",
        "on_closed",
        "peer",
        "proxy_header",
        "transport",
        "write_high_water",
    )

    # The settings below are class attributes (ClassVar): a subclass sets
    # them in its class body, and the compiled build then reads the
    # subclass's value (an annotated attribute would be a native slot there,
    # keeping the base class's default).

    #: Writes made outside a chunk's handling: sent at once (False), or
    #: gathered until the event loop's next turn, one transport write for all.
    coalesce_writes: ClassVar[bool] = False

    #: Replies to a chunk: written as soon as the chunk is handled (False), or
    #: (True) once the event loop has handled every chunk it read in this
    #: turn, every such connection's replies back to back. The same writes,
    #: later by at most the rest of the turn: a peer on the same host that
    #: sleeps between replies (an application, a load generator) is woken
    #: once per turn rather than once per reply, which costs this side less.
    #: (The protocol layer's; the stream layer writes as each chunk ends.)
    defer_replies: ClassVar[bool] = False

    #: Sent by the default :meth:`line_too_long` before it closes.
    too_long_reply: ClassVar[bytes] = b"ERROR line too long"

    #: Sent by the default :meth:`line_timeout_expired` before it closes.
    line_timeout_reply: ClassVar[bytes] = b"ERROR line timeout"

    #: A close that leaves the peer's input unread (an over-long line, requests
    #: sent after the one that closed) half-closes, then reads and drops input
    #: until the peer closes, for at most this many seconds...
    linger_seconds: ClassVar[float] = 2.0
    #: ...or this many bytes; past them the connection is dropped (a flood).
    linger_bytes: ClassVar[int] = 256 * 1024

    def __init__(
        self,
        *,
        delimiter: bytes = b"\r\n",
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        lenient: bool = False,
        idle_timeout: float | None = None,
        line_timeout: float | None = None,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
    ) -> None:
        self.framer = LineFramer(delimiter, max_line_length=max_line_length, lenient=lenient)
        # Replies always end in the canonical delimiter (CRLF in lenient mode),
        # as framer.delimiter says (without a property call per connection).
        self.delimiter = b"\r\n" if lenient else delimiter
        self.idle_timeout = idle_timeout if idle_timeout else None
        self.line_timeout = line_timeout if line_timeout else None
        self.write_high_water = write_high_water
        # Reads longer than this are handled a slice at a time (_receive_slices):
        # one slice's replies stay under the mark for replies up to 16x the input.
        size = max(1024, write_high_water // 16)
        self._slice = _SLICE if size == _SLICE else size  # the default's int: shared, not 32 B each
        self.transport: asyncio.Transport | None = None
        #: The peer's address; a runner behind a PROXY-protocol balancer sets
        #: it (and ``proxy_header``) to the true client's before the connection.
        self.peer: Any = None
        self.proxy_header: Any = None
        #: ``time.monotonic()`` when the connection was made.
        self.connected_at = 0.0
        #: Called with this protocol once the connection is gone (the runner's hook;
        #: lighter than a callback on :attr:`closed`, which is made only on demand).
        self.on_closed: Callable[[LineProtocol], None] | None = None
        self.lines_in = self.lines_out = self.bytes_in = self.bytes_out = 0
        self.close_exception: BaseException | None = None
        self._out: list[bytes] = []
        # write_lines(): the last prefix, and delimiter + it (``delimiter`` is
        # the framer's, fixed for the connection).
        self._prefix = self._prefixed = b""
        self._in_chunk = False
        self._closing = False
        self._stop_batch = False
        self._raw_wanted: int | None = None
        self._pulling = False
        self._held = False
        self._eof_pending = False
        self._writing_paused = False
        self._last_read = 0.0  # when the idle timer last saw input (or, closing, a drain)
        self._seen_bytes = 0  # bytes_in as the idle timer last saw it
        self._line_started = 0.0  # when the idle timer first saw the line in progress
        self._lines_seen = -1  # lines_in then (-1: no line in progress)
        self._unsent_seen = -1  # closing: unsent bytes at the last look (-1: not looked)
        #: Input read but not yet handled, while writing is paused (None: not paused).
        self._held_input: bytes | None = None
        self._ending = 0  # _TIMED_OUT | _SHUTDOWN | _EOF_SENT | _LINGER
        self._linger_left = 0  # bytes a lingering close still drops
        #: What looks at this connection for the idle timeout: set at the
        #: connection (a server may set one shared by all its connections).
        self.idle_watch: IdleWatch | None = None
        self._closed: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._flush_scheduled = False
        self._gone = False  # connection_lost has run
        self._turn: _TurnWriter | None = None  # defer_replies: this loop's queue
        # lines_received() is the default (line_received() one by one):
        # data_received() then runs its loop inline.
        self._one_by_one = type(self).lines_received is LineProtocol.lines_received

    # -- to override -------------------------------------------------------

    def line_received(self, line: bytes) -> None:
        """Handle one line (delimiter removed)."""

    def lines_received(self, lines: list[bytes]) -> None:
        """Handle every line one chunk completed; by default one by one.

        Override it to answer a whole batch at once (the echo service does).
        An override must stop at :meth:`close` and must not use raw reads.
        """
        # data_received() runs this loop inline when it is not overridden:
        # keep the two in step.
        for used, line in enumerate(lines, 1):
            self.line_received(line)
            if self._stop_batch:
                self._batch_stopped(used, len(lines))
                return

    def raw_received(self, data: bytes) -> None:
        """Handle the bytes asked for with :meth:`read_raw`."""

    def connection_started(self) -> None:
        """Called once the connection is up (a greeting goes here)."""

    def line_too_long(self, exc: LineTooLong) -> None:
        """The peer sent an over-long line; every earlier line was handled.

        By default answer :attr:`too_long_reply` and close. To go on instead,
        answer and call ``self.framer.resync()``. A close from here lingers
        (the rest of the line is likely on its way): the peer reads the
        answer, then our end of stream, never a reset.
        """
        self.write_line(self.too_long_reply)
        self.close()

    def idle_timeout_expired(self) -> None:
        """The peer was silent for ``idle_timeout`` seconds; by default close."""
        self.close_exception = IdleTimeout(f"no data for {self.idle_timeout} s")
        self.close()

    def line_timeout_expired(self) -> None:
        """A line took over ``line_timeout`` s to arrive: answer :attr:`line_timeout_reply`, close.

        Replies still unsent when this returns get a short grace (one look of
        the idle timer) to drain, then the connection is dropped.
        """
        self.close_exception = LineTimeout(f"a line took over {self.line_timeout} s")
        self.write_line(self.line_timeout_reply)
        self.close()

    def connection_ended(self, exc: BaseException | None) -> None:
        """Called once the connection is gone, for clean-up."""

    # -- to call -----------------------------------------------------------

    def write_line(self, line: bytes | str) -> None:
        """Send one line; the delimiter is added."""
        if self._closing:
            return
        out = self._out
        out.append(line if line.__class__ is bytes else encode_line(line))
        out.append(self.delimiter)
        self.lines_out += 1
        if not self._in_chunk and not self._flush_scheduled:
            self._written()

    def write_lines(self, lines: Iterable[bytes | str], prefix: bytes = b"") -> None:
        """Send several lines, each after ``prefix``, in one transport write.

        A list of bytes is joined in C, with no Python work per line.
        """
        if self._closing:
            return
        if lines.__class__ is not list and not isinstance(lines, (list, tuple)):
            lines = list(lines)
        if not lines:
            return
        delimiter = self.delimiter
        if not prefix:
            separator = delimiter
        elif prefix is self._prefix:  # a service's prefix is the same every time
            separator = self._prefixed
        else:
            separator = self._prefixed = delimiter + prefix
            self._prefix = prefix
        try:
            body = separator.join(lines)  # type: ignore[arg-type]
        except TypeError:
            body = separator.join([encode_line(line) for line in lines])
        self.lines_out += len(lines)
        # Joined with the rest at flush: one copy in all.
        self._out += (prefix, body, delimiter) if prefix else (body, delimiter)
        if not self._in_chunk:
            self._written()

    def write_raw(self, data: bytes) -> None:
        """Send ``bytes`` as they are (a counted payload, a pre-built batch)."""
        # As the compiled build checks on entry; the class first (no call).
        if data.__class__ is not bytes and not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if self._closing or not data:
            return
        self._out.append(data)
        if not self._in_chunk:
            self._written()

    def read_raw(self, n: int) -> None:
        """Deliver the next ``n`` bytes to :meth:`raw_received`, then lines again."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._raw_wanted = n
        self._stop_batch = True  # a batch in progress gives back the lines after this one
        self._pulling = True

    def hold(self) -> None:
        """Stop handing out lines; what arrives stays buffered until :meth:`release`.

        Called from :meth:`line_received`, the rest of the chunk is held too:
        the way to finish something asynchronous (a STARTTLS upgrade, a slow
        command) before the next line is read.
        """
        self._held = True
        self._stop_batch = True
        self._pulling = True

    def release(self) -> None:
        """Hand out lines again, starting with those held."""
        if not self._held:
            return
        self._held = False
        self._in_chunk = True
        try:
            self._pull()
        except Exception as exc:
            self._callback_failed(exc)
        finally:
            self._end_chunk()
        self._input_settled()

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        """Upgrade this connection to TLS in place (STARTTLS), both sides.

        Anything the peer sent after the command that asked for the upgrade
        and before the handshake is plaintext that would be taken as if it came
        over TLS (CVE-2011-0411): it is refused with :class:`ProtocolError`,
        and the caller should close. Call it after :meth:`hold` (or from the
        stream layer, which reads lazily), with every reply flushed.
        """
        if self.transport is None or self._closing:
            raise ConnectionClosed("connection is closed")
        if self.framer.buffered:
            raise ProtocolError(
                "peer sent data before the TLS handshake (plaintext injection, CVE-2011-0411)"
            )
        self._flush()
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            self.transport,
            self,
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=handshake_timeout,
        )
        if transport is None:
            raise ConnectionClosed("connection closed during the TLS handshake")
        self.transport = transport

    def close(self) -> None:
        """Send what is queued, then close. Lines after this are not handled.

        With the peer's input left unread (an over-long line, requests not
        handled), the close lingers: half-close, then read and drop input
        until the peer closes, within :attr:`linger_seconds` and
        :attr:`linger_bytes`, so the peer reads the replies, not a reset.
        With an idle timeout, a close that the peer does not let drain (it
        reads nothing for that long) is turned into :meth:`abort`.
        """
        if self._closing:
            return
        self._stop_batch = True
        if not self._in_chunk:
            self._flush()
        elif not self._one_by_one and self.framer.fed_lines() > 1:
            # In an override of lines_received (the echo service's "."), which
            # cannot say how many lines of its batch it used (the default
            # counts them): with more than one, take the rest as unread.
            self._ending |= _LINGER
        self._closing = True
        if not self._in_chunk:
            self._close_transport()

    def close_for_shutdown(self) -> None:
        """The server is stopping: answer what was read, then close with no reset.

        Input that arrives from now on is not handled. Once the replies to
        what was read are sent, our side half-closes (the peer reads its end
        of stream) and input is read and dropped until the peer closes too:
        a socket closed with unread input makes the kernel send a reset,
        which can destroy replies the peer has not read yet. TLS connections
        close with TLS's close_notify instead. The caller bounds the wait
        (:meth:`abort` after a grace). Input this side holds back
        (:meth:`hold`, flow control) is handled first, when it is let go.
        """
        self._ending |= _SHUTDOWN
        if not self._closing:
            self._stop_input()

    def _stop_input(self) -> None:
        """close_for_shutdown(): close now, unless input held back is still to handle."""
        if not (self._held or self._held_input):
            self.close()

    def abort(self) -> None:
        """Drop the connection now, unsent replies included."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    async def drain(self) -> None:
        """Wait until the transport takes more writes (flow control)."""
        if self._writing_paused and self.transport is not None and not self._gone:
            waiter = asyncio.get_running_loop().create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            await waiter

    @property
    def closed(self) -> asyncio.Future[None]:
        """Resolves (with ``None``) once the connection is gone."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
            if self._gone:
                self._closed.set_result(None)
        return self._closed

    @property
    def is_connected(self) -> bool:
        """True from ``connection_made`` until ``connection_lost``."""
        return self.transport is not None and not self._gone

    @property
    def is_closing(self) -> bool:
        return self._closing

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: trust the interface.
        self.transport = transport  # type: ignore[assignment]
        if self.peer is None:
            self.peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=self.write_high_water)  # type: ignore[attr-defined]
        kind = transport.__class__
        capped = _READ_CAPPED.get(kind)
        if capped is None:  # a getattr() that fails raises inside: asked once per type
            capped = _READ_CAPPED[kind] = hasattr(transport, "max_size")
        if capped and transport.max_size > READ_SIZE:  # type: ignore[attr-defined]
            transport.max_size = READ_SIZE  # type: ignore[attr-defined]
        self.connected_at = time.monotonic()
        if self.defer_replies:
            self._turn = _turn_writer(asyncio.get_running_loop())
        if self.idle_timeout is not None or self.line_timeout is not None:
            idle_watch = self.idle_watch
            if idle_watch is None:
                self._last_read = asyncio.get_running_loop().time()
                self.idle_watch = watch(self, self.idle_step())
            else:  # a server's shared watch: its loop is ours
                self._last_read = idle_watch.loop.time()
                idle_watch.add(self)
        self._in_chunk = True
        try:
            self.connection_started()
        except Exception as exc:
            self._callback_failed(exc)
        finally:
            # _end_chunk(), inline: once per connection.
            self._in_chunk = False
            if self._out:
                self._flush()
            if self._closing:
                self._close_transport()

    def data_received(self, data: bytes) -> None:
        """Handle a chunk; a big one (or one while writing is paused) a slice at a time.

        Replies to one chunk leave in one write. A callback that raises is
        logged once with its traceback and closes this connection only.
        """
        if self._closing:
            if self._ending & _LINGER:
                self._drop_input(len(data))
            return
        size = len(data)
        self.bytes_in += size  # the idle timer watches it: no clock read per chunk
        self._in_chunk = True
        try:
            if size > self._slice or self._held_input is not None:
                self._receive_slices(data)
            elif self._pulling:
                self._handle(data)
            else:
                # _handle(), inline for the usual chunk (keep the two in step):
                # a call saved, and compiled, a method call on a class Python
                # may subclass goes through a Python-level lookup.
                framer = self.framer
                try:
                    lines = framer.feed(data)
                except LineTooLong as exc:
                    self._too_long(exc)
                else:
                    if lines:
                        self.lines_in += len(lines)
                        if self._one_by_one:
                            # lines_received(), not overridden, inline (keep
                            # the two in step): a call per chunk saved.
                            for used, line in enumerate(lines, 1):
                                self.line_received(line)
                                if self._stop_batch:
                                    self._batch_stopped(used, len(lines))
                                    break
                        else:
                            self.lines_received(lines)
                        if self._pulling:
                            self._pull()
                    if not self._pulling:
                        # framer.commit(), inline (a Python call per chunk
                        # saved): so this chunk is not kept alive.
                        framer._source = None
                        framer._head = b""
        except Exception as exc:
            self._callback_failed(exc)
        finally:
            # _end_chunk(), inline: this runs once per chunk received.
            self._in_chunk = False
            out = self._out
            transport = self.transport
            if out and transport is not None:
                turn = self._turn
                if turn is not None and not self._closing:
                    # defer_replies: sent at the end of the loop's turn, with the others.
                    if not turn.pending:
                        asyncio.get_running_loop().call_soon(turn.flush)
                    turn.pending.append(self)
                else:
                    reply = b"".join(out)  # (one reply: that very object, not a copy)
                    out.clear()
                    self.bytes_out += len(reply)
                    transport.write(reply)
            if self._closing:
                self._close_transport()

    def _handle(self, data: bytes) -> None:
        """Frame ``data`` and hand its lines out (within a chunk)."""
        framer = self.framer
        if self._pulling:
            framer.receive(data)
            self._pull()
            return
        try:
            lines = framer.feed(data)
        except LineTooLong as exc:
            self._too_long(exc)
            if not self._pulling:
                framer.commit()  # the chunk kept for rewind() is let go
        else:
            if lines:
                self.lines_in += len(lines)
                self.lines_received(lines)
                if self._pulling:
                    self._pull()
            if not self._pulling:
                framer.commit()  # so this chunk is not kept alive

    def _receive_slices(self, data: bytes) -> None:
        """A big read, or input held back while writing is paused: a slice at a time.

        Before each slice the replies queued so far are weighed: past
        ``write_high_water`` they are sent, and if that pauses writing (the
        peer is not reading them) the rest of the input waits in ``_backlog``
        until writing resumes. So a peer that never reads costs at most the
        mark plus one slice's replies, plus the rest of one read.
        """
        backlog = self._held_input
        if backlog:
            data = backlog + data
        self._held_input = None
        step, size, start = self._slice, len(data), 0
        while start < size and not self._closing:
            if self._writing_paused or (start and self._replies_over_mark()):
                self._held_input = data[start:]
                return
            self._handle(data[start : start + step])
            start += step

    def _replies_over_mark(self) -> bool:
        """May the replies queued be past ``write_high_water``? Send them, say if writing paused.

        Cheap enough to ask often: the queue is weighed only while it is
        short (a long one is sent). Small writes are not sent one by one: a
        transport holds each of them with some overhead (uvloop: a request).
        """
        transport = self.transport
        if transport is None:
            return False
        out = self._out
        if (
            len(out) > 256
            or sum(map(len, out)) + transport.get_write_buffer_size() > self.write_high_water
        ):
            self._flush()  # pauses writing if the peer does not take it
        return self._writing_paused

    def eof_received(self) -> bool:
        """The peer is done sending: handle an unterminated last line, then close."""
        if self._closing:
            return False  # a close waiting for the peer's end: done
        if self._held or self._held_input:
            self._eof_pending = True
            return True  # finished once the input held back is handled
        try:
            self._finish_eof()
        except Exception as exc:
            self._callback_failed(exc)
        return False  # asyncio closes once every queued reply is sent

    def _finish_eof(self) -> None:
        if not self._closing:
            self._in_chunk = True
            try:
                if self._pulling:
                    self._pull()
                waiting_raw = self._raw_wanted is not None
                lines = [] if self._closing or waiting_raw else self.framer.feed_eof()
                if lines:
                    self.lines_in += len(lines)
                    self.lines_received(lines)
            finally:
                self._end_chunk()
        self._closing = True

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._held_input is None:
            self._held_input = b""  # input that still comes waits, unhandled, until resumed
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._held_input is not None:
            # Not from inside the transport's write callback: on the next turn.
            asyncio.get_running_loop().call_soon(self._resume_input)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._wake_drainers()

    def _resume_input(self) -> None:
        """Writing resumed: handle the input held back, then read again."""
        if self._writing_paused or self._gone or self._held_input is None:
            return  # paused again meanwhile: the next resume comes back here
        self._in_chunk = True
        try:
            self._receive_slices(b"")
        except Exception as exc:
            self._callback_failed(exc)
        finally:
            self._end_chunk()
        if self._held_input is None:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
            self._input_settled()

    def _input_settled(self) -> None:
        """Input held back was handled: an end of stream or a shutdown waiting for it goes on."""
        if self._held or self._held_input:
            return
        if self._eof_pending:
            self._eof_pending = False
            try:
                self._finish_eof()
            except Exception as exc:
                self._callback_failed(exc)
            if self.transport is not None:
                self.transport.close()
        elif self._ending & _SHUTDOWN:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._gone = True
        if exc is not None and self.close_exception is None:
            self.close_exception = exc
        idle_watch = self.idle_watch
        if idle_watch is not None:
            if not idle_watch.shared:  # a shared watch's table is its owner's
                idle_watch.discard(self)
            self.idle_watch = None
        if self._out:
            self._out.clear()
        self._held_input = None
        if self._drain_waiters is not None:
            self._wake_drainers()
        try:
            self.connection_ended(exc)
        except Exception as error:
            log.error("connection_ended failed for %s", self.peer, exc_info=error)
        finally:
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)
            if self.on_closed is not None:
                self.on_closed(self)

    # -- internals ---------------------------------------------------------

    def _batch_stopped(self, used: int, count: int) -> None:
        """Line ``used`` of a batch of ``count`` closed, held or started a raw read."""
        self._stop_batch = False
        if self._closing:
            if used < count:
                self._ending |= _LINGER  # closed with requests unanswered: they are unread
            return
        if self._held:
            self.framer.rewind(used)
            return
        wanted = self._raw_wanted
        if wanted is None:
            return
        # A counted read: its bytes usually end this very chunk.
        framer = self.framer
        data = framer.read_after(used, wanted)
        if data is not None:
            self._raw_wanted = None
            if not framer._buf:  # (framer.buffered, without a property call)
                self._pulling = False  # nothing left: lines come from feed() again
            self.raw_received(data)

    def _too_long(self, exc: LineTooLong) -> None:
        """An over-long line: hand out the lines before it, then apply the policy."""
        framer = self.framer
        while True:
            if exc.lines:
                self.lines_in += len(exc.lines)
                self.lines_received(exc.lines)
                if not framer.failed:
                    # A raw read (or hold()) took back what follows: the
                    # over-long "line" was raw bytes, the framer goes on.
                    if self._pulling:
                        self._pull()
                    return
            if self._closing or self._stop_batch:
                return
            self._line_too_long(exc)
            if self._closing:
                return
            try:  # resynced: go on with what is buffered
                lines = framer.feed(b"")
            except LineTooLong as again:
                exc = again
                continue
            if lines:
                self.lines_in += len(lines)
                self.lines_received(lines)
                if self._pulling:
                    self._pull()
            return

    def _line_too_long(self, exc: LineTooLong) -> None:
        """Run :meth:`line_too_long`; if it closes, the close lingers."""
        self._ending |= _LINGER
        try:
            self.line_too_long(exc)
        finally:
            if not self._closing:  # it answered and went on: no close to linger
                self._ending &= ~_LINGER

    def _pull(self) -> None:
        """Line-by-line reads while a raw read is pending or just done."""
        framer = self.framer
        while not self._closing and not self._held:
            if self._raw_wanted is not None:
                data = framer.read_exactly(self._raw_wanted)
                if data is None:
                    return
                self._raw_wanted = None
                self._stop_batch = False
                self.raw_received(data)
                continue
            try:
                line = framer.next_line()
            except LineTooLong as exc:
                self._line_too_long(exc)
                continue
            if line is None:
                self._pulling = False
                return
            self.lines_in += 1
            self.line_received(line)
            self._stop_batch = False

    def _end_chunk(self) -> None:
        self._in_chunk = False
        self._flush()
        if self._closing:
            self._close_transport()

    def _close_transport(self) -> None:
        """Close once what is queued is sent; half-close and drain instead on
        shutdown, or when the peer's input may be left unread (a lingering close).

        Closing a socket with unread input makes the kernel send a reset, which
        can destroy the replies the peer has not read yet. So then our side
        half-closes after the replies (the peer reads them, then its end of
        stream) and reads and drops input until the peer closes, for at most
        :attr:`linger_seconds` and :attr:`linger_bytes` (past those: dropped).
        TLS transports close with TLS's close_notify instead.
        """
        transport = self.transport
        if transport is None:
            return
        ending = self._ending
        if (
            self._gone
            or not (ending & _SHUTDOWN or self._input_unread())
            or not transport.can_write_eof()
        ):
            transport.close()
        elif not ending & _EOF_SENT:
            self._ending |= _EOF_SENT
            transport.write_eof()  # sent after the queued replies
            if not transport.is_closing():
                transport.resume_reading()  # read (and drop) until the peer's end
            if not ending & _SHUTDOWN:  # the server's grace bounds a shutdown
                self._ending |= _LINGER
                self._linger_left = self.linger_bytes
                loop = asyncio.get_running_loop()
                loop.call_later(self.linger_seconds, self._linger_over)

    def _input_unread(self) -> bool:
        """At a close: may the peer's input be left unread (an over-long line,
        requests not handled, input held back or not read)?"""
        return bool(
            self._ending & _LINGER
            or self.framer.buffered
            or self._held_input
            or self._writing_paused
        )

    def _drop_input(self, size: int) -> None:
        """Input after a lingering close: dropped; past ``linger_bytes``, so is the peer."""
        self._linger_left -= size
        if self._linger_left < 0:
            if self.close_exception is None:
                self.close_exception = ConnectionClosed("the peer kept sending after the close")
            self.abort()

    def _linger_over(self) -> None:
        """``linger_seconds`` after a lingering close: close (what is unsent still goes)."""
        if not self._gone and self.transport is not None:
            self.transport.close()

    def _callback_failed(self, exc: Exception) -> None:
        """A callback raised: log it once, with its traceback, and close this connection only."""
        log.error(
            "%s failed for %s; closing its connection", type(self).__name__, self.peer, exc_info=exc
        )
        if self.close_exception is None:
            self.close_exception = exc
        self.close()  # in a chunk, the chunk's end sends what was queued, then closes

    def _written(self) -> None:
        if not self.coalesce_writes:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        out = self._out
        if out and self.transport is not None:
            data = b"".join(out)  # (one item: that very object, not a copy)
            out.clear()
            self.bytes_out += len(data)
            self.transport.write(data)

    def idle_step(self) -> float:
        """How often the idle timer looks: a peer is closed 1 to 1.25 timeouts after."""
        idle, line = self.idle_timeout, self.line_timeout
        if idle is None or (line is not None and line < idle):
            idle = line
        step = idle / 4 if idle is not None else 0.0
        return step if step > 0.05 else 0.05

    def look_idle(self, now: float) -> None:
        """The idle watch's look (every step): silent too long, a line too slow, a stuck close?"""
        if self.transport is None or self._gone:
            return
        if self._closing:
            self._look_closing(now)
            return
        if self.bytes_in != self._seen_bytes:  # input came since the last look
            self._seen_bytes = self.bytes_in
            self._last_read = now
        if self.line_timeout is not None:
            if not self._line_in_progress():
                self._lines_seen = -1
            elif self._lines_seen != self.lines_in:  # a new line since the last look
                self._lines_seen = self.lines_in
                self._line_started = now
            elif now - self._line_started >= self.line_timeout:
                self._expire(self.line_timeout_expired, now)
                return
        if self.idle_timeout is not None and now - self._last_read >= self.idle_timeout:
            self._expire(self.idle_timeout_expired, now)

    def _line_in_progress(self) -> bool:
        """Has part of a line (or of a counted read) arrived, for the line deadline?

        Not while this side holds input back (hold(), flow control): then the
        wait is ours, not the peer's.
        """
        return bool(self.framer.buffered) and not self._held and self._held_input is None

    def _expire(self, hook: Callable[[], None], now: float) -> None:
        """Run a timeout's hook; what it leaves unsent gets one more look to drain."""
        self._in_chunk = True
        try:
            hook()
        except Exception as exc:
            self._callback_failed(exc)
        finally:
            self._end_chunk()
        if self._closing and self.transport is not None:
            self._ending |= _TIMED_OUT
            self._last_read = now
            self._unsent_seen = self.transport.get_write_buffer_size()

    def _look_closing(self, now: float) -> None:
        """A close waiting for the peer to read (or, on shutdown, to close): still moving?

        Unsent replies that shrink are progress. Past the grace without any,
        the connection is dropped: one look after a timeout's close, the idle
        timeout (or the line deadline) after any other.
        """
        transport = self.transport
        assert transport is not None
        unsent = transport.get_write_buffer_size()
        if self._unsent_seen < 0 or unsent < self._unsent_seen:
            self._unsent_seen = unsent
            self._last_read = now
            return
        if self._ending & _TIMED_OUT:
            grace = self.idle_step()
        else:
            grace = self.idle_timeout or self.line_timeout or 0.0
        if now - self._last_read >= grace:
            if self.close_exception is None:
                self.close_exception = ConnectionClosed("the peer took none of the replies")
            self.abort()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
