"""Pipe mode without asyncio, for a plain TCP or Unix connection.

``linechat connect HOST PORT < file`` is often a step in a shell loop, where
start-up is most of its time: importing asyncio alone takes about 25 ms, twice
what the interpreter needs to start. Without TLS, STARTTLS, a PROXY header, a
transcript or a dialect, pipe mode is only shuttling bytes, so this module
does it with a blocking connect and a ``poll`` loop, and the first line leaves
before asyncio would have been imported.

It behaves as :func:`.pipe.run_pipe` does: line ends converted the same way
(:mod:`.ends`), flow control both ways (stdin is read only when what was read
before is sent; the socket only while stdout keeps up), a half-close at the
end of input, then printing until the server closes or has been silent for
``wait`` seconds. Failures are :class:`.basics.ConnectError` with the same
wording. It never prints or exits.
"""

from __future__ import annotations

# _socket, not socket: socket.py builds enums of every constant at import, ~4 ms
# of start-up; the C module has all this needs (_socket.socket subclasses it).
import _socket
import os
import select
import stat
import time

from .basics import ConnectError, describe_error, format_address
from .newlines import LineEnds, ReceivedEnds

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..dialects.base import Dialect
    from .ends import Ending
    from .expect import Expected
    from .lockstep import Lockstep, LockstepResult
    from .pipe import Feeder

__all__ = ["open_plain", "pipe_plain", "run_plain_lockstep", "run_plain_pipe"]

#: The size of a read from stdin and from the socket (as :mod:`.pipe`).
CHUNK = 256 * 1024
#: The socket is not read while more than this waits to be written to stdout.
OUTPUT_HIGH_WATER = 1024 * 1024
#: Lockstep: how often a wait for a reply looks at its timers (output
#: batches are written at most this late, as the asyncio client's 20 ms).
WAKE = 0.02
_IN = select.POLLIN | select.POLLPRI
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL
# How a session ended: the names of :class:`.ends.Ending`'s members, which
# :func:`run_plain_pipe` turns into the enum (``enum`` is slow to import).
SERVER_CLOSED = "SERVER_CLOSED"
WAIT_EXPIRED = "WAIT_EXPIRED"
OUTPUT_CLOSED = "OUTPUT_CLOSED"


