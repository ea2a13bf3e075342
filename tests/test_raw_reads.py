"""The protocol layer's counted raw reads over a real loopback socket, however the bytes arrive.

A toy protocol mixes lines, ``read_raw`` (a payload longer than the line
limit, CRLF inside it, a read chained from ``raw_received``) and ``hold``;
the replies must be the same whether the stream comes in one write or cut
into pieces, and the same as a straight parse of the script says.
"""

from __future__ import annotations

import asyncio

import pytest

from linechat import LineProtocol

LIMIT = 16


class Toy(LineProtocol):
    """``raw N``: N bytes; ``twice N``: N bytes, twice; ``hold``: a pause; else echo."""

    def __init__(self) -> None:
        super().__init__(max_line_length=LIMIT)
        self.chain = 0

    def line_received(self, line: bytes) -> None:
        verb, _, arg = line.partition(b" ")
        if verb == b"raw":
            self.read_raw(int(arg))
        elif verb == b"twice":
            self.chain = int(arg)
            self.read_raw(int(arg))
        elif verb == b"hold":
            self.hold()
            asyncio.get_running_loop().call_later(0.01, self.release)
            self.write_line(b"HELD")
        else:
            self.write_line(b"LINE " + line)

    def raw_received(self, data: bytes) -> None:
        self.write_line(b"RAW %d %r" % (len(data), data))
        if self.chain:
            n, self.chain = self.chain, 0
            self.read_raw(n)

    def line_too_long(self, exc: Exception) -> None:
        self.write_line(b"TOO LONG")
        self.framer.resync()


LONG = b"0123456789\r\nabcdefghij\r\n" * 3  # 72 bytes, "lines" of 10 inside, over the limit
SCRIPT = [
    (b"raw 72\r\n" + LONG, [b"RAW 72 %r" % LONG]),
    (b"a\r\n", [b"LINE a"]),
    (b"raw 30\r\n" + b"x" * 30, [b"RAW 30 %r" % (b"x" * 30)]),
    (b"twice 3\r\nabcdef", [b"RAW 3 b'abc'", b"RAW 3 b'def'"]),
    (b"hold\r\n", [b"HELD"]),
    (b"raw 0\r\n", [b"RAW 0 b''"]),
    (b"b\r\n", [b"LINE b"]),
    (b"y" * 40 + b"\r\n", [b"TOO LONG"]),
    (b"c\r\n", [b"LINE c"]),
]
STREAM = b"".join(part for part, _ in SCRIPT)
EXPECTED = b"".join(line + b"\r\n" for _, replies in SCRIPT for line in replies)


async def exchange(pieces: list[bytes]) -> bytes:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Toy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.002)  # most pieces arrive as reads of their own
        return await asyncio.wait_for(reader.readexactly(len(EXPECTED)), 10)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("cut", [0, 1, 5, 9, 23])
def test_replies_do_not_depend_on_how_the_stream_is_cut(cut: int) -> None:
    """cut 0: the whole stream in one write; else pieces of ``cut`` bytes."""
    pieces = [STREAM[i : i + cut] for i in range(0, len(STREAM), cut)] if cut else [STREAM]
    assert asyncio.run(exchange(pieces)) == EXPECTED


def test_each_command_with_its_payload_in_one_write() -> None:
    """The usual shape (a command and its payload in one read): read_after()'s fast path."""
    assert asyncio.run(exchange([part for part, _ in SCRIPT])) == EXPECTED
