"""The floor for Python on a given event loop: a bare ``asyncio.Protocol`` echo.

Each chunk is split once (the unfinished tail is carried to the next chunk),
every reply of the chunk is built in one ``join`` and written with one
``transport.write``. No limits of any kind. A line holding only ``.`` closes.
Runs on asyncio or uvloop (``--loop``).
"""

from __future__ import annotations

import asyncio
from typing import cast

from _runner import run_server, serve_protocol


class BareEcho(asyncio.Protocol):
    __slots__ = ("tail", "transport")

    def __init__(self) -> None:
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: cast, do not check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.tail:
            data = self.tail + data
        lines = data.split(b"\r\n")
        self.tail = lines.pop()
        if not lines:
            return
        if b"." in lines:
            lines = lines[: lines.index(b".")]
            if lines:
                transport.write(b"You sent: " + b"\r\nYou sent: ".join(lines) + b"\r\n")
            transport.close()
            return
        transport.write(b"You sent: " + b"\r\nYou sent: ".join(lines) + b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int) -> None:
    await serve_protocol(BareEcho, port)


if __name__ == "__main__":
    run_server(serve, __doc__)
