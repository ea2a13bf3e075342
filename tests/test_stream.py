"""The stream layer as a library: clients and servers over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

import linechat
from linechat import ConnectionClosed, IdleTimeout, LineStream, LineTooLong, ProtocolError

from .conftest import read_all, require_tool
from .helpers import LOOPS, HandTransport, run_on

pytestmark = pytest.mark.timeout(60)


def run(coro_fn: Callable[[], object]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 30))  # type: ignore[arg-type]


async def serving(handler: Callable[[LineStream], object], **options: object) -> tuple[object, int]:
    server = await linechat.start_server(handler, "127.0.0.1", 0, **options)  # type: ignore[arg-type]
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def connected(
    handler: Callable[[LineStream], object], **options: object
) -> AsyncIterator[LineStream]:
    """A client stream to a fresh server running ``handler``; closed, then the server, after."""
    server, port = await serving(handler, **options)
    async with server:  # type: ignore[attr-defined]
        stream = await linechat.connect("127.0.0.1", port)
        yield stream
        await stream.aclose()


async def send_in_pieces(stream: LineStream, pieces: Iterable[bytes]) -> None:
    """Each piece written and drained, then a pause: its own chunk (most likely)."""
    for piece in pieces:
        stream.write_raw(piece)
        await stream.drain()
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- reading ---------------------------------------------------------------------


def test_readline_strips_delimiter_and_returns_none_at_end() -> None:
    async def handler(stream: LineStream) -> None:
        stream.write_lines([b"one", b"two"])

    async def main() -> None:
        async with connected(handler) as stream:
            assert await stream.readline() == b"one"
            assert await stream.readline() == b"two"
            assert await stream.readline() is None
            assert await stream.readline() is None
            assert not stream.unterminated

    run(main)


def test_unterminated_last_line_surfaces() -> None:
    async def handler(stream: LineStream) -> None:
        stream.write_raw(b"done\r\nno end")

    async def main() -> None:
        async with connected(handler) as stream:
            assert [line async for line in stream] == [b"done", b"no end"]
            assert stream.unterminated

    run(main)


def test_readexactly_mixes_with_lines_in_one_chunk() -> None:
    """The memcached shape: a command line, a counted payload, more lines, one write."""
    got: list[bytes] = []

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            if line.startswith(b"set "):
                size = int(line.split()[4])
                got.append(await stream.readexactly(size + 2))
                stream.write_line(b"STORED")
            else:
                got.append(line)
                stream.write_line(b"END")

    async def main() -> None:
        async with connected(handler) as stream:
            stream.write_raw(b"set k 0 0 9\r\nhel\r\nlo\r\n\r\nget k\r\n")
            assert await stream.readline() == b"STORED"
            assert await stream.readline() == b"END"
        assert got == [b"hel\r\nlo\r\n\r\n", b"get k"]

    run(main)


def test_readexactly_at_end_of_stream_raises() -> None:
    async def handler(stream: LineStream) -> None:
        stream.write_raw(b"abc")

    async def main() -> None:
        async with connected(handler) as stream:
            with pytest.raises(ConnectionClosed, match="3 bytes into a 5-byte read"):
                await stream.readexactly(5)

    run(main)


def test_line_too_long_then_resync() -> None:
    async def handler(stream: LineStream) -> None:
        stream.write_raw(b"ok\r\n" + b"x" * 50 + b"\r\nafter\r\n")

    async def main() -> None:
        server, port = await serving(handler)
        async with server:  # type: ignore[attr-defined]
            stream = await linechat.connect("127.0.0.1", port, max_line_length=10)
            assert await stream.readline() == b"ok"
            with pytest.raises(LineTooLong):
                await stream.readline()
            stream.resync()
            assert await stream.readline() == b"after"
            await stream.aclose()

    run(main)


def test_cancelled_readline_leaves_the_stream_usable() -> None:
    release = asyncio.Event()

    async def handler(stream: LineStream) -> None:
        await release.wait()
        stream.write_line(b"late")
        await stream.readline()

    async def main() -> None:
        async with connected(handler) as stream:
            pending = asyncio.ensure_future(stream.readline())
            await asyncio.sleep(0.1)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await stream.readline()
            release.set()
            assert await stream.readline() == b"late"

    run(main)


def test_idle_timeout_raises_idle_timeout() -> None:
    async def handler(stream: LineStream) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        server, port = await serving(handler)
        async with server:  # type: ignore[attr-defined]
            stream = await linechat.connect("127.0.0.1", port, idle_timeout=0.3)
            started = time.monotonic()
            with pytest.raises(IdleTimeout):
                await stream.readline()
            assert 0.25 < time.monotonic() - started < 3
            await server.shutdown(0.1)  # type: ignore[attr-defined]

    run(main)


def test_server_idle_timeout_closes_the_silent_peer() -> None:
    async def handler(stream: LineStream) -> None:
        await stream.readline()

    async def main() -> None:
        async with connected(handler, idle_timeout=0.3) as stream:
            assert await stream.readline() is None

    run(main)


def test_server_idle_timeout_spares_a_talking_peer() -> None:
    """One idle watch looks at every connection of the server: each is judged on its own."""

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            stream.write_line(line)

    async def main() -> None:
        server, port = await serving(handler, idle_timeout=0.6)
        async with server:  # type: ignore[attr-defined]
            silent = await linechat.connect("127.0.0.1", port)
            talker = await linechat.connect("127.0.0.1", port)
            closing = asyncio.ensure_future(silent.readline())
            # 1.2 s of a line every 0.1 s: the silent peer is closed 0.6 to 0.75 s in;
            # the talker has 0.5 s of slack between lines for a process slowed by load.
            for i in range(12):
                talker.write_line(b"%d" % i)
                assert await talker.readline() == b"%d" % i
                await asyncio.sleep(0.1)
            assert closing.done()
            assert await closing is None  # closed by the server meanwhile
            talker.write_line(b"still here")
            assert await talker.readline() == b"still here"
            await silent.aclose()
            await talker.aclose()

    run(main)


def test_connection_refused_is_oserror() -> None:
    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await linechat.connect("127.0.0.1", free_port())

    run(main)


def test_peer_reset_raises_connection_closed_after_every_line() -> None:
    async def handler(stream: LineStream) -> None:
        stream.write_line(b"first")
        await stream.drain()
        await asyncio.sleep(0.1)
        sock = stream.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        stream.abort()

    async def main() -> None:
        server, port = await serving(handler)
        async with server:  # type: ignore[attr-defined]
            stream = await linechat.connect("127.0.0.1", port)
            assert await stream.readline() == b"first"
            with pytest.raises(ConnectionClosed):
                await stream.readline()

    run(main)


# -- serving ---------------------------------------------------------------------


def test_a_failing_handler_closes_only_its_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(stream: LineStream) -> None:
        async for line in stream:
            if line == b"boom":
                raise RuntimeError("handler bug")
            stream.write_line(b"ok " + line)

    async def main() -> None:
        server, port = await serving(handler)
        async with server:  # type: ignore[attr-defined]
            calm = await linechat.connect("127.0.0.1", port)
            doomed = await linechat.connect("127.0.0.1", port)
            doomed.write_line(b"boom")
            with contextlib.suppress(ConnectionClosed):  # no answer: a FIN or a reset
                assert await doomed.readline() is None
            calm.write_line(b"still")
            assert await calm.readline() == b"ok still"
            await calm.aclose()
            await doomed.aclose()

    with caplog.at_level(logging.ERROR, logger="linechat.stream"):
        run(main)
    assert "handler failed" in caplog.text
    assert "handler bug" in caplog.text


def send_then_close(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def receive_until_closed(sock: socket.socket) -> bytes:
    pieces = []
    while piece := sock.recv(65536):
        pieces.append(piece)
    return b"".join(pieces)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_peer_that_reads_late_gets_every_reply(loop: str) -> None:
    """Its replies past the write high-water mark pause writing and reading; once it
    reads, both resume (reading too), and every line sent is answered."""
    streams: list[LineStream] = []
    count = 500_000  # 1.5 MB in, 8 MB of replies: more than the kernel's buffers hold

    async def handler(stream: LineStream) -> None:
        streams.append(stream)
        async for line in stream:
            stream.write_line(b"a reply to " + line)

    async def main() -> None:
        server, port = await serving(handler)
        async with server:  # type: ignore[attr-defined]
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(20)
                await asyncio.to_thread(sock.connect, ("127.0.0.1", port))
                sending = asyncio.ensure_future(
                    asyncio.to_thread(send_then_close, sock, b"x\r\n" * count)
                )
                # Read nothing until the server has paused writing (its replies
                # passed the mark; after a backlog the mark drops to 0, so the
                # transport may hold less than the usual mark by then).
                deadline = time.monotonic() + 30
                while not (streams and streams[0]._writing_paused):
                    assert time.monotonic() < deadline, "the server never paused writing"
                    await asyncio.sleep(0.01)
                received = await asyncio.to_thread(receive_until_closed, sock)
                await sending
        assert received == b"a reply to x\r\n" * count

    run_on(loop, main)


class StalledPeerTransport(HandTransport):
    """Takes replies until ``high`` bytes wait unsent, then pauses the stream's
    writing; notes how much input was buffered whenever reading resumed."""

    def __init__(self, stream: LineStream, high: int) -> None:
        super().__init__()
        self.stream, self.high = stream, high
        self.waiting, self.paused, self.reading = 0, False, True
        self.resumed_with: list[int] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.waiting += len(data)
        if self.waiting > self.high and not self.paused:
            self.paused = True
            self.stream.pause_writing()

    def drain(self) -> None:
        self.waiting = 0
        if self.paused:
            self.paused = False
            self.stream.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.waiting

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = 64 * 1024 if high is None else high
        if self.waiting > self.high and not self.paused:
            self.paused = True
            self.stream.pause_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.high // 4, self.high

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        self.resumed_with.append(self.stream.framer.buffered)


def test_a_backlog_is_handled_before_reading_resumes() -> None:
    """A big read (uvloop's 256 KiB) of short lines: reading pauses, writing
    pauses once replies pass the mark, and when the peer reads them the
    backlog is handled, and its replies taken, before the peer is read again:
    a read never lands on the last one's rest, nor waits with its replies."""

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            stream.write_line(b"a reply to " + line)

    async def main() -> None:
        stream = LineStream(handler)
        transport = StalledPeerTransport(stream, stream.write_high_water)
        stream.connection_made(transport)
        await asyncio.sleep(0)  # the handler starts and waits for a line
        count = 256 * 1024 // 3
        stream.data_received(b"x\r\n" * count + b"x")  # and part of a line
        for _ in range(50):
            await asyncio.sleep(0)
        assert transport.paused and not transport.reading
        assert stream.lines_out < count // 4  # replies past the mark wait for the peer
        for _ in range(10_000):
            if stream.lines_out == count:
                break
            transport.drain()  # the peer reads what was sent
            await asyncio.sleep(0)
        assert stream.lines_out == count
        transport.drain()  # the last replies: the peer is read again once it took them
        await asyncio.sleep(0)
        assert transport.reading
        assert transport.resumed_with == [1]  # once: every line handled, part of one left
        assert transport.high == stream.write_high_water
        stream.connection_lost(None)
        await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 30))


