"""User-space instructions per WHOIS query, under callgrind: where the CPU goes, run to run exact.

A WHOIS server runs under ``valgrind --tool=callgrind`` while clients make
``--few`` and then ``--many`` queries (each a connection: connect,
``EXAMPLE.com``, read the answer to the end, compare it), ``--conns`` at a
time; the difference of the two runs' instruction counts, divided by the
difference of queries, is the cost of one query with start-up taken out.
Kernel time (the system calls) is not counted: ``strace -c`` shows those.

    .venv/bin/python bench/whois_callgrind.py                      # linechat on uvloop
    .venv/bin/python bench/whois_callgrind.py --server streams --loop asyncio
    .venv/bin/python bench/whois_callgrind.py --src /tmp/base/src  # another checkout's linechat
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

from benchlib import PYTHON, REPO, free_port, stop_process, wait_port
from services_bench import RECORD

SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


async def clients(port: int, total: int, conns: int, expect: bytes) -> int:
    """Make ``total`` queries, ``conns`` at a time; the number of wrong answers."""
    wrong = 0

    async def one_by_one(count: int) -> None:
        nonlocal wrong
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"EXAMPLE.com\r\n")
            wrong += await reader.read() != expect
            writer.close()

    await asyncio.gather(*(one_by_one(total // conns) for _ in range(conns)))
    return wrong


def server_argv(args: argparse.Namespace, port: int, data: Path) -> list[str]:
    if args.server == "streams":
        script = str(REPO / "bench" / "whois_streams_server.py")
        return [PYTHON, script, "--port", str(port), "--data", str(data), "--loop", args.loop]
    argv = [PYTHON, "-m", "linechat", "serve", "whois", "--data", str(data)]
    argv += ["--rate", "1000000000/minute", "--loop", args.loop, "--host", "127.0.0.1"]
    return [*argv, "--port", str(port), "--log-level", "warning"]


def instructions(args: argparse.Namespace, queries: int, folder: Path) -> int:
    """The server's instructions, start-up included, when it answered ``queries``."""
    port, out = free_port(), folder / "callgrind.out"
    env = {**os.environ, "PYTHONPATH": str(Path(args.src).resolve())}
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    process = subprocess.Popen(
        [*argv, *server_argv(args, port, folder / "records")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_port(port, process, timeout=120)
        expect = (folder / "expect").read_bytes()
        wrong = asyncio.run(clients(port, queries, args.conns, expect))
        if wrong:
            raise SystemExit(f"{wrong} wrong answers")
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    finally:
        stop_process(process, 10)
    match = SUMMARY.search(out.read_text())
    if match is None:
        raise SystemExit("no summary in the callgrind output")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["linechat", "streams"], default="linechat")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--src", default=str(REPO / "src"), help="the linechat to run")
    parser.add_argument("--few", type=int, default=200)
    parser.add_argument("--many", type=int, default=1200)
    parser.add_argument("--conns", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "records").mkdir()
        for i in range(1000):
            (folder / "records" / f"host{i}.example").write_text(f"domain: host{i}.example\n")
        (folder / "records" / "example.com").write_text(RECORD)
        (folder / "expect").write_bytes(("\r\n".join(RECORD.splitlines()) + "\r\n").encode())
        few = instructions(args, args.few, folder)
        many = instructions(args, args.many, folder)
    per_query = (many - few) / (args.many - args.few)
    print(f"{args.server} on {args.loop}: {per_query:,.0f} instructions per query")


if __name__ == "__main__":
    main()
