"""The floor for the memcache benchmark: a bare asyncio Protocol, ``set`` and ``get`` only.

What the least Python on uvloop costs per round trip of the memcache load
(``bench/services_load.py memcache``): a dict, the two commands the load
sends, one reply written per chunk. No line limit, no flow control, no idle
timeout, no other command, no expiry, no ``noreply``; input cut anywhere is
still parsed right (a buffer), so it is a server, not a replay. Compared with
``examples/memcache.py`` and ``memcached -t 1`` in ``bench/services_bench.py``.

    python bench/memcache_floor.py --port 11311 [--loop uvloop]
"""

from __future__ import annotations

import argparse
import asyncio

from benchlib import run_loop, serve_protocol

CACHE: dict[bytes, tuple[int, bytes]] = {}


class FloorMemcache(asyncio.Protocol):
    __slots__ = ("buffer", "transport")

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        out = []
        start, size = 0, len(data)
        while start < size:
            end = data.find(b"\r\n", start)
            if end < 0:
                break
            parts = data[start:end].split(b" ")
            if parts[0] == b"get":
                for key in parts[1:]:
                    found = CACHE.get(key)
                    if found is not None:
                        flags, value = found
                        out.append(b"VALUE %s %d %d\r\n%s\r\n" % (key, flags, len(value), value))
                out.append(b"END\r\n")
                start = end + 2
            elif parts[0] == b"set" and len(parts) == 5:
                length = int(parts[4])
                stop = end + 2 + length
                if size < stop + 2:
                    break  # the data block is not all here yet
                CACHE[parts[1]] = (int(parts[2]), data[end + 2 : stop])
                out.append(b"STORED\r\n")
                start = stop + 2
            else:
                out.append(b"ERROR\r\n")
                start = end + 2
        self.buffer = data[start:]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args()
    run_loop(lambda: serve_protocol(FloorMemcache, args.port), args.loop)


if __name__ == "__main__":
    main()