# -- the handler's task: what asyncio code inside a handler relies on -------------


def test_handler_can_use_asyncio_timeout_taskgroup_and_sleep() -> None:
    """The handler runs without an asyncio.Task, yet is the current task for asyncio."""

    async def handler(stream: LineStream) -> None:
        assert asyncio.current_task() is not None
        try:
            async with asyncio.timeout(0.2):
                await stream.readline()  # the client stays silent
        except TimeoutError:
            stream.write_line(b"timed out")
        async with asyncio.timeout(5):  # a timeout that does not expire
            line = await stream.readline()
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.01)  # a timer future
        async with asyncio.TaskGroup() as group:
            child = group.create_task(asyncio.sleep(0.01, result=b"child"))
        stream.write_line(b"got " + (line or b"?") + b" " + child.result())
        lock = asyncio.Lock()
        async with lock:
            stream.write_line(b"next: " + (await stream.readline() or b"?"))

    async def main() -> None:
        async with connected(handler) as stream:
            assert await stream.readline() == b"timed out"
            stream.write_line(b"one")
            assert await stream.readline() == b"got one child"
            stream.write_line(b"two")
            assert await stream.readline() == b"next: two"
            assert await stream.readline() is None  # the handler returned: closed

    run(main)


@pytest.mark.parametrize("resumed_from", ["loop", "data_received"])
def test_handlers_keep_their_own_context_variables(resumed_from: str) -> None:
    """Each handler's context holds, stepped from the loop or handed each line by data_received."""
    name: contextvars.ContextVar[bytes] = contextvars.ContextVar("name")

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            if line.startswith(b"I am "):
                name.set(line[5:])
            if resumed_from == "loop":
                await asyncio.sleep(0.01)  # steps from the loop, not from data_received
            # else no other await: every step is a hand-over
            stream.write_line(name.get(b"nobody"))

    async def main() -> None:
        server, port = await serving(handler)
        async with server:  # type: ignore[attr-defined]
            a = await linechat.connect("127.0.0.1", port)
            b = await linechat.connect("127.0.0.1", port)
            for stream, line, answer in [
                (a, b"I am a", b"a"),
                (b, b"who?", b"nobody"),
                (b, b"I am b", b"b"),
                (a, b"who?", b"a"),
                (b, b"who?", b"b"),
            ]:
                stream.write_line(line)
                assert await stream.readline() == answer
            await a.aclose()
            await b.aclose()

    run(main)