def open_plain(
    host: str, port: int, *, unix: str | None = None, timeout: float | None = 10.0
) -> _socket.socket:
    """A connected socket (every address of ``host`` tried in turn, within ``timeout``).

    Raises :class:`ConnectError`, worded as :func:`.session.connect` words it.
    """
    address = format_address(host, port, unix)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        candidates: list[tuple[Any, Any, int, str, Any]]
        if unix is not None:
            candidates = [(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, "", unix)]
        else:
            candidates = _socket.getaddrinfo(
                host.encode() if host.isascii() else host, port, 0, _socket.SOCK_STREAM
            )  # bytes: no import of the idna codec for an ASCII name
        error: OSError | None = None
        for family, kind, proto, _, target in candidates:
            sock = _socket.socket(family, kind, proto)
            try:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("timed out")
                    sock.settimeout(left)
                sock.connect(target)
            except OSError as exc:
                sock.close()
                error = exc
                if isinstance(exc, TimeoutError):
                    break
                continue
            if family != _socket.AF_UNIX:  # as asyncio and uvloop do for TCP
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            return sock
        raise error or OSError(f"no address for {host}")
    except OSError as exc:
        raise ConnectError(f"cannot connect to {address}: {describe_error(exc)}") from exc


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Session:
    """One connection's state; :meth:`run` is the loop."""

    def __init__(self, sock: _socket.socket, newline: bytes, stdin_fd: int, stdout_fd: int) -> None:
        self.sock = sock
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.in_ends = LineEnds(newline)
        self.out_ends = ReceivedEnds()
        self.to_send = b""  # stdin converted, not yet taken by the socket
        self.stdin_open = True
        self.read_error: OSError | None = None
        self.eof_at: float | None = None  # when stdin ended
        self.shut = False  # our half-close is done
        self.out: list[bytes] = []  # for stdout, in order (a pipe that is behind)
        self.out_size = 0
        self.out_async = _is_pipe(stdout_fd)
        self.broken = False  # stdout cannot be written
        self.eof_seen = False
        self.lost: OSError | None = None
        self.last_received = time.monotonic()
        # Reads land here and only what came is copied out: recv(CHUNK) would
        # allocate (mmap) and shrink (mremap, munmap) 256 KiB every time,
        # three system calls per small lockstep reply.
        self.buffer = bytearray(CHUNK)
        self.view = memoryview(self.buffer)

    def recv(self) -> bytes:
        """One read from the socket (b"" at its end); OSError as the socket raises it."""
        count = self.sock.recv_into(self.buffer)
        return bytes(self.view[:count])

    # -- stdin to the socket --------------------------------------------------

    def read_stdin(self) -> None:
        try:
            data = os.read(self.stdin_fd, CHUNK)
        except OSError as exc:
            data, self.read_error = b"", exc
        if data:
            self.to_send = self.in_ends.convert(data)
        else:
            self.stdin_open = False
            self.eof_at = time.monotonic()
            self.to_send = self.in_ends.finish()
        self.send()

    def send(self) -> None:
        data = self.to_send
        if data:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.lost = exc
                return
            self.to_send = data[sent:] if sent < len(data) else b""
        if not self.to_send and not self.stdin_open and not self.shut:
            self.shut = True
            try:
                self.sock.shutdown(_socket.SHUT_WR)
            except OSError as exc:
                self.lost = exc

    # -- the socket to stdout -------------------------------------------------

    def receive(self) -> None:
        try:
            data = self.recv()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost = exc
            return
        self.last_received = time.monotonic()
        if not data:
            self.eof_seen = True
            return
        self.write(self.out_ends.convert(data))

    def write(self, data: bytes) -> None:
        if self.broken or not data:
            return
        if self.out:
            self.out.append(data)
            self.out_size += len(data)
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.stdout_fd, view) :]
        except BlockingIOError:
            if self.out_async:
                rest = bytes(view)
                self.out.append(rest)
                self.out_size += len(rest)
            else:  # someone else made a file non-blocking: write it all anyway
                self._write_blocking(view)
        except OSError:
            self.broken = True

    def _write_blocking(self, view: memoryview) -> None:
        os.set_blocking(self.stdout_fd, True)
        try:
            while view:
                view = view[os.write(self.stdout_fd, view) :]
        except OSError:
            self.broken = True

    def flush_output(self) -> None:
        """Write what waits for stdout, as far as it takes it now."""
        while self.out and not self.broken:
            data = self.out[0]
            try:
                written = os.write(self.stdout_fd, data)
            except BlockingIOError:
                return
            except OSError:
                self.broken = True
                return
            self.out_size -= written
            if written < len(data):
                self.out[0] = data[written:]
                return
            self.out.pop(0)

    # -- the loop -------------------------------------------------------------------

    def run(self, wait: float | None) -> str:
        poller = select.poll()
        sock_fd = self.sock.fileno()
        registered: dict[int, int] = {}
        while True:
            if self.lost is not None or self.eof_seen:
                return SERVER_CLOSED
            if self.broken and self.out_async:
                return OUTPUT_CLOSED
            want: dict[int, int] = {}
            events = 0
            if self.out_size < OUTPUT_HIGH_WATER:
                events |= _IN
            if self.to_send:
                events |= select.POLLOUT
            want[sock_fd] = events
            if self.stdin_open and not self.to_send:
                want[self.stdin_fd] = want.get(self.stdin_fd, 0) | _IN
            if self.out:
                want[self.stdout_fd] = want.get(self.stdout_fd, 0) | select.POLLOUT
            for fd in registered.keys() - want.keys():
                poller.unregister(fd)
                del registered[fd]
            for fd, mask in want.items():
                if registered.get(fd) != mask:
                    poller.register(fd, mask)
                    registered[fd] = mask
            timeout_ms: int | None = None
            if self.eof_at is not None and wait is not None:
                if self.out_size >= OUTPUT_HIGH_WATER:  # stdout is behind, not the server silent
                    self.last_received = time.monotonic()
                left = max(self.eof_at, self.last_received) + wait - time.monotonic()
                if left <= 0:
                    return WAIT_EXPIRED
                timeout_ms = int(left * 1000) + 1
            for fd, happened in poller.poll(timeout_ms):
                if fd == sock_fd:
                    if happened & (_IN | _GONE):
                        self.receive()
                    if happened & select.POLLOUT or (happened & _GONE and self.to_send):
                        self.send()
                    continue
                if fd == self.stdout_fd and happened & (select.POLLOUT | _GONE):
                    self.flush_output()
                ready = happened & (_IN | _GONE)
                if fd == self.stdin_fd and ready and self.stdin_open and not self.to_send:
                    self.read_stdin()


