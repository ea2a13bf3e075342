"""The seed's interactive client algorithm, as a benchmark competitor (lockstep).

Written from the seed's description (../shared/seed/): a ``ChatProtocol``
client that sends one line (read with blocking ``input()``), waits for the
answer, prints it, and only then reads and sends the next line. With the fix
from the seed's next entry: it waits until the connection is lost instead of
exiting as soon as ``main()`` returns.

    python bench/seed_client.py --port 8007 < lines.txt
"""

from __future__ import annotations

import argparse
import asyncio


class ChatProtocol(asyncio.Protocol):
    """Line framing as in the seed: a buffer cut at each CRLF."""

    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.delimiter in self.buffer:
            line, self.buffer = self.buffer.split(self.delimiter, 1)
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        raise NotImplementedError


class ChatClientProtocol(ChatProtocol):
    def __init__(self, lost: asyncio.Future[None]) -> None:
        super().__init__()
        self.lost = lost

    def write_line(self, line: str) -> None:
        assert self.transport is not None
        self.transport.write(line.encode())
        self.transport.write(self.delimiter)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write_line(input())

    def line_received(self, line: bytes) -> None:
        print(line.decode())
        self.write_line(input())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def main(host: str, port: int) -> None:
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await asyncio.get_running_loop().create_connection(
        lambda: ChatClientProtocol(lost), host=host, port=port
    )
    await lost


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8007)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