def test_handler_reads_awaited_by_other_tasks_and_cancelled_mid_wait() -> None:
    """wait_for and ensure_future await the handler's reads from real Tasks."""

    async def handler(stream: LineStream) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.readline(), 0.1)  # cancelled: consumes nothing
        reader = asyncio.ensure_future(stream.readline())
        stream.write_line(b"ready")
        stream.write_line(b"task read " + (await reader or b"?"))
        async for line in stream:
            stream.write_line(b"loop read " + line)

    async def main() -> None:
        async with connected(handler) as stream:
            assert await stream.readline() == b"ready"
            stream.write_lines([b"first", b"second"])
            assert await stream.readline() == b"task read first"
            assert await stream.readline() == b"loop read second"

    run(main)


def test_server_shutdown_ends_a_handler_waiting_for_input() -> None:
    ended: list[str] = []

    async def handler(stream: LineStream) -> None:
        try:
            assert await stream.readline() is None
            ended.append("none")
        except ConnectionClosed:
            ended.append("closed")

    async def main() -> None:
        server, port = await serving(handler)
        stream = await linechat.connect("127.0.0.1", port)
        await asyncio.sleep(0.05)
        await server.shutdown(1.0)  # type: ignore[attr-defined]
        assert await stream.readline() is None
        await stream.aclose()

    run(main)
    assert len(ended) == 1


