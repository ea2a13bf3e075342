"""Pipe mode: stdin is a pipe or a file, for scripts and transcripts.

Everything is done in bulk, per chunk, never per line in Python: stdin is
read in large chunks and its line ends converted with ``bytes.replace``;
received lines are joined in C and written to stdout in one write per chunk.
Flow control holds both ways: stdin is not read while the socket's send
buffer is full, the socket is not read while stdout's buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .display import escape_text
from .ends import Ending, LineEnds, ReceivedEnds
from .session import ClientProtocol

if TYPE_CHECKING:
    from .transcript import Transcript

__all__ = [
    "Ending",
    "Feeder",
    "LineEnds",
    "Output",
    "ReceivedEnds",
    "linger",
    "open_input",
    "open_output",
    "run_pipe",
]

CHUNK = 256 * 1024
OUTPUT_HIGH_WATER = 1024 * 1024
# -- stdout ----------------------------------------------------------------------


class _Pausable(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Output(Protocol):
    broken: bool
    escape: bool

    def write_lines(self, lines: list[bytes]) -> None: ...

    def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


class _BlockingOutput:
    """A regular file or terminal on stdout: plain blocking writes (escaped on a terminal)."""

    def __init__(self, fd: int, escape: bool) -> None:
        self.fd = fd
        self.escape = escape
        self.broken = False

    def write_lines(self, lines: list[bytes]) -> None:
        if self.escape:
            self.write("".join(escape_text(line) + "\n" for line in lines).encode())
        else:
            lines.append(b"")
            self.write(b"\n".join(lines))

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except BlockingIOError:
            _write_blocking(self.fd, view)
        except OSError:
            self.broken = True

    async def aclose(self) -> None:
        return None


def _write_blocking(fd: int, data: memoryview) -> None:
    """Someone else made the file non-blocking: write it all anyway."""
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, True)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.set_blocking(fd, blocking)


class _PipeOutputProtocol(asyncio.Protocol):
    def __init__(self, client: ClientProtocol, on_broken: Callable[[], None]) -> None:
        self.client = client
        self.on_broken = on_broken
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pause_writing(self) -> None:
        self.client.pause_receiving()

    def resume_writing(self) -> None:
        self.client.resume_receiving()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.on_broken()
        if not self.lost.done():
            self.lost.set_result(None)


class _PipeOutput:
    """A pipe or socket on stdout: asynchronous writes with flow control."""

    escape = False

    def __init__(self, transport: asyncio.WriteTransport, protocol: _PipeOutputProtocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.broken = False

    @classmethod
    async def open(
        cls, fd: int, client: ClientProtocol, on_broken: Callable[[], None]
    ) -> _PipeOutput:
        loop = asyncio.get_running_loop()
        holder: list[_PipeOutput] = []

        def broken() -> None:
            if holder:
                holder[0].broken = True
            on_broken()

        protocol = _PipeOutputProtocol(client, broken)
        pipe = open(fd, "wb", buffering=0, closefd=False)  # noqa: SIM115
        transport, _ = await loop.connect_write_pipe(lambda: protocol, pipe)
        transport.set_write_buffer_limits(high=OUTPUT_HIGH_WATER)
        output = cls(transport, protocol)
        holder.append(output)
        return output

    def write_lines(self, lines: list[bytes]) -> None:
        lines.append(b"")
        self.write(b"\n".join(lines))

    def write(self, data: bytes) -> None:
        if self.broken or self.transport.is_closing():
            return
        self.transport.write(data)

    async def aclose(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
        await self.protocol.lost


async def open_output(fd: int, client: ClientProtocol) -> Output:
    """stdout for received lines: asynchronous with flow control on a pipe, else blocking.

    Lines are escaped when ``fd`` is a terminal. The caller restores blocking
    mode on ``fd`` afterwards (see :func:`run_pipe`).
    """
    if _is_pipe(fd):
        return await _PipeOutput.open(fd, client, client.abort)
    return _BlockingOutput(fd, escape=os.isatty(fd))


# -- stdin -----------------------------------------------------------------------


class Feeder(Protocol):
    """Where stdin's chunks go."""

    def feed(self, data: bytes) -> None: ...

    def eof(self, error: OSError | None = None) -> None: ...


async def open_input(fd: int, feeder: Feeder) -> tuple[_Pausable, Callable[[], None]]:
    """Start feeding ``fd`` to ``feeder``: what pauses it, and what stops it."""
    if _is_pipe(fd):
        loop = asyncio.get_running_loop()
        pipe = open(fd, "rb", buffering=0, closefd=False)  # noqa: SIM115
        transport, _ = await loop.connect_read_pipe(lambda: _StdinPipeProtocol(feeder), pipe)
        return transport, transport.close
    reader = _ThreadReader(fd, feeder)
    reader.start()
    return reader, reader.close


class _Input:
    """Feeds stdin to the connection; ``done`` resolves at end of input."""

    def __init__(
        self, client: ClientProtocol, newline: bytes, transcript: Transcript | None
    ) -> None:
        self.client = client
        self.ends = LineEnds(newline)
        self.transcript = transcript
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: OSError | None = None
        self._partial = b""  # for the transcript: the unfinished last line

    def feed(self, data: bytes) -> None:
        if self.done.done():
            return
        data = self.ends.convert(data)
        if data:
            if self.transcript is not None:
                lines = (self._partial + data).split(self.ends.newline)
                self._partial = lines.pop()
                self.transcript.sent(lines)
            self.client.send_data(data)

    def eof(self, error: OSError | None = None) -> None:
        if self.done.done():
            return
        self.error = error
        tail = self.ends.finish()
        if tail:
            self.client.send_data(tail)
        if self.transcript is not None:
            if self._partial:
                self.transcript.sent([self._partial])
            self.transcript.note("end of input")
        self.done.set_result(None)


