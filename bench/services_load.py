"""Load generator for bench/services_bench.py: WHOIS queries or memcached get/set round trips.

Runs ``--conns`` clients on one event loop (uvloop when installed) for
``--warmup`` then ``--seconds`` seconds; prints ``start`` when the measured
window opens, then one JSON line: the operations completed in the window and
the errors (any wrong reply byte is an error, and the run is void).

    python bench/services_load.py whois --port P --query example.com --expect FILE
    python bench/services_load.py memcache --port P
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any


class Counter:
    def __init__(self) -> None:
        self.done = 0
        self.errors = 0
        self.stopping = False


class WhoisClient(asyncio.Protocol):
    """One query per connection: send, read to EOF, compare, start the next one."""

    def __init__(self, slot: WhoisSlot) -> None:
        self.slot = slot
        self.data = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.slot.query)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.finished(bytes(self.data))


class WhoisSlot:
    def __init__(self, port: int, query: bytes, expect: bytes, counter: Counter) -> None:
        self.port, self.query, self.expect, self.counter = port, query, expect, counter
        self.idle = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        if self.counter.stopping:
            if not self.idle.done():
                self.idle.set_result(None)
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.create_connection(lambda: WhoisClient(self), "127.0.0.1", self.port)
        )
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        if task.exception() is not None:
            self.counter.errors += 1
            asyncio.get_running_loop().call_later(0.01, self.start)

    def finished(self, answer: bytes) -> None:
        if answer == self.expect:
            self.counter.done += 1
        else:
            self.counter.errors += 1
        self.start()


class MemcacheClient(asyncio.Protocol):
    """Alternate set and get of its own key, one command in flight, every reply checked."""

    def __init__(self, number: int, counter: Counter) -> None:
        self.counter = counter
        key = b"key:%06d" % number
        value = (b"%032d" % number)[:32]
        self.set_command = b"set %s 0 0 32\r\n%s\r\n" % (key, value)
        self.get_command = b"get %s\r\n" % key
        self.get_reply = b"VALUE %s 0 32\r\n%s\r\nEND\r\n" % (key, value)
        self.buffer = b""
        self.setting = True
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if self.counter.stopping:
            self.transport.close()
            return
        self.transport.write(self.set_command if self.setting else self.get_command)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        expected = b"STORED\r\n" if self.setting else self.get_reply
        if len(self.buffer) < len(expected):
            return
        if self.buffer != expected:
            self.counter.errors += 1
        else:
            self.counter.done += 1
        self.buffer = b""
        self.setting = not self.setting
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def run(args: argparse.Namespace) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    counter = Counter()
    waits: list[asyncio.Future[None]] = []
    if args.mode == "whois":
        with open(args.expect, "rb") as file:
            expect = file.read()
        query = args.query.encode() + b"\r\n"
        for _ in range(args.conns):
            slot = WhoisSlot(args.port, query, expect, counter)
            slot.start()
            waits.append(slot.idle)
    else:
        for number in range(args.conns):
            _, client = await loop.create_connection(
                lambda n=number: MemcacheClient(n, counter),  # type: ignore[misc]
                "127.0.0.1",
                args.port,
            )
            waits.append(client.closed)
    await asyncio.sleep(args.warmup)
    before, started = counter.done, time.perf_counter()
    print("start", flush=True)
    await asyncio.sleep(args.seconds)
    done, elapsed = counter.done - before, time.perf_counter() - started
    print(json.dumps({"ops": done, "seconds": elapsed, "errors": counter.errors}), flush=True)
    counter.stopping = True
    await asyncio.wait(waits, timeout=5)
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["whois", "memcache"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--query", default="example.com")
    parser.add_argument("--expect", help="file holding the exact WHOIS answer")
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(run(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
