"""Shared fixtures: real processes on loopback, real peer tools, certificates."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The machines are small and shared, and CI runs several Python versions at
# once: generation time says nothing about correctness. Property tests keep
# their example counts; only the timing checks are off.
settings.register_profile(
    "linechat",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "linechat"))

IN_CI = os.environ.get("CI", "").lower() == "true"

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
STARTED = re.compile(rb"listening on (?:\[?)([0-9a-f.:]+?)(?:\]?):(\d+)")


def require_tool(name: str) -> str:
    """The tool's path; skip locally when it is missing, fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"needs the tool {name!r} (installed by .ci/run)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


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
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if re.search(pattern, text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never appeared in the server log:\n{self.log()}")


def linechat_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "linechat", *args]


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log_path.read_bytes()
            if "--unix" in argv and b"listening on" in text:
                served.unix = argv[argv.index("--unix") + 1]
                return served
            match = STARTED.search(text)
            if match:
                served.host = match.group(1).decode()
                served.port = int(match.group(2))
                return served
            if process.poll() is not None:
                raise AssertionError(f"linechat serve exited {process.returncode}:\n{text!r}")
            time.sleep(0.05)
        raise AssertionError(f"linechat serve did not start:\n{served.log()}")

    yield start
    for served in started:
        served.stop()  # SIGTERM, so a supervisor stops its workers; SIGKILL if stuck


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if IN_CI:
            pytest.fail("needs openssl")
        pytest.skip("needs the tool 'openssl'")
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
