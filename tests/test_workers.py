"""`linechat serve --workers N`: one port, several processes, a supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Served, linechat_command, read_all

pytestmark = pytest.mark.timeout(90)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def echo_once(served: Served, text: bytes) -> None:
    with served.connect() as sock:
        sock.sendall(text + b"\r\n.\r\n")
        assert read_all(sock) == b"You sent: " + text + b"\r\n"


def test_connections_are_spread_over_workers(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2")
    assert "(2 workers)" in served.log()
    assert len(children(served.process.pid)) == 2
    for i in range(40):
        echo_once(served, b"n%d" % i)
    # Each worker logs its closes a moment after its client saw the end: wait for both.
    served.wait_log(r"worker 1 .*closed after")
    served.wait_log(r"worker 2 .*closed after")


def test_a_dead_worker_is_restarted(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2")
    victim = children(served.process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    served.wait_log(rf"worker \d \(pid {victim}\) exited with status -9.*restarting")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(children(served.process.pid)) < 2:
        time.sleep(0.1)
    assert len(children(served.process.pid)) == 2
    assert victim not in children(served.process.pid)
    for i in range(10):
        echo_once(served, b"after %d" % i)


def test_sigterm_stops_every_worker(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2")
    workers = children(served.process.pid)
    with served.connect() as sock:
        sock.sendall(b"hello\r\n")
        sock.settimeout(10)
        assert sock.recv(100) == b"You sent: hello\r\n"
        assert served.stop(signal.SIGTERM) == 0
        assert read_all(sock) == b""
    for pid in workers:
        assert not alive(pid)


def test_workers_that_keep_failing_give_up(serve: Callable[..., Served]) -> None:
    taken = serve()  # a plain server holds the port, without SO_REUSEPORT
    result = subprocess.run(
        linechat_command("serve", "--host", "127.0.0.1", "--port", str(taken.port), "--workers=2"),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "keeps failing" in result.stderr.decode()
    assert "address already in use" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_workers_need_tcp(tmp_path: Path) -> None:
    result = subprocess.run(
        linechat_command("serve", "--unix", str(tmp_path / "s"), "--workers", "2"),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2  # a usage error, as --help says
    assert "does not work with --unix" in result.stderr.decode()


def test_workers_auto_is_cpu_count(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "auto")
    assert f"({len(os.sched_getaffinity(0))} workers)" in served.log()
    echo_once(served, b"auto")


def test_port_zero_is_one_shared_port(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2", "--port", "0")
    seen = set()
    for _ in range(20):
        with socket.create_connection((served.host, served.port), timeout=10) as sock:
            sock.sendall(b"x\r\n.\r\n")
            read_all(sock)
            seen.add(sock.getpeername()[1])
    assert seen == {served.port}


def test_workers_stop_when_the_supervisor_is_killed(serve: Callable[..., Served]) -> None:
    served = serve("--workers", "2")
    workers = children(served.process.pid)
    served.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)
