"""The memcache example's Python cost per get/set round trip, without sockets.

Drives ``data_received`` of ``examples/memcache.py``'s ``MemcacheProtocol``
(configured as ``linechat serve`` configures it: its service defaults, the
300 s idle timeout) with the chunks the memcache benchmark's load produces
(``bench/services_load.py``): one connection alternating ``set KEY 0 0 32``
with its 32-byte value (one chunk: the command line and its data block) and
``get KEY`` (one chunk). The transport's ``write`` is a C no-op, so what is
measured is the Python work per round trip on top of the event loop's and
the kernel's. A round trip here is one ``set`` chunk plus one ``get`` chunk,
each answered (the load counts each command as a round trip: halve for that).

* ``--mode callgrind`` (default): instructions per set+get pair, exact and
  unaffected by load (two counts under ``valgrind --tool=callgrind``, the
  difference over the difference of pairs).
* ``--mode profile``: cProfile of many pairs, the functions by own time.
* ``--mode time``: CPU ns per pair, median of ``--runs``.

``--server floor`` drives the floor instead (``bench/memcache_floor.py``, a
bare Protocol that speaks just set and get): the least Python per pair.

    .venv/bin/python bench/memcache_hotpath.py
    .venv/bin/python bench/memcache_hotpath.py --mode profile
    .venv/bin/python bench/memcache_hotpath.py --server floor
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchlib import NullTransport, callgrind_instructions, run_as_callback  # noqa: E402
from memcache_floor import FloorMemcache  # noqa: E402

from examples.memcache import MemcacheProtocol  # noqa: E402
from linechat.service import defaults_of  # noqa: E402

T = TypeVar("T")


class Immediate(MemcacheProtocol):
    """The example with each chunk's replies written with it: what is counted is
    the Python work per chunk (``defer_replies`` only moves the write to the
    end of the loop's turn, which this driver, all in one callback, never ends)."""

    defer_replies = False


KEY = b"key:000007"
VALUE = b"%032d" % 7
SET = b"set %s 0 0 32\r\n%s\r\n" % (KEY, VALUE)
GET = b"get %s\r\n" % KEY
REPLIES = b"STORED\r\n" + b"VALUE %s 0 32\r\n%s\r\nEND\r\n" % (KEY, VALUE)


def make(
    sink: Callable[[bytes], Any] | None = None, server: str = "example"
) -> MemcacheProtocol | FloorMemcache:
    """A connected protocol, as ``linechat serve examples.memcache:MemcacheProtocol`` makes it."""
    proto: MemcacheProtocol | FloorMemcache
    if server == "floor":
        proto = FloorMemcache()
    else:
        options = {k: v for k, v in defaults_of(MemcacheProtocol).items() if k != "port"}
        proto = Immediate(**options, idle_timeout=300.0)
    proto.connection_made(NullTransport(sink))  # type: ignore[arg-type]
    return proto


def check(server: str) -> None:
    """The driver's chunks get the replies the load generator checks."""
    out: list[bytes] = []
    proto = make(out.append, server)
    proto.data_received(SET)
    proto.data_received(GET)
    if b"".join(out) != REPLIES:
        raise SystemExit(f"unexpected replies: {b''.join(out)!r}")


def driver(server: str) -> Callable[[int], None]:
    proto = make(server=server)
    receive = proto.data_received

    def run(n: int) -> None:
        for _ in range(n):
            receive(SET)
            receive(GET)

    return run


def in_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` as a loop callback, as a loop runs ``data_received``."""
    loop = asyncio.new_event_loop()
    try:
        return run_as_callback(loop, fn)
    finally:
        loop.close()


def child(pairs: int, server: str) -> None:
    in_loop(lambda: driver(server)(pairs))


def callgrind(low: int, high: int, server: str) -> float:
    argv = [sys.executable, __file__, "--server", server, "--child"]
    low_total, high_total = (callgrind_instructions([*argv, str(n)]) for n in (low, high))
    return (high_total - low_total) / (high - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["callgrind", "profile", "time"], default="callgrind")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--server", choices=["example", "floor"], default="example")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.server)
        return 0
    in_loop(lambda: check(args.server))
    if args.mode == "callgrind":
        figure = callgrind(1_000, 6_000, args.server)
        print(f"instructions per set+get pair: {figure:,.0f}")
    elif args.mode == "profile":
        profiler = cProfile.Profile()
        in_loop(lambda: profiler.runcall(driver(args.server), args.pairs))
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
    else:

        def measure() -> list[float]:
            run = driver(args.server)
            run(args.pairs // 10)
            samples = []
            for _ in range(args.runs):
                t0 = time.process_time_ns()
                run(args.pairs)
                samples.append((time.process_time_ns() - t0) / args.pairs)
            return samples

        median = statistics.median(in_loop(measure))
        print(f"CPU ns per set+get pair, median of {args.runs}: {median:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
