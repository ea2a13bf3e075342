"""Shared fixtures: real processes on loopback, real peer tools, certificates."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from .helpers import IN_CI as IN_CI
from .helpers import STARTED as STARTED
from .helpers import linechat_command as linechat_command
from .helpers import require_tool as require_tool
from .helpers import stop_process, wait_log, wait_started
from .peers import real_memcached, real_redis

# Property tests on a slow, shared machine (2 cores, 8 test suites at once): no
# per-example deadline, and no failing because generating inputs was slow or
# large; what a property checks is not timing. Loaded before any test module,
# so a test's own @settings(max_examples=...) builds on it.
settings.register_profile(
    "linechat",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "linechat"))


@dataclass
class Served:
    """A `linechat serve` process started for a test, stopped after it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    unix: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        if self.unix:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(self.unix)
            return sock
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        return stop_process(self.process, sig, timeout)

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        return wait_log(self.log_path, pattern, timeout)

    def talk(self, send: bytes) -> bytes:
        """Send ``send`` on a new connection; everything until the server closes it."""
        with self.connect() as sock:
            sock.sendall(send)
            return read_all(sock)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `linechat serve ARGS` and wait until it listens."""
    started: list[Served] = []

    def start(*args: str, host: str | None = "127.0.0.1", timeout: float = 15.0) -> Served:
        log_path = tmp_path / f"serve-{len(started)}.log"
        argv = list(args)
        if host is not None and "--unix" not in argv and "--host" not in argv:
            argv = ["--host", host, *argv]
        if "--port" not in argv and "--unix" not in argv:
            argv += ["--port", "0"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                linechat_command("serve", *argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        served = Served(process, log_path)
        started.append(served)
        if "--unix" in argv:
            wait_started(process, log_path, timeout, re.compile(rb"listening on"))
            served.unix = argv[argv.index("--unix") + 1]
            return served
        match = wait_started(process, log_path, timeout)
        served.host = match.group(1).decode()
        served.port = int(match.group(2))
        return served

    yield start
    for served in started:
        served.stop()  # SIGTERM, so a supervisor stops its workers; SIGKILL if stuck


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1, made with openssl."""
    openssl = require_tool("openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def memcached_port() -> Iterator[int]:
    """The real memcached on a loopback port for one test."""
    with real_memcached() as port:
        yield port


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """A real redis-server (no persistence) on a loopback port for one test."""
    with real_redis(tmp_path) as port:
        yield port


def read_until(sock: socket.socket, expected: bytes, timeout: float = 10.0) -> bytes:
    """Read until ``expected`` bytes in all have come, or the peer closes."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < len(expected):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the peer closes."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
