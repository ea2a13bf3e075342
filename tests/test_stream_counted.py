"""Counted reads in the stream layer: a memcached-like handler, every way a payload arrives.

A ``set k 0 0 N`` line, then ``readexactly(N + 2)``: the value comes in the
same write as the command, or split at every kind of boundary; it is tiny,
bigger than a read slice (4 KiB: the lines are then taken a batch at a time),
or longer than the line limit (it is not a line: the handler reads it raw).
Driven sans-socket (``data_received`` by hand) and over loopback on both loops.
"""

from __future__ import annotations

import asyncio
import socket
import zlib

import pytest

import linechat
from linechat import LineStream

from .helpers import LOOPS, HandTransport, run_on

pytestmark = pytest.mark.timeout(120)

LIMIT = 8192  # the line limit these servers use
SIZES = [1, 5 * 1024, 100 * 1024, LIMIT + 1]


async def memcached_like(stream: LineStream) -> None:
    """``set k 0 0 N`` + a counted value; ``get`` answers ``END``."""
    while (line := await stream.readline()) is not None:
        parts = line.split()
        if parts[:1] == [b"set"]:
            size = int(parts[4])
            data = await stream.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                stream.write_line(b"CLIENT_ERROR bad data chunk")
                continue
            stream.write_line(b"STORED %d %d" % (size, zlib.crc32(data[:-2])))
        else:
            stream.write_line(b"END " + line)


def request(size: int) -> tuple[bytes, int, bytes]:
    """The request bytes, the command line's length, and the replies expected."""
    value = bytes(range(97, 123)) * (size // 26 + 1)
    value = value[:size]
    command = b"set k 0 0 %d\r\n" % size
    data = command + value + b"\r\nget k\r\n"
    replies = b"STORED %d %d\r\nEND get k\r\n" % (size, zlib.crc32(value))
    return data, len(command), replies


def splits(size: int, command: int) -> list[int | None]:
    """Where to cut the request in two: each kind of boundary (None: one write)."""
    value_end = command + size
    cuts: list[int | None] = [
        None,
        3,  # inside the command
        command - 1,  # between the command's CR and LF
        command,  # right after the command
        command + size // 2,  # inside the value
        value_end,  # before the value's CRLF
        value_end + 1,  # between its CR and LF
        value_end + 2,  # after the value
        value_end + 5,  # inside the next line
    ]
    return [c for c in dict.fromkeys(cuts) if c is None or 0 < c < value_end + 9]


CASES = [(size, cut) for size in SIZES for cut in splits(size, request(size)[1])]


def case_id(case: tuple[int, int | None]) -> str:
    size, cut = case
    return f"{size}B-{'one-write' if cut is None else f'cut{cut}'}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_counted_value_sans_socket(case: tuple[int, int | None]) -> None:
    size, cut = case
    data, _, replies = request(size)
    pieces = [data] if cut is None else [data[:cut], data[cut:]]

    async def main() -> None:
        stream = LineStream(memcached_like, max_line_length=LIMIT)
        transport = HandTransport()
        stream.connection_made(transport)
        await asyncio.sleep(0)  # the handler starts and waits for a line
        for piece in pieces:
            stream.data_received(piece)
            for _ in range(5):
                await asyncio.sleep(0)
        for _ in range(50):  # a big read is framed a batch per turn
            if b"".join(transport.sent) == replies:
                break
            await asyncio.sleep(0)
        assert b"".join(transport.sent) == replies
        assert stream.task is not None and not stream.task.done()
        stream.connection_lost(None)
        await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_counted_values_over_loopback(loop: str) -> None:
    """Every size and cut on one server, each on its own connection."""

    async def main() -> None:
        server = await linechat.start_server(memcached_like, "127.0.0.1", 0, max_line_length=LIMIT)
        port = server.sockets[0].getsockname()[1]
        async with server:
            for size, cut in CASES:
                data, _, replies = request(size)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for piece in [data] if cut is None else [data[:cut], data[cut:]]:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                got = await asyncio.wait_for(reader.readexactly(len(replies)), 10)
                assert got == replies, (size, cut)
                writer.close()
                await writer.wait_closed()

    run_on(loop, main)


# -- input that arrives while an over-long line waits for the handler ----------------------


async def slow_resyncing(stream: LineStream) -> None:
    """Answers each line after a pause; an over-long line gets an error line and resync()."""
    while True:
        try:
            line = await stream.readline()
        except linechat.LineTooLong:
            stream.write_line(b"ERROR line too long")
            stream.resync()
            continue
        if line is None:
            return
        await asyncio.sleep(0.05)  # busy elsewhere: no read waits while input arrives
        stream.write_line(b"OK " + line)


def test_input_after_an_over_long_line_waits_sans_socket() -> None:
    """More input while the handler is not reading and the framer stopped at an
    over-long line: kept, in order, for after resync() (it was a ProtocolError)."""

    async def main() -> None:
        stream = LineStream(slow_resyncing, max_line_length=64)
        transport = HandTransport()
        stream.connection_made(transport)
        await asyncio.sleep(0)
        stream.data_received(b"a\r\n" + b"x" * 100)  # "a", then the start of a too-long line
        await asyncio.sleep(0)  # the handler has "a" and sleeps
        stream.data_received(b"x" * 100 + b"\r\nb\r\n")
        stream.data_received(b"c\r\n")
        for _ in range(100):
            if b"".join(transport.sent).count(b"\r\n") >= 4:
                break
            await asyncio.sleep(0.02)
        assert b"".join(transport.sent) == b"OK a\r\nERROR line too long\r\nOK b\r\nOK c\r\n"
        stream.connection_lost(None)
        await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_input_after_an_over_long_line_waits_over_loopback(loop: str) -> None:
    async def main() -> None:
        server = await linechat.start_server(slow_resyncing, "127.0.0.1", 0, max_line_length=64)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"a\r\n" + b"x" * 100)
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"x" * 100 + b"\r\nb\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"c\r\n")
            writer.write_eof()
            got = await asyncio.wait_for(reader.read(), 20)
            writer.close()
        assert got == b"OK a\r\nERROR line too long\r\nOK b\r\nOK c\r\n"

    run_on(loop, main)