# -- the hot path: a line handed straight into the read the handler waits in --------
# (data_received resumes the handler with the line; its next read, with nothing
# in hand, waits at once. Every feature must hold on that path too.)


def test_lines_in_pieces_and_in_batches_reach_the_handler_in_order() -> None:
    async def handler(stream: LineStream) -> None:
        async for line in stream:
            stream.write_line(b"got " + line)

    async def main() -> None:
        async with connected(handler) as stream:
            await send_in_pieces(
                stream, [b"on", b"e\r", b"\ntwo\r\nthr", b"ee\r\n", b"4\r\n5\r\n6\r\n"]
            )
            for expected in (b"one", b"two", b"three", b"4", b"5", b"6"):
                assert await stream.readline() == b"got " + expected

    run(main)


def test_timeout_on_a_read_that_waits_after_a_hand_over() -> None:
    """Cancelled where it waits, the read consumes nothing and the next read may wait."""

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            if line == b"wait":
                try:
                    async with asyncio.timeout(0.1):
                        await stream.readline()  # the client stays silent
                except TimeoutError:
                    stream.write_line(b"timed out")
            else:
                stream.write_line(b"got " + line)

    async def main() -> None:
        async with connected(handler) as stream:
            stream.write_line(b"wait")
            assert await stream.readline() == b"timed out"
            stream.write_line(b"again")
            assert await stream.readline() == b"got again"
            stream.write_line(b"wait")
            assert await stream.readline() == b"timed out"

    run(main)


def test_an_over_long_line_after_good_ones_in_one_chunk_comes_in_order() -> None:
    async def handler(stream: LineStream) -> None:
        while True:
            try:
                line = await stream.readline()
            except LineTooLong:
                stream.write_line(b"too long")
                stream.resync()
                continue
            if line is None:
                return
            stream.write_line(b"got " + line)

    async def main() -> None:
        async with connected(handler, max_line_length=10) as stream:
            stream.write_line(b"a")
            assert await stream.readline() == b"got a"  # the handler waits in a hand-over
            stream.write_raw(b"b\r\n" + b"x" * 50 + b"\r\nc\r\n")
            for expected in (b"got b", b"too long", b"got c"):
                assert await stream.readline() == expected

    run(main)


def test_what_a_handler_writes_before_it_raises_is_delivered() -> None:
    async def handler(stream: LineStream) -> None:
        async for line in stream:
            stream.write_line(b"ok " + line)
            if line == b"boom":
                stream.write_line(b"last words")
                raise RuntimeError("handler bug")

    async def main() -> None:
        server, port = await serving(handler)
        async with server:  # type: ignore[attr-defined]
            for chunks in ([b"one\r\n", b"boom\r\n"], [b"one\r\nboom\r\nlost\r\n"]):
                stream = await linechat.connect("127.0.0.1", port)
                await send_in_pieces(stream, chunks)
                answers = [line async for line in stream]
                assert answers == [b"ok one", b"ok boom", b"last words"]
                await stream.aclose()

    logging.getLogger("linechat.stream").setLevel(logging.CRITICAL)  # the expected error
    try:
        run(main)
    finally:
        logging.getLogger("linechat.stream").setLevel(logging.NOTSET)


