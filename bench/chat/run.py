"""Chat fan-out benchmark: linechat's chat against ngircd and InspIRCd, side by side.

Every server runs as a subprocess pinned to one CPU (``taskset -c 0``), the C
load generator ``bench/bin/chat-loadgen`` pinned to another (``taskset -c 1``).
Each run starts a fresh server on a free loopback port (ngircd and InspIRCd
with a config file written here into a temporary directory, in the
foreground, as ``nobody`` when this runs as root), waits until it accepts, runs
one scenario, and stops it by its PID. Runs alternate across servers (run 1
of every server, then run 2...), and medians are reported.

Scenarios (200 clients in one channel, 4 of them talking, 64-byte texts):

- ``fanout``: the talkers send as fast as a window of 16 lines each allows
  (a line leaves the window once every member has it). Deliveries per server
  CPU-second (utime+stime from ``/proc/PID/stat`` over the measured window).
- ``steady``: 250 lines/s per talker; p50/p99 delivery latency.
- ``slow``: the same, with one more member that stops reading once joined;
  the others' p99 against ``steady``'s.
- ``idle``: 5,000 clients register and stay idle; server VmRSS growth / 5,000.

Every delivery is checked by the load generator: nothing lost, duplicated,
reordered or corrupt, or the run fails.

    .venv/bin/python bench/chat/run.py --quick
    .venv/bin/python bench/chat/run.py --runs 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchlib import (  # noqa: E402  (bench/benchlib.py: what the drivers share)
    BIN,
    HOST,
    LINECHAT,
    PYTHON,
    BenchError,
    Cell,
    ServerProcess,
    add_run_arguments,
    alternate,
    build_with_make,
    check_choices,
    cpu_model,
    cpu_seconds,
    free_port,
    fresh_server_run,
    idle_growth,
    log,
    publish,
    raise_nofile,
    run_measured,
    sigterm_unwinds,
)
from benchlib import cell_value as value  # noqa: E402

LOADGEN = BIN / "chat-loadgen"
OPER = ("bench", "benchpass")


# -- the servers ---------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    name: str
    what: str
    #: argv for a port and a private directory (where a config file may go).
    command: Callable[[int, Path], list[str]]
    #: Extra load generator arguments (ngircd's talkers need OPER and +F).
    loadgen_args: tuple[str, ...] = ()
    #: Run as an unprivileged user when this runs as root.
    drop_root: bool = False
    #: Why it cannot run here, if it cannot (checked before any run).
    unavailable: Callable[[], str | None] = lambda: None


def _ngircd(port: int, tmp: Path) -> list[str]:
    conf = tmp / "ngircd.conf"
    conf.write_text(
        f"""# Written by bench/chat/run.py: loopback only, limits raised, penalties off.
[Global]
\tName = bench.ngircd
\tInfo = linechat chat fan-out benchmark
\tListen = {HOST}
\tPorts = {port}
\tMotdPhrase = bench
\tPidFile = {tmp}/ngircd.pid
[Limits]
\tMaxConnections = 0
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tMaxNickLength = 30
\t# 0: no penalty time at all (the flood control).
\tMaxPenaltyTime = 0
\tPingTimeout = 600
\tPongTimeout = 600
[Options]
\tDNS = no
\tIdent = no
\tPAM = no
[Operator]
\t# The talkers become operators to set user mode +F, without which ngircd
\t# parses at most 3 commands per read whatever the penalty setting.
\tName = {OPER[0]}
\tPassword = {OPER[1]}
"""
    )
    return ["ngircd", "--nodaemon", "--config", str(conf)]


def _inspircd(port: int, tmp: Path) -> list[str]:
    conf = tmp / "inspircd.conf"
    (tmp / "motd.txt").write_text("bench\n")
    conf.write_text(
        f"""# Written by bench/chat/run.py: loopback only, limits raised, flood control off.
