"""Scale-out benchmark: 1 worker vs 2, and HAProxy (send-proxy-v2) vs direct.

    .venv/bin/python bench/scale.py [--runs 3] [--duration 3] [--markdown FILE]

Workers: `linechat serve --workers N` under the C load generator at 100 x 16
(pipelined) and 1,000 x 1. Server CPU is summed over the supervisor and all
its workers, sampled at the edges of the measured window, so round trips per
server CPU-second compare per-core efficiency (on 2 cores the load generator
shares the CPUs with the workers: total throughput alone says little).

HAProxy: docs/haproxy.cfg as shipped (one backend running
`linechat serve --proxy-protocol`) against the same server reached directly;
per-connection round-trip latency (p50, p99) at 1 x 1 and 100 x 1. The server
is pinned to CPU 0, the load generator and HAProxy to CPU 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchlib import (
    BIN,
    HOST,
    LINECHAT,
    REPO,
    BenchError,
    cpu_seconds,
    free_port,
    log,
    run_measured,
    stop_process,
    wait_port,
)

LOADGEN = BIN / "loadgen"
HAPROXY_CFG = REPO / "docs" / "haproxy.cfg"
CPU1 = ["taskset", "-c", "1"]


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        path = Path(f"/proc/{current}/task/{current}/children")
        if path.exists():
            todo += [int(child) for child in path.read_text().split()]
    return found


def tree_cpu_seconds(roots: list[int]) -> float:
    """utime + stime summed over ``roots`` and all their descendants (gone ones count 0)."""
    total = 0.0
    for pid in (pid for root in roots for pid in tree(root)):
        with suppress(FileNotFoundError):
            total += cpu_seconds(pid)
    return total


@contextmanager
def started(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``argv`` until the block ends; yields its PID once ``port`` accepts."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        try:
            wait_port(port, process)
            time.sleep(0.3)  # every worker listening, not just the first
            yield process.pid
        finally:
            stop_process(process, 15)


def load(
    port: int,
    conns: int,
    pipeline: int,
    opts: argparse.Namespace,
    server: list[int],
    pin: list[str] | None = None,
) -> dict[str, float]:
    """One load generator run; the CPU of every process in ``server`` over its window."""
    argv = [
        *(pin or []),
        str(LOADGEN),
        *("--port", str(port), "-c", str(conns), "-P", str(pipeline), "-s", "32"),
        *("-d", str(opts.duration), "-w", str(opts.warmup), "--connect-timeout", "30"),
    ]
    bound = 30 + opts.warmup + opts.duration + 120
    win = run_measured(argv, lambda: tree_cpu_seconds(server), "load", bound)
    result = win.result
    if win.code != 0 or not result:
        raise BenchError(f"loadgen failed with status {win.code}: {win.stderr[-1500:]}")
    round_trips = float(result["round_trips"])
    cpu = max(win.server_cpu_s, 1e-9)
    return {
        "rt_per_s": float(result["round_trips_per_s"]),
        "rt_per_cpu_s": round_trips / cpu,
        "p50_us": float(result.get("p50_us", 0.0)),
        "p99_us": float(result.get("p99_us", 0.0)),
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def bench_workers(opts: argparse.Namespace) -> list[tuple[str, str, dict[str, float]]]:
    rows = []
    for conns, pipeline in ((100, 16), (1000, 1)):
        for workers in (1, 2):
            runs = []
            for run in range(opts.runs):
                port = free_port()
                argv = [
                    LINECHAT,
                    *("serve", "--host", HOST, "--port", str(port), "--workers", str(workers)),
                    *("--log-level", "warning", "--max-connections", "20000"),
                ]
                with started(argv, port) as pid:
                    result = load(port, conns, pipeline, opts, [pid])
                log(f"{workers} worker(s) {conns}x{pipeline} run {run + 1}: {result}")
                runs.append(result)
            rows.append((f"{conns} x {pipeline}", f"{workers} worker(s)", median_of(runs)))
    return rows


def bench_haproxy(opts: argparse.Namespace) -> list[tuple[str, str, dict[str, float]]]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        log("haproxy is not installed: skipping the HAProxy comparison")
        return []
    rows = []
    for conns in (1, 100):
        for via in ("direct", "haproxy"):
            runs = []
            for run in range(opts.runs):
                backend = free_port()
                # Pinned as in bench/echo: the server on CPU 0; the load
                # generator and HAProxy share CPU 1.
                argv = [
                    *("taskset", "-c", "0"),
                    LINECHAT,
                    *("serve", "--host", HOST, "--port", str(backend), "--log-level", "warning"),
                ]
                if via == "haproxy":
                    argv.append("--proxy-protocol")
                with started(argv, backend) as server_pid:
                    if via == "direct":
                        result = load(backend, conns, 1, opts, [server_pid], CPU1)
                    else:
                        front = free_port()
                        env = {
                            **os.environ,
                            "LINECHAT_BIND": f"{HOST}:{front}",
                            "LINECHAT_BACKEND_1": f"{HOST}:{backend}",
                            "LINECHAT_BACKEND_2": f"{HOST}:{backend}",
                        }
                        command = [*CPU1, haproxy, "-db", "-f", str(HAPROXY_CFG)]
                        with started(command, front, env) as proxy_pid:
                            result = load(front, conns, 1, opts, [server_pid, proxy_pid], CPU1)
                log(f"{via} {conns}x1 run {run + 1}: {result}")
                runs.append(result)
            rows.append((f"{conns} x 1", via, median_of(runs)))
    return rows


def _table(head: str, rows: list[tuple[str, str, dict[str, float]]]) -> list[str]:
    """A markdown table: ``head``'s first columns, then the latency columns, a row per result."""
    lines = [f"{head} | p50 µs | p99 µs |", "|---|---|--:|--:|--:|--:|"]
    for scenario, name, m in rows:
        lines.append(
            f"| {scenario} | {name} | {m['rt_per_s']:,.0f} | {m['rt_per_cpu_s']:,.0f} "
            f"| {m['p50_us']:,.0f} | {m['p99_us']:,.0f} |"
        )
    return lines


