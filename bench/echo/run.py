"""Echo-server benchmark driver: linechat against the alternatives, side by side.

Every server runs as a subprocess pinned to one CPU (``taskset -c 0``) and the C
load generator ``bench/bin/loadgen`` runs pinned to another (``taskset -c 1``).
Each run starts a fresh server, waits until its port accepts, runs one scenario
and stops the server by its PID. Every reply is checked byte for byte by the
load generator; a wrong byte fails that cell.

Reported per cell (median over ``--runs``): round trips/s, p50/p99 latency from
send to reply, server CPU use over the measured window (utime+stime from
``/proc/PID/stat``), round trips per server CPU-second and server CPU µs per
round trip; and, for the idle scenario, the growth of the server's VmRSS per
idle connection.

    .venv/bin/python bench/echo/run.py --quick
    .venv/bin/python bench/echo/run.py --markdown bench/echo/RESULTS.md
    .venv/bin/python bench/echo/run.py --compiled --scenarios 1000x1,100x16 \
        --only linechat-uvloop,linechat-uvloop-compiled,bare-uvloop,c-reference

``--compiled`` builds linechat's optional mypyc-compiled hot modules into
``build/compiled`` with the shipped build hook (``hatch_build.py --out``, as
``make compiled``) for the ``*-compiled`` servers, pure and compiled then
alternate in one run; ``$LINECHAT_COMPILED`` names a folder built before.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchlib import (  # noqa: E402  (bench/benchlib.py: what the drivers share)
    BIN,
    HOST,
    LINECHAT,
    PYTHON,
    REPO,
    BenchError,
    Cell,
    ServerProcess,
    add_run_arguments,
    alternate,
    build_with_make,
    check_choices,
    cpu_model,
    cpu_seconds,
    fmt,
    free_port,
    fresh_server_run,
    idle_growth,
    log,
    publish,
    raise_nofile,
    run_measured,
    sigterm_unwinds,
)
from benchlib import cell_value as _value  # noqa: E402

LOADGEN = BIN / "loadgen"
CECHO = BIN / "cecho"
SERVERS_DIR = HERE / "servers"


@dataclass(frozen=True)
class Server:
    name: str
    command: Callable[[int], list[str]]
    what: str


def _linechat(*extra: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            LINECHAT,
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            *extra,
            # Defaults otherwise (the 300 s idle timeout included): features cost what they cost.
            "--max-connections",
            "20000",
        ]

    return command


#: A folder holding a complete linechat whose hot modules are compiled by mypyc
#: (the optional compiled build); the ``-compiled`` server runs ``linechat
#: serve`` with it first on the path. ``--compiled`` builds it in
#: ``COMPILED_DIR`` (as ``make compiled`` does); ``$LINECHAT_COMPILED`` names
#: one built before.
COMPILED = os.environ.get("LINECHAT_COMPILED", "")
COMPILED_DIR = REPO / "build" / "compiled"


def _compiled(*extra: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        if not COMPILED or not Path(COMPILED, "linechat").is_dir():
            raise BenchError("no compiled linechat: pass --compiled (or set LINECHAT_COMPILED)")
        return ["env", f"PYTHONPATH={COMPILED}", *_linechat(*extra)(port)]

    return command


def _script(name: str, *extra: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [PYTHON, str(SERVERS_DIR / name), "--port", str(port), *extra]

    return command


def _cecho(port: int) -> list[str]:
    return [str(CECHO), "--host", HOST, "--port", str(port)]


SERVERS = [
    Server("linechat-asyncio", _linechat("--loop", "asyncio"), "linechat serve, asyncio loop"),
    Server("linechat-uvloop", _linechat("--loop", "uvloop"), "linechat serve, uvloop"),
    Server(
        "linechat-import-asyncio",
        _linechat("linechat.services.echo:EchoProtocol", "--loop", "asyncio"),
        "linechat serve linechat.services.echo:EchoProtocol (a user's class), asyncio loop",
    ),
    Server(
        "linechat-import-uvloop",
        _linechat("linechat.services.echo:EchoProtocol", "--loop", "uvloop"),
        "linechat serve linechat.services.echo:EchoProtocol (a user's class), uvloop",
    ),
    Server(
        "linechat-uvloop-compiled",
        _compiled("--loop", "uvloop"),
        "linechat serve, uvloop, hot modules compiled with mypyc ($LINECHAT_COMPILED)",
    ),
    Server(
        "linechat-stream",
        _linechat("--loop", "asyncio", "--layer", "stream"),
        "linechat serve, stream layer, asyncio loop",
    ),
    Server(
        "linechat-stream-uvloop",
        _linechat("--loop", "uvloop", "--layer", "stream"),
        "linechat serve, stream layer, uvloop",
    ),
    Server(
        "linechat-stream-uvloop-compiled",
        _compiled("--loop", "uvloop", "--layer", "stream"),
        "linechat serve, stream layer, uvloop, with $LINECHAT_COMPILED first on the path",
    ),
    Server("seed", _script("seed_server.py"), "the seed's ChatProtocol algorithm, asyncio"),
    Server(
        "asyncio-streams",
        _script("streams_server.py"),
        "asyncio streams: readuntil + write + drain per line",
    ),
    Server(
        "asyncio-streams-uvloop",
        _script("streams_server.py", "--loop", "uvloop"),
        "the same asyncio streams echo on uvloop",
    ),
    Server("twisted", _script("twisted_server.py"), "Twisted LineReceiver, epoll reactor"),
    Server(
        "bare-asyncio",
        _script("bare_server.py", "--loop", "asyncio"),
        "bare Protocol, one split and one write per chunk (Python floor), asyncio",
    ),
    Server(
        "bare-uvloop",
        _script("bare_server.py", "--loop", "uvloop"),
        "the same bare Protocol on uvloop",
    ),
    Server(
        "coro-asyncio",
        _script("coro_server.py", "--loop", "asyncio"),
        "a coroutine per connection resumed per line, no limits (stream-layer floor), asyncio",
    ),
    Server(
        "coro-uvloop",
        _script("coro_server.py", "--loop", "uvloop"),
        "the same coroutine floor on uvloop",
    ),
    Server("c-reference", _cecho, "C epoll echo server, one thread (machine limit)"),
]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    conns: int
    pipeline: int
    size: int
    idle: bool = False


SCENARIOS = [
    Scenario("1x1", "1 connection x 1 line in flight, 32-byte lines", 1, 1, 32),
    Scenario("100x1", "100 connections x 1 line in flight, 32-byte lines", 100, 1, 32),
    Scenario(
        "100x16", "100 connections x 16 lines in flight (pipelined), 32-byte lines", 100, 16, 32
    ),
    Scenario("1000x1", "1,000 connections x 1 line in flight, 32-byte lines", 1000, 1, 32),
    Scenario("10x16-4k", "10 connections x 16 lines in flight, 4 KiB lines", 10, 16, 4096),
    Scenario("idle-10k", "memory per idle connection", 10000, 1, 32, idle=True),
]
QUICK_SCENARIOS = ["1x1", "100x16", "10x16-4k", "idle-10k"]


class RunningServer(ServerProcess):
    """A fresh server on a free port, its output in ``LOGDIR/NAME-PORT.log``."""

    def __init__(self, server: Server, cpu: int, logdir: Path) -> None:
        self.server = server
        port = free_port()
        super().__init__(server.command(port), cpu, logdir / f"{server.name}-{port}.log", port)


def loadgen_argv(cpu: int, *args: str) -> list[str]:
    return ["taskset", "-c", str(cpu), str(LOADGEN), *args]


def run_load(srv: RunningServer, sc: Scenario, opts: argparse.Namespace) -> dict[str, float]:
    argv = loadgen_argv(
        opts.loadgen_cpu,
        "--port",
        str(srv.port),
        "-c",
        str(sc.conns),
        "-P",
        str(sc.pipeline),
        "-s",
        str(sc.size),
        "-d",
        str(opts.duration),
        "-w",
        str(opts.warmup),
        "-j",
        str(opts.loadgen_procs),
        "--connect-timeout",
        "30",
        "--drain-timeout",
        "10",
    )
    bound = 30 + opts.warmup + opts.duration + 10 + 15
    win = run_measured(argv, lambda: cpu_seconds(srv.pid), "load", bound)
    result, code, stderr = win.result, win.code, win.stderr
    if code != 0 or result is None:
        raise BenchError(f"loadgen exit status {code}: {stderr[-1500:]}{srv.exit_note()}")
    cpu = win.server_cpu_s
    rts = float(result["round_trips"])
    loadgen_cpu = float(result.get("cpu_s", 0.0))
    # Whatever else ran on the machine meanwhile (other users, the kernel's own work).
    other = max(0.0, (win.busy1 - win.busy0) - cpu - loadgen_cpu)
    return {
        "round_trips": rts,
        "seconds": float(result["seconds"]),
        "rt_per_s": float(result["round_trips_per_s"]),
        "p50_us": float(result["p50_us"]),
        "p99_us": float(result["p99_us"]),
        "server_cpu_s": cpu,
        "loadgen_cpu_pct": 100.0 * loadgen_cpu / float(result["seconds"]),
        "other_cpu_pct": 100.0 * other / win.seconds if win.seconds > 0 else 0.0,
        "server_cpu_pct": 100.0 * cpu / win.seconds if win.seconds > 0 else 0.0,
        "rt_per_cpu_s": rts / cpu if cpu > 0 else float("inf"),
        "cpu_us_per_rt": 1e6 * cpu / rts if rts else 0.0,
    }


def run_idle(srv: RunningServer, sc: Scenario, opts: argparse.Namespace) -> dict[str, float]:
    n = opts.idle_conns
    argv = loadgen_argv(
        opts.loadgen_cpu,
        "--idle",
        "--port",
        str(srv.port),
        "-c",
        str(n),
        "-j",
        str(opts.loadgen_procs),
        "--hold",
        "120",
        "--connect-timeout",
        "60",
    )
    return idle_growth(argv, srv, 60 + 120 + 30, n, "kib_per_conn")


def build_compiled() -> str:
    """Compile linechat's hot modules into COMPILED_DIR with the shipped build hook."""
    log(f"compiling linechat's hot modules with mypyc into {COMPILED_DIR}")
    proc = subprocess.run(
        [PYTHON, str(REPO / "hatch_build.py"), "--out", str(COMPILED_DIR)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"compiling failed:\n{proc.stdout}{proc.stderr}")
    return str(COMPILED_DIR)


def check_compiled(folder: str) -> None:
    """The compiled server must run compiled code, not the pure modules beside it."""
    proc = subprocess.run(
        [PYTHON, "-c", "import linechat; print(linechat.COMPILED)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": folder},
    )
    if proc.stdout.strip() != "True":
        raise SystemExit(f"{folder} does not hold a compiled linechat: {proc.stdout}{proc.stderr}")


def machine() -> str:
    versions = [f"Python {platform.python_version()}"]
    for dist in ("uvloop", "twisted"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
    release = platform.release()
    return f"{cpu_model()}, {os.cpu_count()} CPUs, Linux {release}; " + ", ".join(versions)


def report(
    cells: dict[tuple[str, str], Cell],
    servers: list[Server],
    scenarios: list[Scenario],
    skipped: dict[str, str],
    opts: argparse.Namespace,
    command: str,
) -> str:
    out: list[str] = []
    load = [sc for sc in scenarios if not sc.idle]
    idle = [sc for sc in scenarios if sc.idle]
    out.append("# Echo server benchmark")
    out.append("")
    out.append(f"Command: `{command}`  ")
    out.append(f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  ")
    out.append(f"Machine: {machine()}  ")
    out.append(
        f"Server pinned to CPU {opts.server_cpu}, load generator to CPU {opts.loadgen_cpu} "
        f"({opts.loadgen_procs} process); {opts.runs} run(s) per cell, median shown; "
        f"{opts.warmup:g} s warm-up + {opts.duration:g} s measured per run; "
        "a fresh server per run; every reply checked byte for byte. "
        "CPU % is of one CPU; when the load generator's CPU is near 100 % it, not the "
        "server, limits round trips/s: compare servers by server CPU µs per round trip. "
        "*Other CPU %* is the rest of the machine's busy time in the window (kernel "
        "network work not charged to either process, and anything else running): a high "
        "value means the cell was disturbed."
    )
    out.append("")

    def cell(server: Server, sc: Scenario) -> Cell | None:
        return cells.get((server.name, sc.name))

    shown = [s for s in servers if s.name not in skipped]
    if load or idle:
        out.append("## Summary")
        out.append("")
        head = ["server"] + [f"{sc.name} RT/s" for sc in load]
        head += [f"{sc.name} KiB/conn" for sc in idle]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for s in shown:
            row = [s.name]
            for sc in load:
                c = cell(s, sc)
                row.append(_value(c, "rt_per_s", 0))
            for sc in idle:
                c = cell(s, sc)
                row.append(_value(c, "kib_per_conn", 2))
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    for sc in load:
        out.append(f"## {sc.name}: {sc.title}")
        out.append("")
        out.append(
            "| server | round trips/s | p50 µs | p99 µs | server CPU % | loadgen CPU % "
            "| other CPU % | RT per server CPU-s | server CPU µs/RT |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in shown:
            c = cell(s, sc)
            out.append(
                f"| {s.name} | {_value(c, 'rt_per_s', 0)} | {_value(c, 'p50_us', 0)} "
                f"| {_value(c, 'p99_us', 0)} | {_value(c, 'server_cpu_pct', 0)} "
                f"| {_value(c, 'loadgen_cpu_pct', 0)} | {_value(c, 'other_cpu_pct', 0)} "
                f"| {_value(c, 'rt_per_cpu_s', 0)} | {_value(c, 'cpu_us_per_rt', 2)} |"
            )
        out.append("")

    for sc in idle:
        out.append(f"## {sc.name}: {sc.title} ({opts.idle_conns:,} connections)")
        out.append("")
        out.append(
            "Server VmRSS before and after opening the connections (each does one "
            "round trip, then stays idle); kernel socket memory is not in VmRSS."
        )
        out.append("")
        out.append("| server | RSS before MiB | RSS after MiB | KiB per idle conn | connect s |")
        out.append("|---|---:|---:|---:|---:|")
        for s in shown:
            c = cell(s, sc)
            before = c.median("rss_before_kib") if c else None
            after = c.median("rss_after_kib") if c else None
            out.append(
                f"| {s.name} | {fmt(before / 1024 if before is not None else None, 1)} "
                f"| {fmt(after / 1024 if after is not None else None, 1)} "
                f"| {_value(c, 'kib_per_conn', 2)} | {_value(c, 'establish_s', 2)} |"
            )
        out.append("")

    out.append("Servers:")
    out.append("")
    for s in servers:
        note = f" — **skipped**: {skipped[s.name]}" if s.name in skipped else ""
        out.append(f"- `{s.name}`: {s.what}{note}")
    errors = [f"- {name} / {scn}: {err}" for (name, scn), c in cells.items() for err in c.errors]
    if errors:
        out.append("")
        out.append("Failed runs:")
        out.append("")
        out.extend(errors)
    out.append("")
    return "\n".join(out)


def run_cell(
    server: Server, sc: Scenario, c: Cell, opts: argparse.Namespace, logdir: Path, label: str
) -> str | None:
    """One run of one cell, on a fresh server; a reason if the server won't start."""
    return fresh_server_run(
        lambda: RunningServer(server, opts.server_cpu, logdir),
        lambda srv: run_idle(srv, sc, opts) if sc.idle else run_load(srv, sc, opts),
        c,
        label,
        idle_summary if sc.idle else load_summary,
    )


def load_summary(result: dict[str, float]) -> str:
    return (
        f"{result['rt_per_s']:,.0f} RT/s, p50 {result['p50_us']:,.0f} µs, "
        f"p99 {result['p99_us']:,.0f} µs, {result['cpu_us_per_rt']:.2f} server CPU µs/RT"
    )


def idle_summary(result: dict[str, float]) -> str:
    return f"{result['kib_per_conn']:.2f} KiB/conn"


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = [s.name for s in SERVERS]
    scen = [s.name for s in SCENARIOS]
    p = argparse.ArgumentParser(
        description="Echo-server benchmark: linechat against the alternatives.",
        epilog=f"servers: {', '.join(names)}; scenarios: {', '.join(scen)}",
    )
    add_run_arguments(p, duration=3.0)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run, short, fewer scenarios")
    p.add_argument("--idle-conns", type=int, default=10000, help="connections for idle-10k")
    p.add_argument("--loadgen-procs", type=int, default=1, help="load generator processes")
    p.add_argument(
        "--compiled",
        action="store_true",
        help=f"compile the hot modules with mypyc into {COMPILED_DIR.relative_to(REPO)} first "
        "(for the *-compiled servers; $LINECHAT_COMPILED names a folder built before)",
    )
    opts = p.parse_args(argv)
    if opts.quick:
        opts.runs = 1
        opts.duration = 1.0
        opts.warmup = 0.3
        if not opts.scenarios:
            opts.scenarios = ",".join(QUICK_SCENARIOS)
    check_choices(p, opts, only=names, scenarios=scen)
    if opts.runs < 1 or opts.duration <= 0 or opts.warmup < 0 or opts.idle_conns < 1:
        p.error("--runs, --duration and --idle-conns must be positive")
    return opts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = parse_args(args)
    command = shlex.join([".venv/bin/python", "bench/echo/run.py", *args])
    sigterm_unwinds()
    raise_nofile()
    build_with_make("bench/bin/loadgen", "bench/bin/cecho")
    global COMPILED
    if opts.compiled:
        COMPILED = build_compiled()
    servers = [s for s in SERVERS if not opts.only or s.name in opts.only.split(",")]
    if not opts.only and not COMPILED:  # by default, the compiled build only when there is one
        servers = [s for s in servers if not s.name.endswith("-compiled")]
    if COMPILED and any(s.name.endswith("-compiled") for s in servers):
        check_compiled(COMPILED)
    scenarios = [
        sc for sc in SCENARIOS if not opts.scenarios or sc.name in opts.scenarios.split(",")
    ]
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="echo-bench-") as tmp:
        # Runs interleaved (run 1 of every server, then run 2...): a change in
        # the machine's load over the minutes of a benchmark hits every server.
        cells, raw = alternate(
            servers,
            scenarios,
            opts.runs,
            skipped,
            lambda server, sc, c, label: run_cell(server, sc, c, opts, Path(tmp), label),
        )
    text = report(cells, servers, scenarios, skipped, opts, command)
    return publish(text, cells, raw, opts.markdown, opts.json)


if __name__ == "__main__":
    sys.exit(main())