<server name="bench.inspircd" description="linechat chat fan-out benchmark" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="{HOST}" port="{port}" type="clients">
<connect name="bench" allow="*" resolvehostnames="no" limit="100000"
         localmax="0" globalmax="0" maxconnwarn="no" maxchans="100"
         commandrate="1000000000" fakelag="no" threshold="1000000"
         recvq="1048576" softsendq="16777216" hardsendq="16777216"
         pingfreq="600" timeout="60">
<channels users="100" opers="100">
<pid file="{tmp}/inspircd.pid">
<files motd="{tmp}/motd.txt">
<dns timeout="1">
<options syntaxhints="no" announcets="yes">
<performance softlimit="100000" somaxconn="4096" clonesonconnect="no">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{tmp}/inspircd.log">
"""
    )
    # --runasroot is not needed: as root, the driver runs it as nobody.
    return ["inspircd", "--nofork", "--nopid", "--config", str(conf)]


def _linechat(port: int, tmp: Path) -> list[str]:
    return [
        LINECHAT,
        "serve",
        "chat",
        "--host",
        HOST,
        "--port",
        str(port),
        "--flood-rate",
        "0",
        "--max-connections",
        "20000",
    ]


def _proto(*extra: str) -> Callable[[int, Path], list[str]]:
    def command(port: int, tmp: Path) -> list[str]:
        return [PYTHON, str(HERE / "proto_server.py"), "--port", str(port), *extra]

    return command


def _tool_missing(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if shutil.which(name) else f"`{name}` is not installed"

    return check


def _chat_missing() -> str | None:
    probe = "from linechat.services import BUILTIN; raise SystemExit('chat' not in BUILTIN)"
    if subprocess.run([PYTHON, "-c", probe], capture_output=True).returncode != 0:
        return (
            "the chat service is not on this branch yet (linechat.services.BUILTIN has no 'chat')"
        )
    return None


SERVERS = [
    Server(
        "ngircd",
        "ngircd (C), MaxPenaltyTime = 0, talkers are operators with user mode +F",
        _ngircd,
        # Its listen backlog is 10: the load generator's default of 8 pending fits.
        loadgen_args=("--oper", f"{OPER[0]}:{OPER[1]}", "--talker-mode", "+F"),
        drop_root=True,
        unavailable=_tool_missing("ngircd"),
    ),
    Server(
        "inspircd",
        "InspIRCd (C++), fakelag off, commandrate and threshold out of reach, 16 MiB sendq",
        _inspircd,
        # It completes registrations on a once-a-second tick: keep many pending.
        loadgen_args=("--max-pending", "1000"),
        drop_root=True,
        unavailable=_tool_missing("inspircd"),
    ),
    Server(
        "linechat",
        "linechat serve chat --flood-rate 0 (defaults otherwise: uvloop, 256 KiB sendq)",
        _linechat,
        loadgen_args=("--max-pending", "64"),
        unavailable=_chat_missing,
    ),
    Server(
        "proto-uvloop",
        "bench/chat/proto_server.py: batched fan-out prototype on LineProtocol, uvloop",
        _proto("--loop", "uvloop"),
        loadgen_args=("--max-pending", "64"),
    ),
    Server(
        "proto-asyncio",
        "the same prototype on asyncio's own loop",
        _proto("--loop", "asyncio"),
        loadgen_args=("--max-pending", "64"),
    ),
    Server(
        "proto-queue",
        "the prototype gathering per member (a list append per delivery, a join per member)",
        _proto("--loop", "uvloop", "--design", "queue"),
        loadgen_args=("--max-pending", "64"),
    ),
    Server(
        "proto-naive",
        "the prototype writing each line to each member at once (no batching), uvloop",
        _proto("--loop", "uvloop", "--design", "naive"),
        loadgen_args=("--max-pending", "64"),
    ),
]
DEFAULT_SERVERS = ["ngircd", "inspircd", "linechat", "proto-uvloop"]
C_SERVERS = ["ngircd", "inspircd"]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    rate: float = 0.0  # lines/s per talker, 0: as fast as the window allows
    slow: int = 0
    idle: bool = False


SCENARIOS = [
    Scenario("fanout", "fan-out as fast as the window allows"),
    Scenario("steady", "steady rate", rate=250.0),
    Scenario("slow", "steady rate, one member not reading", rate=250.0, slow=1),
    Scenario("idle", "memory per registered idle client", idle=True),
]


# -- processes -----------------------------------------------------------------


def unprivileged() -> tuple[int, int] | None:
    """(uid, gid) of ``nobody`` when running as root, else None (run as we are)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError as exc:
        raise SystemExit("running as root and there is no user 'nobody' to run servers as") from exc
    return entry.pw_uid, entry.pw_gid


