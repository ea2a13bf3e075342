"""A service whose handler fails on the line ``boom``, after writing a reply.

    python tests/failing_service.py --layer protocol|stream --loop asyncio|uvloop

Served through the public API (``LineServer``, ``start_server``) on a free
loopback port, announced on stderr as ``linechat serve`` does; any other line
is answered ``ok <line>``. The tests read the log for how the failure was told.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

import linechat
from linechat import LineProtocol, LineServer, LineStream


class Failing(LineProtocol):
    def line_received(self, line: bytes) -> None:
        if line == b"boom":
            self.write_line(b"written before the failure")
            raise RuntimeError("the service failed on purpose")
        self.write_line(b"ok " + line)


async def failing_handler(stream: LineStream) -> None:
    async for line in stream:
        if line == b"boom":
            stream.write_line(b"written before the failure")
            raise RuntimeError("the handler failed on purpose")
        stream.write_line(b"ok " + line)


async def main(layer: str) -> None:
    if layer == "stream":
        server = (await linechat.start_server(failing_handler, "127.0.0.1", 0)).server
    else:
        server = LineServer(Failing)
        await server.listen_tcp("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.shutdown(1.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer", choices=["protocol", "stream"], default="protocol")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(args.layer))