def test_counted_payload_in_a_later_chunk_after_a_hand_over() -> None:
    async def handler(stream: LineStream) -> None:
        async for line in stream:
            if line.startswith(b"set "):
                data = await stream.readexactly(int(line[4:]) + 2)
                stream.write_line(b"STORED " + data.replace(b"\r\n", b"|"))
            else:
                stream.write_line(b"got " + line)

    async def main() -> None:
        async with connected(handler) as stream:
            await send_in_pieces(stream, [b"set 7\r\n", b"he\r\n", b"llo\r\nnext\r\n"])
            assert await stream.readline() == b"STORED he|llo|"
            assert await stream.readline() == b"got next"

    run(main)


def test_shutdown_ends_a_handler_waiting_after_a_hand_over() -> None:
    ended: list[str] = []

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            stream.write_line(b"got " + line)
        ended.append("end of stream")

    async def main() -> None:
        server, port = await serving(handler)
        stream = await linechat.connect("127.0.0.1", port)
        stream.write_line(b"hi")
        assert await stream.readline() == b"got hi"
        await server.shutdown(1.0)  # type: ignore[attr-defined]
        assert await stream.readline() is None
        await stream.aclose()

    run(main)
    assert ended == ["end of stream"]


def test_a_second_read_while_the_handler_waits_is_refused() -> None:
    async def handler(stream: LineStream) -> None:
        other: asyncio.Future[bytes | None] | None = None
        async for _ in stream:
            if other is None:
                other = asyncio.ensure_future(stream.readline())  # runs while we wait below
                stream.write_line(b"started")
            else:
                error = other.exception()
                stream.write_line(str(error).encode())

    async def main() -> None:
        async with connected(handler) as stream:
            stream.write_line(b"one")
            assert await stream.readline() == b"started"
            await asyncio.sleep(0.05)
            stream.write_line(b"two")
            assert await stream.readline() == b"another read is already waiting on this stream"

    run(main)