class RunningServer(ServerProcess):
    """A fresh server on a free port, with a private directory (its config, its log)."""

    def __init__(self, server: Server, cpu: int, workdir: Path) -> None:
        self.server = server
        port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{server.name}-", dir=workdir))
        ids = unprivileged() if server.drop_root else None
        if ids is not None:
            os.chown(self.dir, *ids)
        extra: dict[str, Any] = {}
        if ids is not None:
            extra = {"user": ids[0], "group": ids[1], "extra_groups": []}
        argv = server.command(port, self.dir)
        super().__init__(argv, cpu, self.dir / "server.log", port, cwd=self.dir, **extra)


# -- one run -------------------------------------------------------------------


def loadgen_argv(opts: argparse.Namespace, *args: str) -> list[str]:
    return ["taskset", "-c", str(opts.loadgen_cpu), str(LOADGEN), *args]


def run_fanout(srv: RunningServer, sc: Scenario, opts: argparse.Namespace) -> dict[str, float]:
    argv = loadgen_argv(
        opts,
        "--port",
        str(srv.port),
        "--clients",
        str(opts.clients + sc.slow),
        "--talkers",
        str(opts.talkers),
        "--size",
        str(opts.size),
        "--rate",
        str(sc.rate * opts.rate_scale),
        "--window",
        str(opts.window),
        "--slow",
        str(sc.slow),
        "--duration",
        str(opts.duration),
        "--warmup",
        str(opts.warmup),
        "--connect-timeout",
        "60",
        "--drain-timeout",
        "10",
        *srv.server.loadgen_args,
    )
    bound = 60 + opts.warmup + opts.duration + 10 + 15
    win = run_measured(argv, lambda: cpu_seconds(srv.pid), "fanout", bound)
    result, code, stderr = win.result, win.code, win.stderr
    if result is None or code not in (0, 1):
        raise BenchError(f"loadgen exit status {code}: {stderr[-1500:]}{srv.exit_note()}")
    bad = {k: result[k] for k in ("lost", "duplicated", "reordered", "corrupt") if result[k]}
    if bad:
        raise BenchError(f"deliveries not intact: {bad}; {stderr[-500:]}")
    deliveries = float(result["deliveries"])
    cpu = win.server_cpu_s
    return {
        "deliveries": deliveries,
        "deliveries_per_s": float(result["deliveries_per_s"]),
        "server_cpu_s": cpu,
        "server_cpu_pct": 100.0 * cpu / win.seconds if win.seconds > 0 else 0.0,
        "loadgen_cpu_pct": 100.0 * float(result["cpu_s"]) / float(result["seconds"]),
        "per_cpu_s": deliveries / cpu if cpu > 0 else float("inf"),
        "ns_per_delivery": 1e9 * cpu / deliveries if deliveries else 0.0,
        "p50_us": float(result["p50_us"]),
        "p99_us": float(result["p99_us"]),
        "sent": float(result["sent"]),
        "window_full": float(result["window_full"]),
        "slow_dropped": float(result["slow_dropped"]),
    }


def run_idle(srv: RunningServer, sc: Scenario, opts: argparse.Namespace) -> dict[str, float]:
    n = opts.idle_clients
    argv = loadgen_argv(
        opts,
        "--idle",
        "--port",
        str(srv.port),
        "--clients",
        str(n),
        "--hold",
        "120",
        "--connect-timeout",
        "120",
        *srv.server.loadgen_args,
    )
    return idle_growth(argv, srv, 120 + 120 + 30, n, "kib_per_client")


