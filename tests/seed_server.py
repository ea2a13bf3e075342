"""A test peer: the seed's echo server, rewritten from its description (not linechat's code).

The seed's server is an ``asyncio.Protocol`` that buffers what arrives, cuts
it at each CRLF, answers every line ``You sent: <line>`` + CRLF, and closes
the connection on a line holding only ``.``. Run it as a script: it prints
``listening on 127.0.0.1:PORT`` on stderr (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys


class SeedChatProtocol(asyncio.Protocol):
    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(self.delimiter)
        for line in lines:
            if self.transport is None or self.transport.is_closing():
                return
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        assert self.transport is not None
        if line == b".":
            self.transport.close()
        else:
            self.transport.write(b"You sent: " + line + self.delimiter)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SeedChatProtocol, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    print(f"seed server: listening on 127.0.0.1:{bound}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8007)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().port))
