"""Plain helpers the tests share: tools, ports, start-up waits, stopping what a test started.

One copy of each, so a fix (a slow start-up on a loaded machine, a process
that ignores SIGTERM) reaches every test. Fixtures live in ``conftest.py``;
real peer servers (memcached, redis-server) in ``peers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pexpect

IN_CI = os.environ.get("CI", "").lower() == "true"

#: What ``linechat serve`` (and the bench's prototype servers) log once they listen.
STARTED = re.compile(rb"listening on (?:\[?)([0-9a-f.:]+?)(?:\]?):(\d+)")
HOST = "127.0.0.1"


def require_tool(name: str) -> str:
    """The tool's path; skip locally when it is missing, fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"needs the tool {name!r} (installed by .ci/run)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def linechat_command(*args: str) -> list[str]:
    """argv for ``linechat ARGS`` with the test's Python."""
    return [sys.executable, "-m", "linechat", *args]


def run_serve(
    *args: str, cwd: Path | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[bytes]:
    """``linechat serve ARGS`` run to its end (for the ones that exit at once)."""
    return subprocess.run(
        linechat_command("serve", *args), capture_output=True, timeout=timeout, cwd=cwd
    )


def serve_usage_error(*args: str, cwd: Path | None = None, timeout: float = 30.0) -> str:
    """What ``linechat serve ARGS`` says on stderr, checking that it exits 2 (a usage error)."""
    result = run_serve(*args, cwd=cwd, timeout=timeout)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    return err


def free_port(host: str = HOST) -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct loopback ports nothing listens on now."""
    with contextlib.ExitStack() as held:  # each held until all are picked: no repeats
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_port(
    port: int,
    process: subprocess.Popen[Any] | None = None,
    timeout: float = 10.0,
    host: str = HOST,
) -> None:
    """Return once ``port`` accepts a connection; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


class PortTaken(AssertionError):
    """The port a server was told to use was not its own: it exited, or someone else listens."""


def _listener_inodes(port: int) -> set[str]:
    """The socket inodes of the TCP listeners (IPv4 and IPv6) on ``port``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)  # the header
                for row in rows:
                    fields = row.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.add(fields[9])
        except FileNotFoundError:
            continue
    return found


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open."""
    found: set[str] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return found
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def wait_own_listener(process: subprocess.Popen[Any], port: int, timeout: float = 15.0) -> None:
    """Return once ``process`` itself listens on ``port`` (read from /proc, no connection made).

    Raises :class:`PortTaken` if the process exits first or another process
    listens there (the port was taken between ``free_port`` and the bind).
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise PortTaken(f"{process.args!r} exited {process.returncode} before listening")
        listeners = _listener_inodes(port)
        if listeners:
            if listeners & _socket_inodes(process.pid):
                return
            # Someone else's listener: ours fails to bind (and exits), or never comes.
            raise PortTaken(f"another process listens on port {port}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{process.args!r} did not listen on port {port}")
        time.sleep(0.05)


def start_on_free_ports(
    start: Callable[..., subprocess.Popen[Any]],
    count: int = 1,
    timeout: float = 15.0,
    attempts: int = 3,
) -> tuple[subprocess.Popen[Any], list[int]]:
    """``start(*ports)`` on ``count`` ports free a moment ago, until the process listens on each.

    For tools that take port numbers only (no ``--port 0``): a port
    ``free_port`` picked may be taken by another process before the tool binds
    it. Then the tool exits, or someone else answers there; it is stopped and
    started again on other ports (``attempts`` in all). The process and its ports.
    """
    failures = []
    for _ in range(attempts):
        ports = free_ports(count)
        process = start(*ports)
        try:
            for port in ports:
                wait_own_listener(process, port, timeout)
        except PortTaken as exc:
            stop_process(process)
            failures.append(str(exc))
            continue
        except BaseException:
            stop_process(process)
            raise
        return process, ports
    raise AssertionError("never started on free ports: " + "; ".join(failures))


def start_on_free_port(
    start: Callable[[int], subprocess.Popen[Any]], timeout: float = 15.0
) -> tuple[subprocess.Popen[Any], int]:
    """:func:`start_on_free_ports` for a tool on one port: the process and its port."""
    process, (port,) = start_on_free_ports(start, 1, timeout)
    return process, port


def stop_process(
    process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10.0
) -> int:
    """Send ``sig`` (by PID), SIGKILL after ``timeout`` s; the exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_log(path: Path, pattern: str, timeout: float = 10.0) -> str:
    """The log's text once ``pattern`` (a regex) appears in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError(
        f"{pattern!r} never appeared in the log:\n{path.read_text(errors='replace')}"
    )


def wait_started(
    process: subprocess.Popen[Any],
    log_path: Path,
    timeout: float = 15.0,
    pattern: re.Pattern[bytes] = STARTED,
) -> re.Match[bytes]:
    """The match of ``pattern`` (by default: listening on HOST:PORT) once the log has it.

    Fails, with the log, if the process exits first or ``timeout`` passes; the
    caller stops the process.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_bytes()
        match = pattern.search(text)
        if match:
            return match
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited {process.returncode}:\n{text!r}")
        time.sleep(0.05)
    raise AssertionError(f"{process.args!r} did not start:\n{log_path.read_text(errors='replace')}")


def start_logged(
    argv: list[str], log_path: Path, timeout: float = 15.0, **popen: Any
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server whose log says where it listens; the process and its port.

    Output goes to ``log_path``; the process is stopped if it does not start.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **popen
        )
    try:
        match = wait_started(process, log_path, timeout)
    except AssertionError:
        stop_process(process)
        raise
    return process, int(match.group(2))


def openssl_s_client(openssl: str, cafile: Path, port: int, timeout: float = 15.0) -> pexpect.spawn:
    """``openssl s_client -crlf -quiet`` to 127.0.0.1:PORT in a pty (a ``pexpect.spawn``).

    The caller expects ``verify return:1`` first and closes it (``close(force=True)``).
    """
    import pexpect  # only the tests that drive a terminal need it

    return pexpect.spawn(
        openssl,
        [
            "s_client",
            "-crlf",
            "-quiet",
            "-CAfile",
            str(cafile),
            "-connect",
            f"127.0.0.1:{port}",
        ],
        timeout=timeout,
    )


class HandTransport(asyncio.Transport):
    """Just enough of a transport to drive a protocol or a stream by hand; keeps what is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 16 * 1024, 64 * 1024


#: The event loops a test over loopback may run on (see :func:`run_on`).
LOOPS = ("asyncio", "uvloop")


def run_on(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on that loop (uvloop skipped where it is not installed, as in nox's
    no-uvloop session)."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(main(), 60))