def run_cell(
    server: Server, sc: Scenario, cell: Cell, opts: argparse.Namespace, workdir: Path, label: str
) -> str | None:
    """One run on a fresh server; a reason if the server will not start."""
    return fresh_server_run(
        lambda: RunningServer(server, opts.server_cpu, workdir),
        lambda srv: run_idle(srv, sc, opts) if sc.idle else run_fanout(srv, sc, opts),
        cell,
        label,
        idle_summary if sc.idle else fanout_summary,
    )


def fanout_summary(result: dict[str, float]) -> str:
    return (
        f"{result['per_cpu_s'] / 1e6:.2f} M deliveries/CPU-s "
        f"({result['deliveries_per_s'] / 1e6:.2f} M/s, server CPU "
        f"{result['server_cpu_pct']:.0f}%), p50 {result['p50_us']:,.0f} µs, "
        f"p99 {result['p99_us']:,.0f} µs"
    )


def idle_summary(result: dict[str, float]) -> str:
    return f"{result['kib_per_client']:.2f} KiB/client"


# -- the report ----------------------------------------------------------------


def machine() -> str:
    release, python = platform.release(), platform.python_version()
    return f"{cpu_model()}, {os.cpu_count()} CPUs, Linux {release}, Python {python}"


def versions() -> str:
    out = []
    for argv in (["ngircd", "--version"], ["inspircd", "--version"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
            out.append(text.strip().splitlines()[0] if text.strip() else argv[0])
    return "; ".join(out)


def report(
    cells: dict[tuple[str, str], Cell],
    servers: list[Server],
    scenarios: list[Scenario],
    skipped: dict[str, str],
    opts: argparse.Namespace,
    command: str,
) -> str:
    def cell(s: str, sc: str) -> Cell | None:
        return cells.get((s, sc))

    shown = [s for s in servers if s.name not in skipped]
    names = [sc.name for sc in scenarios]
    out = [
        "### Chat fan-out run",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}  ",
        f"Machine: {machine()}  ",
        f"Servers: {versions()}  ",
        f"{opts.clients} clients in one channel, {opts.talkers} talkers, {opts.size}-byte texts, "
        f"window {opts.window} lines per talker; {opts.warmup:g} s warm-up + {opts.duration:g} s "
        f"measured; server on CPU {opts.server_cpu}, load generator on CPU {opts.loadgen_cpu}; "
        f"{opts.runs} run(s) per cell alternated across servers, medians; a fresh server per run; "
        "every delivery checked (none lost, duplicated, reordered or corrupt, or the run fails).",
        "",
    ]
    if "fanout" in names:
        best_c: float | None = None
        for name in C_SERVERS:
            c = cell(name, "fanout")
            v = c.median("per_cpu_s") if c else None
            if v is not None and (best_c is None or v > best_c):
                best_c = v
        out += [
            "| server | deliveries per server CPU-s | vs best C | ns per delivery "
            "| deliveries/s | server CPU % | loadgen CPU % | p50 µs | p99 µs |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for s in shown:
            c = cell(s.name, "fanout")
            v = c.median("per_cpu_s") if c else None
            ratio = f"{v / best_c:.2f}x" if v is not None and best_c else "-"
            out.append(
                f"| {s.name} | {value(c, 'per_cpu_s', 2, 1e6)} M | {ratio} "
                f"| {value(c, 'ns_per_delivery')} | {value(c, 'deliveries_per_s', 2, 1e6)} M "
                f"| {value(c, 'server_cpu_pct')} | {value(c, 'loadgen_cpu_pct')} "
                f"| {value(c, 'p50_us')} | {value(c, 'p99_us')} |"
            )
        out.append("")
    if "steady" in names or "slow" in names:
        rate = SCENARIOS[1].rate * opts.rate_scale
        out += [
            f"Slow consumer: {rate:g} lines/s per talker; *slow* adds a member that stops "
            "reading once joined (socket receive buffer 4 KiB); p99 of the others.",
            "",
            "| server | steady deliveries per server CPU-s | steady p50 µs | steady p99 µs "
            "| slow p50 µs | slow p99 µs | slow / steady p99 | slow member dropped |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for s in shown:
            a, b = cell(s.name, "steady"), cell(s.name, "slow")
            pa = a.median("p99_us") if a else None
            pb = b.median("p99_us") if b else None
            ratio = f"{pb / pa:.2f}x" if pa and pb else "-"
            dropped = "-"
            if b and b.results:
                dropped = f"{sum(int(r['slow_dropped']) for r in b.results)}/{len(b.results)} runs"
            out.append(
                f"| {s.name} | {value(a, 'per_cpu_s', 2, 1e6)} M "
                f"| {value(a, 'p50_us')} | {value(a, 'p99_us')} "
                f"| {value(b, 'p50_us')} | {value(b, 'p99_us')} | {ratio} | {dropped} |"
            )
        out.append("")
    if "idle" in names:
        out += [
            f"Memory: {opts.idle_clients:,} clients register (NICK/USER, 001) and stay idle; "
            "server VmRSS growth divided by the clients (kernel socket memory is not in VmRSS).",
            "",
            "| server | RSS before MiB | RSS after MiB | KiB per idle client | connect s |",
            "|---|--:|--:|--:|--:|",
        ]
        for s in shown:
            c = cell(s.name, "idle")
            out.append(
                f"| {s.name} | {value(c, 'rss_before_kib', 1, 1024)} "
                f"| {value(c, 'rss_after_kib', 1, 1024)} | {value(c, 'kib_per_client', 2)} "
                f"| {value(c, 'establish_s', 2)} |"
            )
        out.append("")
    out.append("Servers:")
    out.append("")
    for s in servers:
        note = f" — **skipped**: {skipped[s.name]}" if s.name in skipped else ""
        out.append(f"- `{s.name}`: {s.what}{note}")
    errors = [f"- {n} / {scn}: {e}" for (n, scn), c in cells.items() for e in c.errors]
    if errors:
        out += ["", "Failed runs:", "", *errors]
    out.append("")
    return "\n".join(out)


# -- main ----------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = [s.name for s in SERVERS]
    scen = [s.name for s in SCENARIOS]
    p = argparse.ArgumentParser(
        description="Chat fan-out benchmark: linechat's chat against ngircd and InspIRCd.",
        epilog=f"servers: {', '.join(names)} (default {','.join(DEFAULT_SERVERS)}); "
        f"scenarios: {', '.join(scen)}",
    )
    add_run_arguments(p, duration=4.0)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run, short")
    p.add_argument("--clients", type=int, default=200, help="clients in the channel")
    p.add_argument("--talkers", type=int, default=4)
    p.add_argument("--size", type=int, default=64, help="bytes of text per PRIVMSG")
    p.add_argument("--window", type=int, default=16, help="lines in flight per talker")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply the steady rate")
    p.add_argument("--idle-clients", type=int, default=5000)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.runs = 1
        opts.duration = 1.5
        opts.warmup = 0.5
    check_choices(p, opts, only=names, scenarios=scen)
    for attr in ("only", "scenarios"):
        if getattr(opts, attr):
            setattr(opts, attr, [x.strip() for x in getattr(opts, attr).split(",") if x.strip()])
    if opts.runs < 1 or opts.duration <= 0 or opts.clients < opts.talkers + 1:
        p.error("--runs and --duration must be positive, --clients above --talkers")
    return opts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = parse_args(args)
    command = shlex.join([".venv/bin/python", "bench/chat/run.py", *args])
    sigterm_unwinds()
    raise_nofile()
    build_with_make("bench/bin/chat-loadgen")
    servers = [s for s in SERVERS if s.name in (opts.only or DEFAULT_SERVERS)]
    scenarios = [sc for sc in SCENARIOS if not opts.scenarios or sc.name in opts.scenarios]
    skipped: dict[str, str] = {}
    for s in servers:
        reason = s.unavailable()
        if reason:
            skipped[s.name] = reason
            log(f"SKIP {s.name}: {reason}")
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        os.chmod(tmp, 0o755)  # servers run as nobody read their config under it
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
