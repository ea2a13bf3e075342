"""WHOIS and memcache benchmarks: server CPU per operation, side by side in one run.

Each server runs pinned to CPU 0 (``taskset -c 0``), the load generator
(``bench/services_load.py``) to CPU 1. A run starts a fresh server, waits
until it accepts, lets the load generator warm up, and reads the server's
utime+stime (``/proc/PID/stat``) when the measured window opens and closes.
Runs alternate across servers; the report gives medians over the runs and
the ratio of the medians of operations per server CPU-second.

- ``whois``: 50 concurrent clients, each a new connection per query
  (connect, one query, the answer, close), every answer checked.
  ``linechat serve whois`` (rate limit on but never reached, logging at
  warning) against a minimal asyncio-streams WHOIS server
  (``bench/whois_streams_server.py``), each on asyncio and on uvloop.
- ``memcache``: 50 connections, each alternating ``set`` and ``get`` of its
  own 32-byte value, one command in flight, every reply checked.
  ``examples/memcache.py`` through ``linechat serve`` against the real
  ``memcached -t 1``, and the floor: a bare uvloop Protocol that speaks just
  set and get (``bench/memcache_floor.py``). With ``MEMCACHE_BASELINE=DIR`` (a checkout, say a
  ``git worktree`` of an older commit) its example and linechat run too,
  alternated with the others: an A/B of a change in one run. ``WHOIS_BASELINE=DIR``
  does the same for ``linechat serve whois`` (uvloop).

    .venv/bin/python bench/services_bench.py whois memcache --runs 5
    .venv/bin/python bench/services_bench.py whois --runs 1 --seconds 1   # smoke
    MEMCACHE_BASELINE=/tmp/base .venv/bin/python bench/services_bench.py memcache
    WHOIS_BASELINE=/tmp/base .venv/bin/python bench/services_bench.py whois
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from benchlib import HOST, LINECHAT, PYTHON, REPO, cpu_seconds, free_port, stop_process, wait_port

RECORD = "domain: example.com\nstatus: active\nregistrar: Example Registrar\n" * 4


@dataclass(frozen=True)
class Server:
    name: str
    what: str
    command: Callable[[int, Path], list[str]]


def _serve_flags(loop: str, port: int) -> list[str]:
    """The flags every ``linechat serve`` here ends with: its loop, HOST:PORT, warnings only."""
    return ["--loop", loop, "--host", HOST, "--port", str(port), "--log-level", "warning"]


def _linechat_whois(loop: str) -> Callable[[int, Path], list[str]]:
    def command(port: int, data: Path) -> list[str]:
        argv = [LINECHAT, "serve", "whois", "--data", str(data), "--rate", "1000000000/minute"]
        return [*argv, *_serve_flags(loop, port)]

    return command


def _streams_whois(loop: str) -> Callable[[int, Path], list[str]]:
    def command(port: int, data: Path) -> list[str]:
        script = str(REPO / "bench" / "whois_streams_server.py")
        return [PYTHON, script, "--port", str(port), "--data", str(data), "--loop", loop]

    return command


def _linechat_memcache(loop: str) -> Callable[[int, Path], list[str]]:
    def command(port: int, data: Path) -> list[str]:
        argv = [LINECHAT, "serve", "examples.memcache:MemcacheProtocol", "--app-dir", str(REPO)]
        return [*argv, *_serve_flags(loop, port)]

    return command


def _memcache_baseline(port: int, data: Path) -> list[str]:
    """The example and linechat of another checkout ($MEMCACHE_BASELINE), for an A/B."""
    base = Path(os.environ["MEMCACHE_BASELINE"]).resolve()
    argv = ["env", f"PYTHONPATH={base / 'src'}", PYTHON, "-m", "linechat", "serve"]
    argv += ["examples.memcache:MemcacheProtocol", "--app-dir", str(base)]
    return [*argv, *_serve_flags("uvloop", port)]


def _whois_baseline(port: int, data: Path) -> list[str]:
    """``linechat serve whois`` of another checkout ($WHOIS_BASELINE), for an A/B."""
    base = Path(os.environ["WHOIS_BASELINE"]).resolve()
    argv = ["env", f"PYTHONPATH={base / 'src'}", PYTHON, "-m", "linechat", "serve", "whois"]
    argv += ["--data", str(data), "--rate", "1000000000/minute"]
    return [*argv, *_serve_flags("uvloop", port)]


def _memcache_floor(port: int, data: Path) -> list[str]:
    script = str(REPO / "bench" / "memcache_floor.py")
    return [PYTHON, script, "--port", str(port), "--loop", "uvloop"]


def _memcached(port: int, data: Path) -> list[str]:
    path = shutil.which("memcached") or "memcached"
    argv = [path, "-t", "1", "-U", "0", "-l", HOST, "-p", str(port)]
    return argv + (["-u", "root"] if os.geteuid() == 0 else [])


BENCHMARKS: dict[str, list[Server]] = {
    "whois": [
        Server(
            "linechat-uvloop",
            "linechat serve whois, uvloop (its default)",
            _linechat_whois("uvloop"),
        ),
        Server(
            "linechat-asyncio", "linechat serve whois, asyncio loop", _linechat_whois("asyncio")
        ),
        Server("streams-asyncio", "minimal asyncio streams server", _streams_whois("asyncio")),
        Server("streams-uvloop", "the same streams server on uvloop", _streams_whois("uvloop")),
    ],
    "memcache": [
        Server(
            "example-uvloop", "examples/memcache.py, uvloop (default)", _linechat_memcache("uvloop")
        ),
        Server(
            "example-asyncio", "examples/memcache.py, asyncio loop", _linechat_memcache("asyncio")
        ),
        Server("floor-uvloop", "bare Protocol, set/get only, uvloop", _memcache_floor),
        Server("memcached", "memcached -t 1 (C)", _memcached),
    ],
}
if os.environ.get("MEMCACHE_BASELINE"):
    BENCHMARKS["memcache"].insert(
        1,
        Server(
            "baseline-uvloop",
            "the example of $MEMCACHE_BASELINE, uvloop",
            _memcache_baseline,
        ),
    )
if os.environ.get("WHOIS_BASELINE"):
    BENCHMARKS["whois"].insert(
        1,
        Server("baseline-uvloop", "linechat of $WHOIS_BASELINE, uvloop", _whois_baseline),
    )
REFERENCE = {"whois": "streams-asyncio", "memcache": "memcached"}


def one_run(
    bench: str, server: Server, data: Path, expect: Path, args: argparse.Namespace
) -> dict[str, float]:
    port = free_port()
    argv = ["taskset", "-c", "0", *server.command(port, data)]
    with tempfile.TemporaryFile() as log:
        return _measure(bench, server, argv, port, expect, log, args)


def _measure(
    bench: str,
    server: Server,
    argv: list[str],
    port: int,
    expect: Path,
    log: IO[bytes],
    args: argparse.Namespace,
) -> dict[str, float]:
    process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_port(port, process)
        load = [PYTHON, str(REPO / "bench" / "services_load.py"), bench, "--port", str(port)]
        load += ["--conns", str(args.conns), "--seconds", str(args.seconds)]
        if bench == "whois":
            load += ["--query", "EXAMPLE.com", "--expect", str(expect)]
        loader = subprocess.Popen(["taskset", "-c", "1", *load], stdout=subprocess.PIPE, text=True)
        assert loader.stdout is not None
        if loader.stdout.readline().strip() != "start":
            raise RuntimeError("load generator failed")
        cpu_start = cpu_seconds(process.pid)
        result = json.loads(loader.stdout.readline())
        cpu = cpu_seconds(process.pid) - cpu_start
        loader.wait(timeout=30)
    finally:
        stop_process(process, timeout=10.0)
    if result["errors"]:
        raise RuntimeError(f"{server.name}: {result['errors']} wrong or failed replies")
    return {
        "ops_per_s": result["ops"] / result["seconds"],
        "cpu": cpu / result["seconds"],
        "ops_per_cpu_s": result["ops"] / cpu if cpu else float("nan"),
    }


def run_bench(bench: str, args: argparse.Namespace) -> str:
    servers = BENCHMARKS[bench]
    results: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "records"
        data.mkdir()
        for i in range(1000):
            (data / f"host{i}.example").write_text(f"domain: host{i}.example\n")
        (data / "example.com").write_text(RECORD)
        expect = Path(folder) / "expect"
        expect.write_bytes(("\r\n".join(RECORD.splitlines()) + "\r\n").encode())
        for run in range(args.runs):
            order = servers[run % len(servers) :] + servers[: run % len(servers)]
            for server in order:
                result = one_run(bench, server, data, expect, args)
                results[server.name].append(result)
                print(
                    f"{bench} run {run + 1}/{args.runs} {server.name}: "
                    f"{result['ops_per_s']:,.0f} ops/s, server CPU {result['cpu']:.0%}, "
                    f"{result['ops_per_cpu_s']:,.0f} ops per CPU-second",
                    file=sys.stderr,
                    flush=True,
                )
    reference = statistics.median(r["ops_per_cpu_s"] for r in results[REFERENCE[bench]])
    unit = "queries" if bench == "whois" else "round trips"
    lines = [
        f"| server | {unit}/s | server CPU | {unit} per server CPU-second | ratio to "
        f"{REFERENCE[bench]} |",
        "|---|--:|--:|--:|--:|",
    ]
    for server in servers:
        runs = results[server.name]
        per_cpu = statistics.median(r["ops_per_cpu_s"] for r in runs)
        lines.append(
            f"| {server.name}: {server.what}"
            f" | {statistics.median(r['ops_per_s'] for r in runs):,.0f}"
            f" | {statistics.median(r['cpu'] for r in runs):.0%} | {per_cpu:,.0f}"
            f" | {per_cpu / reference:.2f}x |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmarks", nargs="+", choices=sorted(BENCHMARKS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=50)
    args = parser.parse_args()
    print(
        f"Machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"CPython {platform.python_version()}, Linux {platform.release()}\n"
    )
    for bench in args.benchmarks:
        print(
            f"### {bench}: {args.conns} clients, median of {args.runs} runs of {args.seconds:g} s\n"
        )
        print(run_bench(bench, args) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
