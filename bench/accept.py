"""Short connections: server CPU per connection, this tree against a git revision.

Each connection connects, sends one echo line and ``.``, reads until the
server closes. The two trees' ``linechat serve`` (echo, ``--log-level
warning``) run alternately, ``--rounds`` times each per loop; reported: the
medians of server CPU microseconds per connection (utime+stime from
/proc/PID/stat) and of connections per second.

    .venv/bin/python bench/accept.py --against 11a18cb --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchlib import REPO, cpu_seconds, free_port, stop_process


def start(src: Path, loop: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "linechat", "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--loop", loop, "--log-level", "warning"),
        ],
        env={**os.environ, "PYTHONPATH": str(src)},
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while b"listening on" not in process.stderr.readline():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the server did not start")
    return process


async def clients(port: int, total: int, concurrency: int) -> None:
    async def one_by_one(count: int) -> None:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"x\r\n.\r\n")
            await reader.read()
            writer.close()

    await asyncio.gather(*(one_by_one(total // concurrency) for _ in range(concurrency)))


def measure(src: Path, loop: str, total: int) -> tuple[float, float]:
    port = free_port()
    process = start(src, loop, port)
    try:
        asyncio.run(clients(port, total // 10, 30))  # warm-up
        cpu, wall = cpu_seconds(process.pid), time.monotonic()
        asyncio.run(clients(port, total, 30))
        cpu, wall = cpu_seconds(process.pid) - cpu, time.monotonic() - wall
    finally:
        stop_process(process, 30)
    return cpu / total * 1e6, total / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="11a18cb", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--loops", default="asyncio,uvloop")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "src.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "-C", str(REPO), "archive", opts.against, "src"], stdout=out)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        trees = {opts.against: Path(folder) / "src", "this tree": REPO / "src"}
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(opts.rounds):
            for loop in opts.loops.split(","):
                for name, src in trees.items():
                    figures.setdefault((loop, name), []).append(
                        measure(src, loop, opts.connections)
                    )
    print("| loop | tree | server CPU µs/connection | connections/s |")
    print("|---|---|---:|---:|")
    for (loop, name), runs in figures.items():
        cpu = statistics.median(run[0] for run in runs)
        rate = statistics.median(run[1] for run in runs)
        print(f"| {loop} | {name} | {cpu:.0f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
