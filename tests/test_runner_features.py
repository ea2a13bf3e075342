"""Every runner feature with a user's service (both layers), as with echo.

The services are tests/test_runner.py's USER_MODULE, written against the
public API in a temporary directory; the peers are real sockets and real
tools (openssl s_client), the servers real `linechat serve` processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from linechat.proxy_protocol import build_v1

from .conftest import Served, read_all, read_until, require_tool
from .helpers import openssl_s_client
from .test_runner import USER_MODULE

pytestmark = pytest.mark.timeout(120)

TARGETS = {"protocol": "userapp:Upper", "stream": "userapp:Echoing"}

#: More of the user's services: a stream handler that answers like Upper, and
#: one that waits forever, to see shutdown cancel it.
MORE = """

@service_defaults(max_line_length=64)
async def Echoing(stream: LineStream) -> None:
    stream.write_line(b"READY " + str(stream.peer[0] if stream.peer else "unix").encode())
    async for line in stream:
        if line == b"QUIT":
            return
        stream.write_line(line.upper())


async def stubborn(stream: LineStream) -> None:
    import asyncio, logging
    stream.write_line(b"WAITING")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        logging.getLogger("userapp").warning("stubborn handler cancelled")
        raise


class Fragile(LineProtocol):
    made = 0

    def __init__(self, **options):
        type(self).made += 1
        if type(self).made == 1:
            raise RuntimeError("constructor failed on purpose")
        super().__init__(**options)

    def line_received(self, line: bytes) -> None:
        self.write_line(b"ok")
        self.close()


async def polite(stream: LineStream) -> None:
    import logging
    stream.write_line(b"WAITING")
    line = await stream.readline()   # None: the server is shutting down
    logging.getLogger("userapp").warning("polite handler saw %r", line)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "userapp.py").write_text(USER_MODULE + MORE)
    return folder


@pytest.fixture(params=sorted(TARGETS))
def user(
    request: pytest.FixtureRequest, serve: Callable[..., Served], app_dir: Path
) -> Callable[..., Served]:
    """Start the user's service on the layer under test."""

    def start(*args: str, **kwargs: object) -> Served:
        return serve(TARGETS[request.param], "--app-dir", str(app_dir), *args, **kwargs)

    return start


def exchange(sock: socket.socket, send: bytes) -> bytes:
    sock.sendall(send)
    return read_all(sock)


def test_serves_both_layers(user: Callable[..., Served]) -> None:
    with user().connect() as sock:
        assert exchange(sock, b"hello\r\nQUIT\r\n") == b"READY 127.0.0.1\r\nHELLO\r\n"


def test_tls_with_openssl_s_client(
    user: Callable[..., Served], certificate: tuple[Path, Path]
) -> None:
    openssl = require_tool("openssl")
    cert, key = certificate
    served = user("--tls-cert", str(cert), "--tls-key", str(key))
    assert "(TLS)" in served.log()
    child = openssl_s_client(openssl, cert, served.port)
    try:
        child.expect("verify return:1")
        child.expect(r"READY 127\.0\.0\.1\r")
        child.sendline("secret")
        child.expect(r"SECRET\r")
        child.sendline("QUIT")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_max_connections(user: Callable[..., Served]) -> None:
    served = user("--max-connections", "1")
    with served.connect() as first:
        assert read_until(first, b"READY 127.0.0.1\r\n") == b"READY 127.0.0.1\r\n"
        with served.connect() as second:
            assert read_all(second).startswith(b"ERROR too many connections")
        assert exchange(first, b"x\r\nQUIT\r\n") == b"X\r\n"


def test_idle_timeout(user: Callable[..., Served]) -> None:
    served = user("--idle-timeout", "0.4")
    with served.connect() as sock:
        started = time.monotonic()
        assert read_all(sock) == b"READY 127.0.0.1\r\n"
        assert time.monotonic() - started >= 0.35
    served.wait_log(r"no data for 0.4 s")


def test_max_line_length_flag_and_default(user: Callable[..., Served]) -> None:
    served = user()  # the service's default: 64
    with served.connect() as sock:
        reply = exchange(sock, b"y" * 65 + b"\r\n")
        assert reply.startswith(b"READY") and b"too long" in reply
    served = user("--max-line-length", "200")
    with served.connect() as sock:
        assert exchange(sock, b"y" * 150 + b"\r\nQUIT\r\n").endswith(b"Y" * 150 + b"\r\n")


def test_proxy_protocol_peer_is_the_client(user: Callable[..., Served]) -> None:
    served = user("--proxy-protocol")
    with served.connect() as sock:
        sock.sendall(build_v1(("192.0.2.9", 4242), ("127.0.0.1", served.port)))
        assert exchange(sock, b"via proxy\r\nQUIT\r\n") == b"READY 192.0.2.9\r\nVIA PROXY\r\n"
    served.wait_log(r"192\.0\.2\.9:4242 closed after")


