"""``LineProtocol.defer_replies``: a chunk's replies wait for the end of the loop's turn.

By hand: nothing is written while the turn's chunks are handled, then every
connection's replies in one pass. Over loopback sockets: many connections,
input cut anywhere, counted reads and a close, the replies complete and in
order, as without the option.
"""

from __future__ import annotations

import asyncio

import pytest

from linechat import LineProtocol

from .helpers import HandTransport


class Deferred(LineProtocol):
    """``raw N``: N bytes answered ``RAW``; ``quit``: ``BYE`` and close; else echoed."""

    defer_replies = True

    def line_received(self, line: bytes) -> None:
        if line.startswith(b"raw "):
            self.read_raw(int(line[4:]))
        elif line == b"quit":
            self.write_line(b"BYE")
            self.close()
        else:
            self.write_line(b"LINE " + line)

    def raw_received(self, data: bytes) -> None:
        self.write_line(b"RAW " + data)


class Immediate(Deferred):
    defer_replies = False


def test_replies_leave_at_the_end_of_the_turn() -> None:
    async def main() -> None:
        protocols = [Deferred() for _ in range(3)]
        transports = [HandTransport() for _ in protocols]
        for protocol, transport in zip(protocols, transports, strict=True):
            protocol.connection_made(transport)
        for number, protocol in enumerate(protocols):
            protocol.data_received(b"a%d\r\nraw 3\r\nxyz" % number)
            protocol.data_received(b"b\r\n")  # a second chunk in the same turn
        assert [t.sent for t in transports] == [[], [], []]
        await asyncio.sleep(0)  # the end of the turn
        for number, transport in enumerate(transports):
            assert transport.sent == [b"LINE a%d\r\nRAW xyz\r\nLINE b\r\n" % number]

    asyncio.run(main())


def test_without_the_option_replies_leave_with_their_chunk() -> None:
    async def main() -> None:
        protocol, transport = Immediate(), HandTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"a\r\n")
        assert transport.sent == [b"LINE a\r\n"]

    asyncio.run(main())


def test_a_close_sends_what_was_deferred_first() -> None:
    async def main() -> None:
        protocol, transport = Deferred(), HandTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"a\r\n")
        protocol.data_received(b"quit\r\nnot answered\r\n")
        assert transport.sent == [b"LINE a\r\nBYE\r\n"]
        await asyncio.sleep(0)
        assert transport.sent == [b"LINE a\r\nBYE\r\n"]

    asyncio.run(main())


async def client(port: int, number: int, cut: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = b"".join(b"line %d.%d\r\nraw 5\r\n%05d" % (number, i, i) for i in range(20))
    stream += b"quit\r\n"
    pieces = [stream[i : i + cut] for i in range(0, len(stream), cut)] if cut else [stream]
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # to the server's close
    finally:
        writer.close()


@pytest.mark.parametrize("cut", [0, 7, 64])
def test_many_connections_get_every_reply_in_order(cut: int) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Deferred, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.gather(*(client(port, n, cut) for n in range(20)))
        finally:
            server.close()
            await server.wait_closed()

    for number, replies in enumerate(asyncio.run(main())):
        expected = b"".join(b"LINE line %d.%d\r\nRAW %05d\r\n" % (number, i, i) for i in range(20))
        assert replies == expected + b"BYE\r\n"


class Settings(LineProtocol):
    """Every class-level setting of LineProtocol, set in a subclass's body."""

    too_long_reply = b"TOO LONG"
    coalesce_writes = True


def test_a_subclass_class_settings_are_used_in_both_builds() -> None:
    """In the compiled build an annotated attribute would be a native slot
    that keeps the base's default: the subclass's value must be the one read."""

    async def main() -> None:
        protocol, transport = Settings(max_line_length=4), HandTransport()
        protocol.connection_made(transport)
        protocol.write_line(b"outside a chunk")  # coalesce_writes: not sent yet
        assert transport.sent == []
        await asyncio.sleep(0)
        assert transport.sent == [b"outside a chunk\r\n"]
        protocol.data_received(b"too long\r\n")
        assert transport.sent[1:] == [b"TOO LONG\r\n"]

    asyncio.run(main())