def report(workers: list[Any], haproxy: list[Any], opts: argparse.Namespace) -> str:
    lines = [
        f"Command: `.venv/bin/python bench/scale.py --runs {opts.runs} "
        f"--duration {opts.duration}` (medians of {opts.runs} runs; nproc {os.cpu_count()})",
        "",
        *_table("| load | server | round trips/s | round trips per server CPU-s", workers),
    ]
    by = {(s, n): m for s, n, m in workers}
    lines.append("")
    for scenario in ("100 x 16", "1000 x 1"):
        one, two = by.get((scenario, "1 worker(s)")), by.get((scenario, "2 worker(s)"))
        if one and two:
            lines.append(
                f"- {scenario}: 2 workers give {two['rt_per_cpu_s'] / one['rt_per_cpu_s']:.2f}x "
                f"the round trips per server CPU-second of 1 worker (target >= 0.9x), "
                f"{two['rt_per_s'] / one['rt_per_s']:.2f}x the round trips/s."
            )
    if haproxy:
        lines.append("")
        head = "| load | path | round trips/s | round trips per CPU-s (server + haproxy)"
        lines += _table(head, haproxy)
        hp = {(s, n): m for s, n, m in haproxy}
        lines.append("")
        for scenario in ("1 x 1", "100 x 1"):
            direct, proxied = hp.get((scenario, "direct")), hp.get((scenario, "haproxy"))
            if direct and proxied:
                lines.append(
                    f"- {scenario}: p50 through HAProxy is "
                    f"{proxied['p50_us'] / direct['p50_us']:.2f}x direct (target <= 1.5x)."
                )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--markdown", type=Path, default=None)
    opts = parser.parse_args()
    if not LOADGEN.exists():
        subprocess.run(["make", "-C", str(REPO), "bench-tools"], check=True)
    text = report(bench_workers(opts), bench_haproxy(opts), opts)
    print(text)
    if opts.markdown is not None:
        opts.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
