"""asyncio streams echo server, as a competitor.

``asyncio.start_server``; per line: ``readuntil(b"\\r\\n")``, one ``write`` and
``await drain()``. A line holding only ``.`` closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from _runner import run_server, serve_streams


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError:
                break
            if line == b".\r\n":
                break
            writer.write(b"You sent: " + line)
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(port: int) -> None:
    await serve_streams(handle, port)


if __name__ == "__main__":
    run_server(serve, __doc__)
