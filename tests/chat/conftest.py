"""Fixtures for the chat tests: the service on a loopback port, raw IRC clients."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Served, linechat_command
from tests.helpers import stop_process, wait_started


class IRC:
    """A raw IRC client over a real socket, reading line by line."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""
        self.seen: list[bytes] = []

    def send(self, *lines: bytes | str) -> None:
        data = b"".join(
            (line.encode() if isinstance(line, str) else line) + b"\r\n" for line in lines
        )
        self.sock.sendall(data)

    def line(self, timeout: float | None = None) -> bytes | None:
        """The next line (CRLF removed), or None once the server has closed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line in time; seen so far: {self.seen[-20:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        self.seen.append(line)
        return line

    def expect(self, pattern: bytes | str, timeout: float | None = None) -> bytes:
        """Read lines until one matches ``pattern`` (a regex searched in the line)."""
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self.line(max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"closed before {pattern!r}; seen: {self.seen[-20:]!r}")
            if regex.search(line):
                return line

    def until_closed(self, timeout: float | None = None) -> list[bytes]:
        lines = []
        while (line := self.line(timeout)) is not None:
            lines.append(line)
        return lines

    def quiet(self, wait: float = 0.3) -> list[bytes]:
        """Lines that arrive within ``wait`` seconds (to show that nothing else came)."""
        lines = []
        try:
            while (line := self.line(wait)) is not None:
                lines.append(line)
        except TimeoutError:
            pass
        return lines

    def register(self, nick: str, user: str = "u", realname: str = "Real Name") -> None:
        self.send(f"NICK {nick}", f"USER {user} 0 * :{realname}")
        self.expect(rb" (422|376) ")

    def close(self) -> None:
        self.sock.close()


def start_chat(log_path: Path, *args: str, timeout: float = 20.0) -> Served:
    """Start the chat service with ARGS (flags of `linechat serve chat`) on 127.0.0.1."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            linechat_command("serve", "chat", "--host", "127.0.0.1", "--port", "0", *args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        match = wait_started(process, log_path, timeout)
    except AssertionError:
        stop_process(process)
        raise
    return Served(process, log_path, host=match.group(1).decode(), port=int(match.group(2)))


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start chat services for one test; all stopped after it."""
    started: list[Served] = []

    def start(*args: str) -> Served:
        served = start_chat(tmp_path / f"chat-{len(started)}.log", *args)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture(scope="module")
def shared_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One chat service (flood control off) for a module's tests; each uses its own nicks."""
    served = start_chat(tmp_path_factory.mktemp("chat") / "chat.log", "--flood-rate", "0")
    yield served
    served.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., IRC]]:
    """Open raw IRC clients; all closed after the test."""
    opened: list[IRC] = []

    def connect(port: int, **kwargs: float) -> IRC:
        client = IRC(port, **kwargs)  # type: ignore[arg-type]
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()
