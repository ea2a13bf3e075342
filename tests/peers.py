"""Real peer servers no one here wrote, on loopback ports: memcached and redis-server.

Each starts the real tool (skipped locally when it is missing, failing in CI,
through ``require_tool``), waits until it answers, and is stopped by its PID
afterwards. The fixtures in ``conftest.py`` (``memcached_port``,
``redis_port``) are built on these.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .helpers import require_tool, start_on_free_port, stop_process, wait_port


@contextmanager
def real_memcached(*extra: str) -> Iterator[int]:
    """The real memcached on a loopback port (``-U 0``: no UDP), stopped after."""
    path = require_tool("memcached")

    def start(port: int) -> subprocess.Popen[bytes]:
        argv = [path, "-U", "0", "-l", "127.0.0.1", "-p", str(port), *extra]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without it
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    process, port = start_on_free_port(start)
    try:
        wait_port(port, process)
        yield port
    finally:
        stop_process(process)


class RedisServer:
    """A redis-server on a loopback port, without persistence; restartable on the same port."""

    def __init__(self, tmp: Path) -> None:
        self.binary = require_tool("redis-server")
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None
        # A port free a moment ago; another one if someone took it before redis bound it.
        self.process, self.port = start_on_free_port(self._spawn)
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *(self.binary, "--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.tmp)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start it (again, on its port) unless it runs; wait until it answers PING."""
        if self.process is None or self.process.poll() is not None:
            self.process = self._spawn(self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)  # not listening yet, or not ready (-LOADING)
        stop_process(self.process)
        raise AssertionError("redis-server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, sig)
        self.process = None


@contextmanager
def real_redis(tmp: Path) -> Iterator[int]:
    """A redis-server (its working directory ``tmp``) for the block; its port."""
    server = RedisServer(tmp)
    try:
        yield server.port
    finally:
        server.stop()
