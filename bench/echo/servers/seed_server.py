"""The seed's echo server algorithm, rewritten from its description, as a competitor.

An ``asyncio.Protocol`` with a ``bytearray`` buffer: the delimiter search resumes
from a start offset, the rest of the buffer is copied once per line, and every
line costs three ``transport.write`` calls. A line holding only ``.`` closes.
"""

from __future__ import annotations

import asyncio
from typing import cast

from _runner import run_server, serve_protocol


class ChatProtocol(asyncio.Protocol):
    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.start = 0  # where the next delimiter search begins

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: cast, do not check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            index = self.buffer.find(self.delimiter, self.start)
            if index < 0:
                self.start = max(0, len(self.buffer) - len(self.delimiter) + 1)
                return
            line = bytes(self.buffer[:index])
            # The seed's cost: the rest of the buffer is copied for every line.
            self.buffer = self.buffer[index + len(self.delimiter) :]
            self.start = 0
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        assert self.transport is not None
        if line == b".":
            self.transport.close()
            return
        self.transport.write(b"You sent: ")
        self.transport.write(line)
        self.transport.write(b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int) -> None:
    await serve_protocol(ChatProtocol, port)


if __name__ == "__main__":
    run_server(serve, __doc__)