def run_plain_pipe(
    sock: _socket.socket,
    *,
    newline: bytes = b"\r\n",
    wait: float | None,
    address: str = "",
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> tuple[Ending, OSError | None]:
    """Send stdin on ``sock``, print what comes back, until the exchange is over.

    The same contract as :func:`.pipe.run_pipe`: returns how it ended and a
    read error on stdin if there was one; a connection lost (reset) before
    the server ended its side raises :class:`ConnectError`. ``sock`` is
    closed on return.
    """
    from .ends import Ending

    name, read_error = pipe_plain(
        sock, newline=newline, wait=wait, address=address, stdin_fd=stdin_fd, stdout_fd=stdout_fd
    )
    return Ending[name], read_error


def pipe_plain(
    sock: _socket.socket,
    *,
    newline: bytes = b"\r\n",
    wait: float | None,
    address: str = "",
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> tuple[str, OSError | None]:
    """:func:`run_plain_pipe`, the ending given as the name of its :class:`.ends.Ending`
    member (``"WAIT_EXPIRED"``...): what ``linechat connect`` calls, without importing enum."""
    session = _Session(sock, newline, stdin_fd, stdout_fd)
    restore = session.out_async and os.get_blocking(stdout_fd)
    if restore:
        os.set_blocking(stdout_fd, False)
    try:
        ending = session.run(wait)
        if session.broken:
            ending = OUTPUT_CLOSED
    finally:
        sock.close()
        session.write(session.out_ends.finish())
        if restore:
            os.set_blocking(stdout_fd, True)
        if session.out and not session.broken:
            session._write_blocking(memoryview(b"".join(session.out)))
    if session.lost is not None and ending == SERVER_CLOSED:
        raise ConnectError(f"connection to {address} lost: {describe_error(session.lost)}")
    return ending, session.read_error


# -- lockstep (--dialect) without asyncio ---------------------------------------------


class _Timer:
    """What ``call_later`` gives: a callback at a time, until cancelled."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Result:
    """What ``create_future`` gives, without asyncio: set once, then done."""

    __slots__ = ("_done", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._done, self._value = True, value

    def result(self) -> Any:
        return self._value


class _Clock:
    """The two things :class:`.lockstep.Lockstep` asks of a loop: timers and a result.

    Few timers live at once (a reply deadline, an output batch): a list, and
    the earliest time kept so that the loop's look costs one comparison.
    """

    def __init__(self) -> None:
        self.timers: list[_Timer] = []
        self.earliest: float | None = None

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(time.monotonic() + delay, callback)
        self.timers.append(timer)
        if self.earliest is None or timer.when < self.earliest:
            self.earliest = timer.when
        return timer

    def create_future(self) -> _Result:
        return _Result()

    def timeout_ms(self, now: float) -> int | None:
        """Milliseconds from ``now`` to the next timer (None: none); a cancelled
        timer may wake the loop for nothing, which costs one look."""
        earliest = self.earliest
        if earliest is None:
            return None
        return max(0, int((earliest - now) * 1000) + 1)

    def run_due(self, now: float) -> None:
        if self.earliest is None or now < self.earliest:
            return
        due = sorted(
            (timer for timer in self.timers if timer.when <= now), key=lambda timer: timer.when
        )
        self.timers = [timer for timer in self.timers if timer.when > now and not timer.cancelled]
        self.earliest = min((timer.when for timer in self.timers), default=None)
        for timer in due:
            if not timer.cancelled:
                timer.callback()


class _Connection(_Session):
    """Stands where :class:`.session.ClientProtocol` does for the lockstep state machine."""

    def send_data(self, data: bytes) -> None:
        if self.lost is not None:
            return
        self.to_send += data
        self.send()

    def write_lines(self, lines: list[bytes]) -> None:
        lines.append(b"")
        self.write(b"\n".join(lines))


def run_plain_lockstep(
    sock: _socket.socket,
    dialect: Dialect,
    *,
    keep_going: bool = False,
    reply_timeout: float | None = 30.0,
    wait: float | None = 10.0,
    as_json: bool = False,
    expected: Expected | None = None,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> tuple[LockstepResult, OSError | None]:
    """:func:`.lockstep.run_lockstep` on a plain socket, without asyncio.

    The same state machine (:class:`.lockstep.Lockstep`) on a ``poll`` loop:
    after a command is sent the loop sleeps in ``poll`` until the reply
    comes, reads it, and the end of the reply sends the next line from
    there. Returns the result, and the error that lost the connection (a
    reset, not the server's orderly close) if there was one. ``sock`` is
    closed on return.
    """
    from .lockstep import Lockstep, LockstepEnding, LockstepResult, _Batched

    connection = _Connection(sock, dialect.newline, stdin_fd, stdout_fd)
    connection.stdin_open = expected is None
    connection.shut = True  # no half-close in lockstep: the session ends it (and QUIT)
    clock = _Clock()
    output = _Batched(connection, loop=clock)  # type: ignore[arg-type]
    session = Lockstep(
        connection,  # type: ignore[arg-type]
        dialect,
        keep_going=keep_going,
        reply_timeout=reply_timeout,
        wait=wait,
        as_json=as_json,
        transcript=None,
        expected=expected,
        write_lines=output.show,
        loop=clock,
    )
    lines = session.input
    paused: list[bool] = [False]
    lines.pause = lambda: paused.__setitem__(0, True)
    lines.resume = lambda: paused.__setitem__(0, False)
    restore = connection.out_async and os.get_blocking(stdout_fd)
    if restore:
        os.set_blocking(stdout_fd, False)
    poller = select.poll()
    sock_fd = sock.fileno()
    registered: dict[int, int] = {}
    finished = session.finished
    import struct

    # Blocking, with kernel timeouts: a recv or send returns EAGAIN after WAKE
    # seconds (BlockingIOError, handled as "not now"); recv after poll
    # reported data never waits.
    sock.setblocking(True)
    timeval = struct.pack("@ll", 0, int(WAKE * 1_000_000))
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, timeval)
    try:
        session.start()
        if expected is not None:
            lines.lines.extend(expected.inputs())
            lines.eof()
        state = (-1, -1, -1)
        monotonic = time.monotonic
        poll = poller.poll
        while not finished.done():
            if connection.broken and connection.out_async:
                break
            if dialect.waiting and not connection.to_send and not connection.out:
                # A reply is awaited and nothing else needs watching (stdin is
                # read between replies): sleep in recv itself, as redis-cli
                # does, not in poll and then recv. SO_RCVTIMEO wakes it every
                # WAKE seconds for the timers (reply deadline, output batch).
                _receive(connection, session)
                clock.run_due(monotonic())
                continue
            wanted = (
                (_IN if connection.out_size < OUTPUT_HIGH_WATER else 0)
                | (select.POLLOUT if connection.to_send else 0),
                _IN if connection.stdin_open and not paused[0] else 0,
                select.POLLOUT if connection.out else 0,
            )
            if wanted != state:  # (re)register only what changed: most turns, nothing
                state = wanted
                masks: dict[int, int] = {sock_fd: wanted[0]}
                for fd, mask in ((stdin_fd, wanted[1]), (stdout_fd, wanted[2])):
                    if mask:
                        masks[fd] = masks.get(fd, 0) | mask
                for fd in registered.keys() - masks.keys():
                    poller.unregister(fd)
                for fd, mask in masks.items():
                    if registered.get(fd) != mask:
                        poller.register(fd, mask)
                registered = masks
            for fd, happened in poll(clock.timeout_ms(monotonic())):
                if fd == sock_fd:
                    if happened & select.POLLOUT:
                        connection.send()
                    if happened & (_IN | _GONE):
                        _receive(connection, session)
                    continue
                if fd == stdout_fd and happened & (select.POLLOUT | _GONE):
                    connection.flush_output()
                if fd == stdin_fd and happened & (_IN | _GONE) and connection.stdin_open:
                    _read_input(connection, lines)
                if finished.done():
                    break
            if connection.lost is not None and not finished.done():
                session.connection_closed()
            clock.run_due(monotonic())
        output.flush()
        ending = finished.result() if finished.done() else LockstepEnding.OUTPUT_CLOSED
        if connection.broken:
            ending = LockstepEnding.OUTPUT_CLOSED
    finally:
        output.flush()
        _close(connection)
        if restore:
            os.set_blocking(stdout_fd, True)
        if connection.out and not connection.broken:
            connection._write_blocking(memoryview(b"".join(connection.out)))
    lost = connection.lost if not connection.eof_seen else None
    result = LockstepResult(
        ending=ending,
        errors=session.errors,
        exchanges=session.count,
        detail=session.detail,
        read_error=lines.error,
    )
    return result, lost


def _receive(connection: _Connection, session: Lockstep) -> None:
    try:
        data = bytes(connection.view[: connection.sock.recv_into(connection.buffer)])
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:
        connection.lost = exc
        session.connection_closed()
        return
    connection.last_received = time.monotonic()
    if data:
        session.received(data)
    else:
        connection.eof_seen = True
        session.connection_closed()


def _read_input(connection: _Connection, lines: Feeder) -> None:
    try:
        data = os.read(connection.stdin_fd, CHUNK)
    except OSError as exc:
        connection.stdin_open = False
        lines.eof(exc)
        return
    if data:
        lines.feed(data)
    else:
        connection.stdin_open = False
        lines.eof()


def _close(connection: _Connection) -> None:
    """Send what is queued (2 s at most), then close, as the asyncio client's close does."""
    sock = connection.sock
    if connection.to_send and connection.lost is None and not connection.eof_seen:
        deadline = time.monotonic() + 2
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        while connection.to_send and connection.lost is None:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000) + 1):
                break
            connection.send()
    sock.close()
