"""What the benchmark drivers share: servers as subprocesses, /proc sampling, load runs.

One copy of the scaffolding every driver needs, so that a fix (a port probe, a
stuck process, a CPU sample) reaches them all: starting a server and waiting
until its port accepts, stopping it by its PID, sampling a process's CPU time
and memory from ``/proc``, running a C load generator that reports the edges
of its measured window, and formatting medians. For the drivers that time a
protocol's ``data_received`` without sockets: a stand-in transport, a call
run as a loop callback, and an instruction count under callgrind.

A driver in ``bench/`` imports it as ``import benchlib``; one in a folder
below (``bench/chat/run.py``) puts ``bench/`` on ``sys.path`` first.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BIN = BENCH / "bin"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
LINECHAT = str(VENV_BIN / "linechat")
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """One run failed; the message says why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sigterm_unwinds() -> None:
    """SIGTERM unwinds like Ctrl-C, so every server started is stopped by its PID."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def raise_nofile() -> None:
    """The open-file limit raised to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(
    probe: Callable[[], object],
    process: subprocess.Popen[Any] | None = None,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> None:
    """Retry ``probe`` until it raises no OSError; BenchError if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BenchError(f"{process.args!r} exited with status {process.returncode}")
        try:
            probe()
            return
        except OSError:
            time.sleep(interval)
    raise BenchError(f"the server was not ready within {timeout:.0f} s")


def wait_port(
    port: int,
    process: subprocess.Popen[Any] | None = None,
    timeout: float = 15.0,
    host: str = HOST,
) -> None:
    """Return once ``port`` accepts a connection; BenchError if ``process`` exits first."""
    wait_ready(
        lambda: socket.create_connection((host, port), timeout=0.5).close(), process, timeout
    )


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` s; True if SIGTERM was enough."""
    if process.poll() is not None:
        return True
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent busy on the whole machine (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def vmrss_kib(pid: int) -> int:
    """The resident set of a process, in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, on one line (for an error message)."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


@contextlib.contextmanager
def watchdog(proc: subprocess.Popen[Any], seconds: float) -> Iterator[None]:
    """Kill ``proc`` (by its PID) if it outlives ``seconds``."""
    timer = threading.Timer(seconds, proc.kill)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def build_with_make(*targets: str) -> None:
    """``make TARGETS`` in the checkout (the C tools); exits with make's output if it fails."""
    try:
        proc = subprocess.run(
            ["make", "-s", "-C", str(REPO), *targets], capture_output=True, text=True
        )
    except OSError as exc:
        raise SystemExit(f"cannot run make to build the C tools: {exc}") from exc
    missing = [t for t in targets if t.startswith("bench/bin/") and not (REPO / t).exists()]
    if proc.returncode != 0 or missing:
        raise SystemExit(f"building {' '.join(targets)} failed:\n{proc.stdout}{proc.stderr}")


class ServerProcess:
    """A server subprocess pinned to one CPU, its output in a log file; stopped by PID."""

    def __init__(
        self,
        argv: Sequence[str],
        cpu: int,
        log_path: Path,
        port: int,
        cwd: Path = REPO,
        **popen: Any,
    ) -> None:
        self.port = port
        self.log_path = log_path
        self.argv = ["taskset", "-c", str(cpu), *argv]
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                **popen,
            )
        except OSError as exc:
            self._log.close()
            raise BenchError(f"cannot start {shlex.join(self.argv)}: {exc}") from exc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def command(self) -> str:
        """The server's command line, without the ``taskset`` in front."""
        return shlex.join(self.argv[3:])

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BenchError(
                    f"exited with status {code} before accepting: {tail(self.log_path)}"
                )
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                try:
                    s.connect((HOST, self.port))
                except OSError:
                    time.sleep(0.05)
                    continue
                return
        raise BenchError(f"port {self.port} did not accept within {timeout:.0f} s")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise BenchError(f"server exited with status {code}: {tail(self.log_path)}")

    def exit_note(self) -> str:
        """``; server exited: LOG`` if the server has exited, else nothing."""
        return f"; server exited: {tail(self.log_path)}" if self.proc.poll() is not None else ""

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@dataclass
class Window:
    """A load generator run: its result line, exit status, stderr and the measured window."""

    code: int
    result: dict[str, Any] | None
    stderr: str
    cpu0: float | None = None
    cpu1: float | None = None
    t0: float = 0.0
    t1: float = 0.0
    busy0: float = 0.0
    busy1: float = 0.0

    @property
    def server_cpu_s(self) -> float:
        if self.cpu0 is None or self.cpu1 is None:
            raise BenchError("loadgen did not report the measured window")
        return self.cpu1 - self.cpu0

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0


def run_measured(argv: list[str], cpu: Callable[[], float], mode: str, bound: float) -> Window:
    """Run a load generator; sample server CPU (``cpu()``) and the machine's at its window's edges.

    The generator prints ``{"event": "measure_start"}`` and ``{"event":
    "measure_end"}`` around the measured window, and one result line with
    ``"mode": MODE``; it is killed if it outlives ``bound`` seconds.
    """
    win = Window(code=-1, result=None, stderr="")
    with (
        tempfile.TemporaryFile("w+") as err,
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True) as proc,
        watchdog(proc, bound),
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            event = msg.get("event")
            if event == "measure_start":
                win.cpu0, win.t0 = cpu(), time.monotonic()
                win.busy0 = machine_busy_seconds()
            elif event == "measure_end":
                win.cpu1, win.t1 = cpu(), time.monotonic()
                win.busy1 = machine_busy_seconds()
            elif msg.get("mode") == mode:
                win.result = msg
        win.code = proc.wait()
        err.seek(0)
        win.stderr = err.read().strip()
    return win


def run_idle_hold(
    argv: list[str], server: ServerProcess, bound: float, settle: float = 1.0
) -> tuple[int, int | None, float, str]:
    """Run a load generator in ``--idle`` mode; the server's VmRSS once it holds its clients.

    The generator prints a ready line (with ``establish_s``) once every client
    is connected, then holds them until its stdin closes. Returns the exit
    status, the VmRSS in KiB (None if it never got ready), the seconds it took
    to connect, and its stderr.
    """
    with (
        tempfile.TemporaryFile("w+") as err,
        subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        ) as proc,
        watchdog(proc, bound),
    ):
        assert proc.stdout is not None and proc.stdin is not None
        ready = proc.stdout.readline()
        after = None
        establish = 0.0
        if ready:
            establish = float(json.loads(ready).get("establish_s", 0.0))
            time.sleep(settle)
            server.check_alive()
            after = vmrss_kib(server.pid)
        proc.stdin.close()  # releases the clients
        code = proc.wait()
        err.seek(0)
        stderr = err.read().strip()
    return code, after, establish, stderr