class _StdinPipeProtocol(asyncio.Protocol):
    def __init__(self, feeder: Feeder) -> None:
        self.feeder = feeder

    def data_received(self, data: bytes) -> None:
        self.feeder.feed(data)

    def eof_received(self) -> bool:
        self.feeder.eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.feeder.eof(exc if isinstance(exc, OSError) else None)


class _ThreadReader:
    """Reads a file (or a terminal, or a device) in a thread, a few chunks ahead at most."""

    def __init__(self, fd: int, feeder: Feeder) -> None:
        self.fd = fd
        self.feeder = feeder
        self.loop = asyncio.get_running_loop()
        self._slots = threading.Semaphore(4)
        self._go = threading.Event()
        self._go.set()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="linechat-stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def pause_reading(self) -> None:
        self._go.clear()

    def resume_reading(self) -> None:
        self._go.set()

    def close(self) -> None:
        self._stop = True
        self._go.set()

    def _run(self) -> None:
        while not self._stop:
            if not self._go.wait(0.5) or not self._slots.acquire(timeout=0.5):
                continue
            error: OSError | None = None
            try:
                data = os.read(self.fd, CHUNK)
            except OSError as exc:
                data, error = b"", exc
            try:
                self.loop.call_soon_threadsafe(self._deliver, data, error)
            except RuntimeError:  # the loop is closed: we are exiting
                return
            if not data:
                return

    def _deliver(self, data: bytes, error: OSError | None) -> None:
        self._slots.release()
        if data:
            self.feeder.feed(data)
        else:
            self.feeder.eof(error)


# -- the session -------------------------------------------------------------------


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def run_pipe(
    client: ClientProtocol,
    *,
    wait: float | None,
    transcript: Transcript | None = None,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> tuple[Ending, OSError | None]:
    """Send stdin, print what comes back, until the exchange is over.

    At end of input: half-close, then go on printing until the server closes,
    or until it has sent nothing for ``wait`` seconds (``None``: no limit).
    Returns how it ended, and a read error on stdin if there was one.
    """
    loop = asyncio.get_running_loop()
    restore: list[int] = []
    output: Output
    escape = False
    if _is_pipe(stdout_fd):
        restore.append(stdout_fd)
        output = await _PipeOutput.open(stdout_fd, client, client.abort)
    else:
        escape = os.isatty(stdout_fd)
        output = _BlockingOutput(stdout_fd, escape=escape)
    ends: ReceivedEnds | None = None
    if escape or transcript is not None:
        client.set_receiver(output.write_lines)  # line by line: escaped, or recorded
    else:
        ends = ReceivedEnds()
        convert, write = ends.convert, output.write
        client.set_raw_receiver(output.write_lines, lambda data: write(convert(data)))

    feeder = _Input(client, client.newline, transcript)
    stdin_transport: asyncio.ReadTransport | None = None
    reader: _ThreadReader | None = None
    try:
        if _is_pipe(stdin_fd):
            restore.append(stdin_fd)
            pipe = open(stdin_fd, "rb", buffering=0, closefd=False)  # noqa: SIM115
            stdin_transport, _ = await loop.connect_read_pipe(
                lambda: _StdinPipeProtocol(feeder), pipe
            )
            paused: _Pausable = stdin_transport
        else:
            reader = _ThreadReader(stdin_fd, feeder)
            reader.start()
            paused = reader

        def on_send_pause(pause: bool) -> None:
            if pause:
                paused.pause_reading()
            else:
                paused.resume_reading()

        client.on_send_pause = on_send_pause
        if client.send_paused:
            paused.pause_reading()

        await asyncio.wait({feeder.done, client.closed}, return_when=asyncio.FIRST_COMPLETED)
        if not client.closed.done():
            client.finish_sending()
            ending = await linger(client, wait)
        elif output.broken:
            ending = Ending.OUTPUT_CLOSED
        else:
            ending = Ending.SERVER_CLOSED
        if output.broken:
            ending = Ending.OUTPUT_CLOSED
    finally:
        client.on_send_pause = None
        if stdin_transport is not None:
            stdin_transport.close()
        if reader is not None:
            reader.close()
        if not client.closed.done():
            client.abort()
        if ends is not None:
            output.write(ends.finish())
        with contextlib.suppress(OSError):
            await output.aclose()
        for fd in restore:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
    return ending, feeder.error


async def linger(client: ClientProtocol, wait: float | None) -> Ending:
    """After the end of input: until the server closes, or is silent ``wait`` seconds."""
    if wait is None:
        await client.closed
        return Ending.SERVER_CLOSED
    since = time.monotonic()
    while True:
        if client.receive_paused:  # stdout is behind, not the server silent
            client.last_received = time.monotonic()
        remaining = max(since, client.last_received) + wait - time.monotonic()
        if remaining <= 0:
            client.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(client.closed), 5)
            return Ending.WAIT_EXPIRED
        try:
            await asyncio.wait_for(asyncio.shield(client.closed), remaining)
        except TimeoutError:
            continue
        return Ending.SERVER_CLOSED
