"""examples/memcache.py: differential against the real memcached, and pymemcache unchanged."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from examples.memcache import Cache, MemcacheProtocol
from linechat import LineServer

from .memcache_peers import VERSION_LINE, command_stream, exchange, real_memcached


@contextmanager
def example_server() -> Iterator[int]:
    """The example with a fresh cache, on a loopback port, in a thread of its own."""
    cls: type[MemcacheProtocol] = type(
        "FreshMemcache", (MemcacheProtocol,), {"__slots__": (), "cache": Cache()}
    )
    ready = threading.Event()
    port: list[int] = []
    stop: list[Callable[[], None]] = []

    async def main() -> None:
        server = LineServer(lambda: cls(lenient=True))
        await server.listen_tcp("127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop.append(lambda: loop.call_soon_threadsafe(done.set))
        ready.set()
        await done.wait()
        await server.shutdown(1.0)

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    try:
        assert ready.wait(10)
        yield port[0]
    finally:
        if stop:
            stop[0]()
        thread.join(10)


@pytest.mark.parametrize("seed", range(8))
def test_same_replies_as_memcached(seed: int) -> None:
    stream = command_stream(seed, 400)
    with real_memcached() as port:
        expected = exchange(port, stream)
    with example_server() as port:
        got = exchange(port, stream)
    assert VERSION_LINE.sub(b"VERSION x\r\n", got) == VERSION_LINE.sub(b"VERSION x\r\n", expected)