def idle_growth(
    argv: list[str], server: ServerProcess, bound: float, clients: int, per_client: str
) -> dict[str, float]:
    """The server's VmRSS before and while ``argv`` (``--idle`` mode) holds ``clients`` idle.

    The figures of an idle run: ``rss_before_kib``, ``rss_after_kib``, the
    growth per client under the key ``per_client``, and ``establish_s``; a
    BenchError if the generator fails or never gets its clients connected.
    """
    time.sleep(0.3)
    before = vmrss_kib(server.pid)
    code, after, establish, stderr = run_idle_hold(argv, server, bound)
    if code != 0 or after is None:
        raise BenchError(f"loadgen --idle exit status {code}: {stderr[-1500:]}")
    return {
        "rss_before_kib": float(before),
        "rss_after_kib": float(after),
        per_client: (after - before) / clients,
        "establish_s": establish,
    }


@dataclass
class Cell:
    """All runs of one (server, scenario)."""

    results: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, key: str) -> float | None:
        values = [r[key] for r in self.results if key in r]
        return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators; ``-`` for none, ``inf`` for infinity."""
    if value is None:
        return "-"
    if value == float("inf"):
        return "inf"
    return f"{value:,.{digits}f}"


def cell_value(c: Cell | None, key: str, digits: int = 0, scale: float = 1.0) -> str:
    """A cell's median of ``key`` for a table: FAIL if every run failed, failures noted."""
    if c is None:
        return "-"
    if not c.results:
        return "FAIL" if c.errors else "-"
    v = c.median(key)
    text = fmt(v / scale if v is not None else None, digits)
    return text + (f" ({len(c.errors)} failed)" if c.errors else "")


class Named(Protocol):
    """A server or a scenario of a benchmark: something with a name."""

    @property
    def name(self) -> str: ...


ServerT = TypeVar("ServerT", bound=Named)
ScenarioT = TypeVar("ScenarioT", bound=Named)
ProcessT = TypeVar("ProcessT", bound=ServerProcess)
T = TypeVar("T")


def fresh_server_run(
    start: Callable[[], ProcessT],
    measure: Callable[[ProcessT], dict[str, float]],
    cell: Cell,
    label: str,
    summary: Callable[[dict[str, float]], str] | None = None,
) -> str | None:
    """One run on a fresh server, stopped after it: its figures go to ``cell.results``.

    A failed measurement goes to ``cell.errors``; a server that does not start
    or accept returns the reason (the caller skips that server from then on).
    ``summary(figures)``, if given, is logged after the label once a run succeeds.
    """
    try:
        srv = start()
    except BenchError as exc:
        return str(exc)
    try:
        try:
            srv.wait_ready()
        except BenchError as exc:
            return f"`{srv.command}` {exc}"
        try:
            result = measure(srv)
        except BenchError as exc:
            cell.errors.append(str(exc).replace("\n", " "))
            log(f"FAIL {label}: {exc}")
            return None
    finally:
        srv.stop()
    cell.results.append(result)
    if summary is not None:
        log(f"{label}: {summary(result)}")
    return None