def test_unix_socket(user: Callable[..., Served], tmp_path: Path) -> None:
    path = str(tmp_path / "u.sock")
    served = user("--unix", path, host=None)
    with served.connect() as sock:
        assert exchange(sock, b"unix\r\nQUIT\r\n").endswith(b"UNIX\r\n")
    served.stop()
    assert not os.path.exists(path)  # removed on exit: it was still ours


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_loops(user: Callable[..., Served], loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    with user("--loop", loop).connect() as sock:
        assert exchange(sock, b"loop\r\nQUIT\r\n").endswith(b"LOOP\r\n")


def test_workers_get_the_service(user: Callable[..., Served]) -> None:
    served = user("--workers", "2", "--max-line-length", "100")
    assert "(2 workers)" in served.log()
    for i in range(30):
        with served.connect() as sock:
            assert exchange(sock, b"n%d\r\nQUIT\r\n" % i).endswith(b"N%d\r\n" % i)
    # Each worker logs its closes a moment after its client saw the end: wait for both.
    served.wait_log(r"worker 1 .*closed after")
    served.wait_log(r"worker 2 .*closed after")


def test_workers_get_service_options(serve: Callable[..., Served], app_dir: Path) -> None:
    served = serve("userapp:SERVICE", "--app-dir", str(app_dir), "--workers", "2", "--prefix", "w ")
    for _ in range(10):
        with served.connect() as sock:
            assert exchange(sock, b"QUIT\r\n") == b"w QUIT\r\n"


def test_workers_run_the_check_first(app_dir: Path) -> None:
    from .conftest import linechat_command

    result = subprocess.run(
        linechat_command(
            "serve", "userapp:SERVICE", "--app-dir", str(app_dir), "--workers", "2", "--times", "5"
        ),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == "linechat serve: --times 5: at most 3"


def test_graceful_shutdown_sends_queued_replies(user: Callable[..., Served]) -> None:
    served = user()
    with served.connect() as sock:
        assert read_until(sock, b"READY 127.0.0.1\r\n") == b"READY 127.0.0.1\r\n"
        sock.sendall(b"last\r\n")
        assert read_until(sock, b"LAST\r\n") == b"LAST\r\n"
        assert served.stop(signal.SIGTERM) == 0
        assert read_all(sock) == b""


def test_shutdown_cancels_a_stream_handler_after_the_grace(
    serve: Callable[..., Served], app_dir: Path
) -> None:
    served = serve("userapp:stubborn", "--app-dir", str(app_dir), "--grace", "0.5")
    with served.connect() as sock:
        assert read_until(sock, b"WAITING\r\n") == b"WAITING\r\n"
        started = time.monotonic()
        assert served.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 8
    assert "stubborn handler cancelled" in served.log()


def test_a_handler_notices_shutdown_as_end_of_stream(
    serve: Callable[..., Served], app_dir: Path
) -> None:
    served = serve("userapp:polite", "--app-dir", str(app_dir))
    with served.connect() as sock:
        assert read_until(sock, b"WAITING\r\n") == b"WAITING\r\n"
        assert served.stop(signal.SIGTERM) == 0
    assert "polite handler saw None" in served.log()


def test_a_constructor_that_raises_costs_one_connection(
    serve: Callable[..., Served], app_dir: Path
) -> None:
    served = serve("userapp:Fragile", "--app-dir", str(app_dir))
    with served.connect() as first:
        assert read_all(first) == b""  # closed: its protocol could not be made
    with served.connect() as second:
        assert exchange(second, b"x\r\n") == b"ok\r\n"
    log = served.wait_log("constructor failed on purpose")
    assert "cannot start a connection from 127.0.0.1:" in log
    assert log.count("Traceback") == 1


def test_effective_settings_logged_once(user: Callable[..., Served]) -> None:
    served = user("--idle-timeout", "7")
    log = served.log()
    assert len(re.findall(r"max_line_length=64 idle_timeout=7.0", log)) == 1


def test_tls_context_reaches_the_service_for_starttls(
    serve: Callable[..., Served], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """A Service's build gets ServeContext.tls_context (what STARTTLS needs)."""
    cert, key = certificate
    folder = tmp_path / "tlsapp"
    folder.mkdir()
    (folder / "tlsapp.py").write_text(
        "from linechat import LineProtocol, Service\n"
        "def build(options, context):\n"
        "    has = context.tls_context is not None\n"
        "    class P(LineProtocol):\n"
        "        def connection_started(self):\n"
        "            self.write_line(b'tls context: %r' % has)\n"
        "            self.close()\n"
        "    return P\n"
        "SERVICE = Service('tlsapp', 'says if it has a TLS context', build)\n"
    )
    served = serve(
        "tlsapp:SERVICE", "--app-dir", str(folder), "--tls-cert", str(cert), "--tls-key", str(key)
    )
    context = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection((served.host, served.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert read_all(tls) == b"tls context: True\r\n"
