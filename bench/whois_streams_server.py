"""A minimal asyncio-streams WHOIS server: the competitor of ``linechat serve whois``.

What one writes with ``asyncio.start_server`` in a few lines: read one line,
look the key up (case-insensitively) in records loaded from a directory,
write the answer, close. No limits, no rate limit, no idle timeout.

    python bench/whois_streams_server.py --port 4343 --data DIR [--loop uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from benchlib import run_loop, serve_streams

RECORDS: dict[str, bytes] = {}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await reader.readline()
        query = line.strip().decode("utf-8", "replace")
        answer = RECORDS.get(query.casefold())
        writer.write(answer if answer is not None else f'% No match for "{query}".\r\n'.encode())
        await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    for path in args.data.iterdir():
        text = path.read_text(encoding="utf-8")
        RECORDS[path.name.casefold()] = ("\r\n".join(text.splitlines()) + "\r\n").encode()
    run_loop(lambda: serve_streams(handle, args.port), args.loop)


if __name__ == "__main__":
    main()
