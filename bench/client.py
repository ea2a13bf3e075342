"""Pipe-mode client benchmark: `linechat connect` against socat, ncat and the seed's client.

Each client sends N short lines from a file (stdin redirected from it) to
`linechat serve --loop uvloop` on 127.0.0.1 and prints the answers; the last
input line is ``.``, so the server closes once every answer is sent. The
driver reads the client's stdout through a pipe and checks every line is the
expected ``You sent: ...`` answer, in order (ncat -C keeps the CR of CRLF, the
others turn CRLF into LF). Time is wall time from starting the client to its
exit, start-up included. The server is pinned to CPU 0, the client to CPU 1.

Time to first byte: a server (a thread of this driver) notes when the first
byte of a connection arrives; the client is started with one line waiting on
its stdin. Reported: the median of 10 starts.

Python processes run with their bytecode cached, as after ``pip install``
(``PYTHONPYCACHEPREFIX`` points into the run's temporary folder, and
``PYTHONDONTWRITEBYTECODE`` is dropped for them); one untimed warm-up run per
client fills the cache. Time to first byte is also reported without a cache
(``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` in the checkout:
linechat's modules are compiled from source at each start; the standard
library keeps its installed bytecode).

    .venv/bin/python bench/client.py                 # 1,000,000 lines, 3 runs
    .venv/bin/python bench/client.py --lines 100000 --runs 1 --seed-lines 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchlib import stop_process

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
HOST = "127.0.0.1"
STARTED = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")

Command = Callable[[int], list[str]]
#: The environment of every process started; see ``python_env``.
ENV: dict[str, str] = dict(os.environ)


def python_env(cache: Path | None) -> dict[str, str]:
    """Bytecode cached under ``cache``; None: none written (linechat's own compiled each start)."""
    env = dict(os.environ)
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


#: The ``linechat`` command as pip installs it (no runpy, as ``python -m`` needs).
SCRIPT = REPO / ".venv" / "bin" / "linechat"

CLIENTS: dict[str, tuple[Command, str]] = {
    "linechat connect": (
        lambda port: [PYTHON, "-m", "linechat", "connect", HOST, str(port)],
        "python -m linechat connect 127.0.0.1 PORT",
    ),
    "linechat connect (script)": (
        lambda port: [str(SCRIPT), "connect", HOST, str(port)],
        "linechat connect 127.0.0.1 PORT",
    ),
    "socat": (
        lambda port: ["socat", "-t", "30", "-", f"TCP:{HOST}:{port},crlf"],
        "socat -t 30 - TCP:127.0.0.1:PORT,crlf",
    ),
    "ncat": (lambda port: ["ncat", "-C", HOST, str(port)], "ncat -C 127.0.0.1 PORT"),
    "seed client (lockstep)": (
        lambda port: [PYTHON, str(HERE / "seed_client.py"), "--port", str(port)],
        "python bench/seed_client.py --port PORT",
    ),
}


def pinned(cpu: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command


@contextmanager
def echo_server() -> Iterator[int]:
    options = ["--log-level", "warning", "--port", "0", "--idle-timeout", "0"]
    process = subprocess.Popen(
        pinned(
            0, [PYTHON, "-m", "linechat", "serve", "--loop", "uvloop", "--host", HOST, *options]
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert process.stderr is not None
        banner = b""
        deadline = time.monotonic() + 15
        while (match := STARTED.search(banner)) is None:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"linechat serve did not start: {banner!r}")
            banner += process.stderr.readline()
        yield int(match.group(1))
    finally:
        stop_process(process, timeout=15.0)


def write_input(path: Path, lines: int) -> bytes:
    """The input file; returns the expected answers (LF-ended)."""
    body = b"".join(b"line %d\n" % i for i in range(lines))
    path.write_bytes(body + b".\n")
    return body.replace(b"line ", b"You sent: line ")


def run_client(command: list[str], source: Path, expected: bytes, timeout: float) -> float:
    """One run: wall seconds; raises if the output is not exactly the answers."""
    chunks: list[bytes] = []
    with source.open("rb") as stdin:
        started = time.perf_counter()
        process = subprocess.Popen(
            pinned(1, command),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        try:
            process.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"{command[0]} timed out") from None
        elapsed = time.perf_counter() - started
        stderr = process.stderr.read() if process.stderr else b""
        process.stdout.close()
        if process.stderr:
            process.stderr.close()
    output = b"".join(chunks).replace(b"\r\n", b"\n")
    if process.returncode != 0 or output != expected:
        got, want = output.count(b"\n"), expected.count(b"\n")
        raise RuntimeError(
            f"{command!r}: exit {process.returncode}, {got} of {want} lines right? {stderr!r}"
        )
    return elapsed


def time_to_first_byte(command: Command, runs: int) -> list[float]:
    """Seconds from starting the client to the first byte arriving at a server."""
    results: list[float] = []
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        for _ in range(runs):
            read_fd, write_fd = os.pipe()
            os.write(write_fd, b"hello\n")
            os.close(write_fd)
            arrived: list[float] = []

            def serve_one(arrived: list[float] = arrived) -> None:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    if conn.recv(1):
                        arrived.append(time.perf_counter())

            thread = threading.Thread(target=serve_one, daemon=True)
            thread.start()
            started = time.perf_counter()
            process = subprocess.Popen(
                command(port),
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=ENV,
            )
            os.close(read_fd)
            thread.join(15)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if not arrived:
                raise RuntimeError("no byte arrived")
            results.append(arrived[0] - started)
    return results


def time_to_exit(argv: list[str], runs: int) -> list[float]:
    """Seconds from starting ``argv`` to its exit (``python -c pass``: the interpreter's floor)."""
    results: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=ENV, stdin=subprocess.DEVNULL)
        results.append(time.perf_counter() - started)
    return results


def format_rate(value: float) -> str:
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed-lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ttfb-runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--no-seed", action="store_true", help="leave the seed's client out")
    args = parser.parse_args()

    names = [name for name in CLIENTS if name.startswith("linechat")]
    if not SCRIPT.exists():
        names.remove("linechat connect (script)")
    if not args.no_seed:
        names += [name for name in CLIENTS if name.startswith("seed")]
    names += [name for name in ("socat", "ncat") if shutil.which(name)]
    names.sort(key=list(CLIENTS).index)
    times: dict[str, list[float]] = {name: [] for name in names}
    counts = {name: args.seed_lines if name.startswith("seed") else args.lines for name in names}
    global ENV
    with tempfile.TemporaryDirectory() as folder:
        ENV = python_env(Path(folder) / "pycache")
        inputs: dict[int, tuple[Path, bytes]] = {}
        for count in set(counts.values()):
            path = Path(folder) / f"lines-{count}.txt"
            inputs[count] = (path, write_input(path, count))
        with echo_server() as port:
            warm = Path(folder) / "warm-up.txt"
            warm_expected = write_input(warm, 10)
            for name in names:  # warm-up: fills the bytecode cache, not timed
                run_client(CLIENTS[name][0](port), warm, warm_expected, args.timeout)
            for run in range(args.runs):  # interleaved: each run goes through every client
                for name in names:
                    path, expected = inputs[counts[name]]
                    elapsed = run_client(CLIENTS[name][0](port), path, expected, args.timeout)
                    times[name].append(elapsed)
                    print(
                        f"run {run + 1}: {name}: {counts[name]} lines in {elapsed:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
        ttfb: dict[str, list[float]] = {}
        for name in names:
            if not name.startswith("seed"):
                ttfb[name] = time_to_first_byte(CLIENTS[name][0], args.ttfb_runs)
        # Beside it, the floor no Python client can go under: start and exit.
        ttfb["`python -c pass` (start to exit)"] = time_to_exit(
            [PYTHON, "-c", "pass"], args.ttfb_runs
        )
        ENV = python_env(None)
        uncached = "linechat connect, PYTHONDONTWRITEBYTECODE=1"
        ttfb[uncached] = time_to_first_byte(CLIENTS["linechat connect"][0], args.ttfb_runs)

    rates = {name: counts[name] / statistics.median(times[name]) for name in names}
    socat = rates.get("socat")
    seed = rates.get("seed client (lockstep)")
    report = [
        f"Machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"CPython {platform.python_version()}, Linux {platform.release()}",
        "",
        f"Command: `.venv/bin/python bench/client.py` ({args.lines:,} lines, the seed's "
        f"client {args.seed_lines:,}; median of {args.runs} runs; time to first byte: "
        f"median of {args.ttfb_runs})",
        "",
        "| client | command | lines | median s | lines/s | vs socat | vs seed |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for name in names:
        rate = rates[name]
        vs_socat = f"{rate / socat:.2f}x" if socat else "-"
        vs_seed = f"{rate / seed:.1f}x" if seed else "-"
        report.append(
            f"| {name} | `{CLIENTS[name][1]}` | {counts[name]:,} | "
            f"{statistics.median(times[name]):.3f} | {format_rate(rate)} | {vs_socat} | {vs_seed} |"
        )
    report += [
        "",
        "| client | time to first byte, median ms | min | max |",
        "|---|--:|--:|--:|",
    ]
    for name, values in ttfb.items():
        report.append(
            f"| {name} | {statistics.median(values) * 1e3:.1f} | "
            f"{min(values) * 1e3:.1f} | {max(values) * 1e3:.1f} |"
        )
    text = "\n".join(report) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