def alternate(
    servers: list[ServerT],
    scenarios: list[ScenarioT],
    runs: int,
    skipped: dict[str, str],
    one_run: Callable[[ServerT, ScenarioT, Cell, str], str | None],
) -> tuple[dict[tuple[str, str], Cell], list[dict[str, Any]]]:
    """Every (server, scenario) cell ``runs`` times, interleaved: run 1 of every server, then 2...

    A change in the machine's load over the minutes of a benchmark so hits
    every server alike. ``one_run(server, scenario, cell, label)`` returns a
    reason when the server cannot run: it goes to ``skipped`` and the server
    is left out from then on. Returns the cells and every run's figures.
    """
    cells: dict[tuple[str, str], Cell] = {}
    raw: list[dict[str, Any]] = []
    for run in range(runs):
        for sc in scenarios:
            for server in servers:
                if server.name in skipped:
                    continue
                c = cells.setdefault((server.name, sc.name), Cell())
                label = f"{server.name} / {sc.name} / run {run + 1}/{runs}"
                before = len(c.results)
                reason = one_run(server, sc, c, label)
                if reason is not None:
                    skipped[server.name] = reason
                    log(f"SKIP {server.name}: {reason}")
                elif len(c.results) > before:
                    raw.append({"server": server.name, "scenario": sc.name, **c.results[-1]})
    return cells, raw


def publish(
    text: str,
    cells: dict[tuple[str, str], Cell],
    raw: list[dict[str, Any]],
    markdown: Path | None,
    json_path: Path | None,
) -> int:
    """Print the report (and write it, and the raw figures, where asked); 1 if a run failed."""
    print(text)
    if markdown:
        markdown.write_text(text)
    if json_path:
        json_path.write_text(json.dumps(raw, indent=1) + "\n")
    return 1 if any(c.errors for c in cells.values()) else 0


def add_run_arguments(p: argparse.ArgumentParser, duration: float) -> None:
    """The options every side-by-side driver has: runs, times, selection, CPUs, outputs."""
    p.add_argument("--runs", type=int, default=3, help="runs per cell (median reported)")
    p.add_argument("--duration", type=float, default=duration, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run")
    p.add_argument("--only", help="comma-separated servers to run")
    p.add_argument("--scenarios", help="comma-separated scenarios to run")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--loadgen-cpu", type=int, default=1)
    p.add_argument("--markdown", type=Path, help="also write the Markdown report here")
    p.add_argument("--json", type=Path, help="write every run's raw figures here")


def check_choices(
    parser: argparse.ArgumentParser, opts: argparse.Namespace, **known: list[str]
) -> None:
    """Each named option (a comma-separated list) holds only known names, or a usage error."""
    for attr, names in known.items():
        value = getattr(opts, attr)
        if value:
            wanted = [v.strip() for v in value.split(",") if v.strip()]
            unknown = [v for v in wanted if v not in names]
            if unknown:
                parser.error(f"unknown --{attr}: {', '.join(unknown)} (known: {', '.join(names)})")


async def serve_streams(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
    port: int,
) -> None:
    """``asyncio.start_server(handle)`` on 127.0.0.1:PORT (backlog 4096), served forever."""
    server = await asyncio.start_server(handle, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


async def serve_protocol(factory: Callable[[], asyncio.Protocol], port: int) -> None:
    """``loop.create_server(factory)`` on 127.0.0.1:PORT (backlog 4096), served forever."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


def run_loop(main: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
    """Run ``main()`` on asyncio's loop or uvloop until it ends or Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        if loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        else:
            asyncio.run(main())


# -- a protocol driven without sockets --------------------------------------------


class NullTransport:
    """What a protocol calls on its transport; ``write`` drops the bytes in C.

    ``sink``, when given, receives every write instead (to check the replies).
    ``max_size`` is that of asyncio's selector transports.
    """

    def __init__(self, sink: Callable[[bytes], Any] | None = None) -> None:
        self.write: Callable[[bytes], Any] = sink or collections.deque[bytes](maxlen=0).append
        self.max_size = 256 * 1024

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def run_as_callback(loop: asyncio.AbstractEventLoop, fn: Callable[[], T]) -> T:
    """``fn()`` run by ``loop`` as a callback, outside any task, as it runs ``data_received``."""
    future: asyncio.Future[T] = loop.create_future()

    def call() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)

    loop.call_soon(call)
    return loop.run_until_complete(future)


COLLECTED = re.compile(rb"Collected : (\d+)")


def callgrind_instructions(
    argv: Sequence[str], out_file: str = "/dev/null", env: dict[str, str] | None = None
) -> int:
    """The instructions ``argv`` executes under ``valgrind --tool=callgrind``, all told."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *argv],
        capture_output=True,
        check=True,
        env=env,
    )
    match = COLLECTED.search(out.stderr)
    if match is None:
        raise SystemExit(f"no instruction count from callgrind: {out.stderr[-500:]!r}")
    return int(match.group(1))
