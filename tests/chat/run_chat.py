"""Run the chat service on a loopback port without the runner: `python run_chat.py [--opt value]...`.

Prints ``listening on 127.0.0.1:PORT`` once it listens. Only the public
service API is used: build the Service, serve what it yields.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from linechat.service import ServeContext
from linechat.services.chat import SERVICE


def parse(argv: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {option.key: option.default for option in SERVICE.options}
    types = {option.key: option.type for option in SERVICE.options}
    words = iter(argv)
    for word in words:
        key = word.removeprefix("--").replace("-", "_")
        options[key] = types[key](next(words))
    return options


async def main() -> None:
    options = parse(sys.argv[1:])
    context = ServeContext()
    assert SERVICE.check is not None
    SERVICE.check(options, context)
    async with SERVICE.build(options, context) as target:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: target(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
