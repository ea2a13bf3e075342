"""Lockstep scripting benchmark: `linechat connect --dialect` against redis-cli and swaks.

Redis: N commands (SET, GET, INCR in turn) from one file, sent in lockstep
(each after the previous reply) by ``linechat connect --dialect redis`` and
by ``redis-cli`` reading the same file on stdin (its plain mode waits for
each reply too), against one redis-server, runs alternated; the figure is
commands per second from the median wall time, start-up included. Each
client's output must hold one line per command (redis-cli prints raw values
when stdout is not a terminal: ``--raw`` is given to linechat to match).

SMTP: M messages through one connection (``linechat connect --dialect
smtp``: EHLO, then MAIL/RCPT/DATA/body/. per message, QUIT) against
``swaks``, one process per message as it is used, against one aiosmtpd
(its Sink handler) started as its own process. Both report messages per
second; swaks sends fewer messages per run by default (it takes about
0.2 s each), see --swaks-messages.

Start-up to first byte: bench/client.py's measurement, for ``linechat
connect`` without and with ``--dialect redis`` (whose first command goes out
at once, there being no greeting), bytecode cached.

    .venv/bin/python bench/dialects.py
    .venv/bin/python bench/dialects.py --commands 10000 --swaks-messages 100 --runs 5
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import client as client_bench  # noqa: E402  (bench/client.py: start-up measurement)
from benchlib import HOST, free_port, stop_process, wait_port  # noqa: E402

PYTHON = client_bench.PYTHON


@contextmanager
def server(command: list[str], port: int) -> Iterator[int]:
    process = subprocess.Popen(
        client_bench.pinned(0, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, process)
        yield port
    finally:
        stop_process(process, timeout=15.0)


#: CPU seconds (user + system) of each timed run, in order: less disturbed by
#: a loaded machine than wall time, reported beside it.
CPU: list[float] = []


def timed(command: list[str], source: Path | None, lines: int | None) -> float:
    """Wall seconds of one client run; raises unless it exits 0 with ``lines`` lines out."""
    with open(source or os.devnull, "rb") as stdin:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(
            client_bench.pinned(1, command), stdin=stdin, capture_output=True, timeout=900
        )
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    got = result.stdout.count(b"\n")
    if result.returncode != 0 or (lines is not None and got != lines):
        raise RuntimeError(
            f"{command[:4]!r}: exit {result.returncode}, {got} lines, {result.stderr[-300:]!r}"
        )
    return elapsed


def redis_script(path: Path, count: int) -> None:
    kinds = (b"SET key:%d value-%d", b"GET key:%d", b"INCR counter:%d")
    lines = []
    for index in range(count):
        pattern = kinds[index % 3]
        lines.append(pattern % ((index // 3, index) if pattern.count(b"%d") == 2 else index // 3))
    path.write_bytes(b"\n".join(lines) + b"\n")


def smtp_script(path: Path, count: int) -> None:
    message = (
        b"MAIL FROM:<a@example.org>\nRCPT TO:<b@example.org>\nDATA\n"
        b"Subject: bench %d\n\nhello\n.a dot line\n.\n"
    )
    path.write_bytes(b"EHLO bench.test\n" + b"".join(message % i for i in range(count)) + b"QUIT\n")


def connect_command(extra: list[str]) -> client_bench.Command:
    def command(port: int) -> list[str]:
        return [PYTHON, "-m", "linechat", "connect", *extra, HOST, str(port)]

    return command


def rate(count: int, times: list[float]) -> float:
    return count / statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument("--swaks-messages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ttfb-runs", type=int, default=10)
    args = parser.parse_args()
    for tool in ("redis-server", "redis-cli", "swaks"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool}")

    report = [
        f"Machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"CPython {platform.python_version()}, Linux {platform.release()}",
        "",
        f"Command: `.venv/bin/python bench/dialects.py --commands {args.commands} "
        f"--messages {args.messages} --swaks-messages {args.swaks_messages} "
        f"--runs {args.runs}` (median of {args.runs} alternated runs)",
        "",
        "| client | work | median s | per second | ratio |",
        "|---|--:|--:|--:|--:|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        client_bench.ENV = client_bench.python_env(Path(folder) / "pycache")
        os.environ.update(client_bench.ENV)
        script = Path(folder) / "redis.txt"
        redis_script(script, args.commands)
        port = free_port()
        redis = ["redis-server", "--port", str(port), "--bind", HOST, "--save", ""]
        with server([*redis, "--appendonly", "no"], port):
            linechat = [PYTHON, "-m", "linechat", "connect", "--dialect", "redis", "--raw"]
            linechat += [HOST, str(port)]
            cli = ["redis-cli", "-h", HOST, "-p", str(port)]
            timed(linechat, script, args.commands)  # warm-up: bytecode cache, server state
            times: dict[str, list[float]] = {"linechat": [], "redis-cli": []}
            cpu: dict[str, list[float]] = {"linechat": [], "redis-cli": []}
            for run in range(args.runs):
                for name, command in (("linechat", linechat), ("redis-cli", cli)):
                    times[name].append(timed(command, script, args.commands))
                    cpu[name].append(CPU[-1])
                    print(f"run {run + 1}: redis {name}: {times[name][-1]:.2f} s", file=sys.stderr)
        ours, theirs = (
            rate(args.commands, times["linechat"]),
            rate(args.commands, times["redis-cli"]),
        )
        report += [
            f"| `linechat connect --dialect redis --raw` | {args.commands:,} commands | "
            f"{statistics.median(times['linechat']):.3f} | {ours:,.0f} | {ours / theirs:.2f}x |",
            f"| `redis-cli` (stdin) | {args.commands:,} commands | "
            f"{statistics.median(times['redis-cli']):.3f} | {theirs:,.0f} | 1.00x |",
        ]
        ours_cpu, theirs_cpu = (statistics.median(cpu[name]) for name in ("linechat", "redis-cli"))
        cpu_note = (
            f"CPU per run (user + system, median): linechat {ours_cpu:.3f} s "
            f"({ours_cpu / args.commands * 1e6:.1f} us a command, start-up included), "
            f"redis-cli {theirs_cpu:.3f} s ({theirs_cpu / args.commands * 1e6:.1f} us)."
        )

        script = Path(folder) / "smtp.txt"
        smtp_script(script, args.messages)
        port = free_port()
        sink = [PYTHON, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink"]
        with server([*sink, "-l", f"{HOST}:{port}"], port):
            linechat = [PYTHON, "-m", "linechat", "connect", "--dialect", "smtp", HOST, str(port)]
            swaks = ["swaks", "--server", f"{HOST}:{port}", "--from", "a@example.org"]
            swaks += ["--to", "b@example.org", "--body", "hello"]
            timed(linechat, script, None)
            smtp: dict[str, list[float]] = {"linechat": [], "swaks": []}
            for run in range(args.runs):
                smtp["linechat"].append(timed(linechat, script, None))
                started = time.perf_counter()
                for _ in range(args.swaks_messages):
                    timed(swaks, None, None)
                smtp["swaks"].append(time.perf_counter() - started)
                print(f"run {run + 1}: smtp {smtp['linechat'][-1]:.2f} s, swaks "
                      f"{smtp['swaks'][-1]:.2f} s", file=sys.stderr)  # fmt: skip
        ours, theirs = (
            rate(args.messages, smtp["linechat"]),
            rate(args.swaks_messages, smtp["swaks"]),
        )
        report += [
            f"| `linechat connect --dialect smtp` (one connection) | {args.messages:,} messages | "
            f"{statistics.median(smtp['linechat']):.3f} | {ours:,.1f} | {ours / theirs:.1f}x |",
            f"| `swaks` (one process per message) | {args.swaks_messages:,} messages | "
            f"{statistics.median(smtp['swaks']):.3f} | {theirs:,.1f} | 1.0x |",
            "",
            "| client | time to first byte, median ms | min | max |",
            "|---|--:|--:|--:|",
        ]
        for label, extra in (
            ("linechat connect", []),
            ("linechat connect --dialect redis", ["--dialect", "redis"]),
        ):
            values = client_bench.time_to_first_byte(connect_command(extra), args.ttfb_runs)
            report.append(
                f"| {label} | {statistics.median(values) * 1e3:.1f} | "
                f"{min(values) * 1e3:.1f} | {max(values) * 1e3:.1f} |"
            )
    print("\n".join([*report, "", cpu_note]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