def test_unix_socket_both_sides(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            stream.write_line(line.upper())

    async def main() -> None:
        server = await linechat.start_server(handler, unix=path)
        async with server:
            stream = await linechat.connect(unix=path)
            stream.write_line("hello")
            assert await stream.readline() == b"HELLO"
            assert stream.peer in ("", None) or isinstance(stream.peer, str)
            await stream.aclose()

    run(main)


def test_serve_forever_is_cancellable() -> None:
    async def handler(stream: LineStream) -> None:
        stream.write_line(b"hi")

    async def main() -> None:
        server, port = await serving(handler)
        task = asyncio.create_task(server.serve_forever())  # type: ignore[attr-defined]
        stream = await linechat.connect("127.0.0.1", port)
        assert await stream.readline() == b"hi"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(OSError):
            await linechat.connect("127.0.0.1", port)

    run(main)


# -- STARTTLS ----------------------------------------------------------------------


def smtp_handler(context: ssl.SSLContext) -> Callable[[LineStream], Coroutine[Any, Any, None]]:
    """A tiny SMTP-greeting server: EHLO, STARTTLS, then any command, QUIT."""

    async def handler(stream: LineStream) -> None:
        stream.write_line("220 linechat.test ESMTP ready")
        async for line in stream:
            command = line.upper()
            if command.startswith((b"EHLO", b"HELO")):
                stream.write_lines([b"250-linechat.test", b"250 STARTTLS"])
            elif command == b"STARTTLS" and stream.tls is None:
                stream.write_line(b"220 go ahead")
                try:
                    await stream.start_tls(context)
                except ProtocolError:
                    stream.write_line(b"554 plaintext after STARTTLS refused")
                    return
            elif command == b"QUIT":
                stream.write_line(b"221 bye")
                return
            else:
                secure = b" over TLS" if stream.tls is not None else b" in the clear"
                stream.write_line(b"250 got " + line + secure)

    return handler


@pytest.fixture
def tls_contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


@pytest.fixture
def smtp_server(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[int]:
    """The SMTP-greeting server in a thread with its own event loop."""
    import threading

    loop = asyncio.new_event_loop()
    ready: list[int] = []
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            server = await linechat.start_server(smtp_handler(tls_contexts[0]), "127.0.0.1", 0)
            ready.append(server.sockets[0].getsockname()[1])
            started.set()
            await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield ready[0]

    def cancel_all() -> None:
        for task in asyncio.all_tasks(loop):
            task.cancel()

    loop.call_soon_threadsafe(cancel_all)
    thread.join(10)
    loop.close()


def test_starttls_with_openssl_s_client(smtp_server: int, certificate: tuple[Path, Path]) -> None:
    openssl = require_tool("openssl")
    child = pexpect.spawn(
        openssl,
        [
            *("s_client", "-starttls", "smtp", "-crlf", "-quiet"),
            *("-CAfile", str(certificate[0]), "-connect", f"127.0.0.1:{smtp_server}"),
        ],
        timeout=15,
    )
    try:
        child.expect("verify return:1")
        child.sendline("MAIL FROM:<a@b>")
        child.expect(r"250 got MAIL FROM:<a@b> over TLS")
        child.sendline("QUIT")
        child.expect("221 bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_starttls_client_side(
    smtp_server: int, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    async def main() -> None:
        stream = await linechat.connect("127.0.0.1", smtp_server)
        assert (await stream.readline() or b"").startswith(b"220")
        stream.write_line("EHLO me")
        assert await stream.readline() == b"250-linechat.test"
        assert await stream.readline() == b"250 STARTTLS"
        stream.write_line("STARTTLS")
        assert await stream.readline() == b"220 go ahead"
        await stream.start_tls(tls_contexts[1], server_hostname="localhost")
        assert stream.tls is not None and stream.tls.version() is not None
        stream.write_line("NOOP")
        assert await stream.readline() == b"250 got NOOP over TLS"
        stream.write_line("QUIT")
        assert await stream.readline() == b"221 bye"
        await stream.aclose()

    run(main)


def test_starttls_refuses_pipelined_plaintext(smtp_server: int) -> None:
    """CVE-2011-0411: commands sent with STARTTLS must not run inside TLS."""
    with socket.create_connection(("127.0.0.1", smtp_server), timeout=10) as sock:
        sock.sendall(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<injected>\r\n")
        reply = read_all(sock)
    assert b"554 plaintext after STARTTLS refused" in reply
    assert b"injected" not in reply


# -- real servers no one here wrote -------------------------------------------------


def test_counted_reads_against_memcached(memcached_port: int) -> None:
    async def main() -> None:
        stream = await linechat.connect("127.0.0.1", memcached_port)
        payload = b"two\r\nlines"
        stream.write_raw(b"set k 0 0 %d\r\n%s\r\nget k\r\n" % (len(payload), payload))
        assert await stream.readline() == b"STORED"
        header = (await stream.readline() or b"").split()
        assert header[:3] == [b"VALUE", b"k", b"0"]
        assert await stream.readexactly(int(header[3]) + 2) == payload + b"\r\n"
        assert await stream.readline() == b"END"
        await stream.aclose()

    run(main)


def test_write_eof_half_closes_and_the_answers_still_come() -> None:
    from linechat.services.echo import FRAMING, echo_handler

    async def main() -> None:
        server = await linechat.start_server(echo_handler, "127.0.0.1", 0, **FRAMING)
        async with server:
            port = server.sockets[0].getsockname()[1]
            stream = await linechat.connect("127.0.0.1", port)
            stream.write_lines([b"one", b"two"])
            stream.write_raw(b"unterminated")
            stream.write_eof()
            answers = [line async for line in stream]
            assert answers == [b"You sent: one", b"You sent: two", b"You sent: unterminated"]
            await stream.aclose()

    run(main)


def test_input_handed_over_from_inside_a_task_runs_the_handler_next_turn() -> None:
    """asyncio allows one current task: input delivered from inside one is not lost."""

    async def handler(stream: LineStream) -> None:
        async for line in stream:
            stream.write_line(b"got " + line)

    async def main() -> None:
        stream = LineStream(handler)
        transport = HandTransport()
        stream.connection_made(transport)
        await asyncio.sleep(0)  # the handler starts, and waits for a line
        assert stream.task is not None and stream.task.waiting_for_input
        stream.data_received(b"one\r\n")  # from inside main()'s Task
        for _ in range(3):
            await asyncio.sleep(0)
        assert b"".join(transport.sent) == b"got one\r\n"
        stream.connection_lost(None)
        await asyncio.sleep(0)

    run(main)
