"""`linechat serve --proxy-protocol`: behind a balancer, and behind a real HAProxy."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from linechat.proxy_protocol import build_v1, build_v2, build_v2_local

from .conftest import Served, read_all, require_tool
from .helpers import start_on_free_port, stop_process

pytestmark = pytest.mark.timeout(90)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def exchange(served: Served, first: bytes, line: bytes = b"hi") -> bytes:
    with served.connect() as sock:
        sock.sendall(first + line + b"\r\n.\r\n")
        try:
            return read_all(sock)
        except ConnectionResetError:
            return b"<reset>"


@pytest.mark.parametrize(
    ("header", "logged"),
    [
        (build_v1(("203.0.113.7", 4444), ("127.0.0.1", 8007)), "203.0.113.7:4444"),
        (build_v2(("198.51.100.9", 5555), ("127.0.0.1", 8007)), "198.51.100.9:5555"),
        (build_v2(("2001:db8::1", 6666), ("::1", 8007)), "[2001:db8::1]:6666"),
    ],
)
def test_header_gives_the_true_client_address(
    serve: Callable[..., Served], header: bytes, logged: str
) -> None:
    served = serve("--proxy-protocol")
    # The header and the first line in one segment: nothing after it is lost.
    assert exchange(served, header) == b"You sent: hi\r\n"
    served.wait_log(re.escape(logged) + r" closed after .* 2 lines")


def test_local_command_keeps_the_connection_address(serve: Callable[..., Served]) -> None:
    served = serve("--proxy-protocol")
    assert exchange(served, build_v2_local()) == b"You sent: hi\r\n"
    served.wait_log(r"127\.0\.0\.1:\d+ closed after")


@pytest.mark.parametrize(
    ("first", "why"),
    [
        (b"", "not a PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", "port"),
        (b"PROXY TCP4 " + b"1" * 200, ""),
        (b"\r\n\r\n\x00\r\nQUIT\n\x99", ""),
    ],
)
def test_bad_headers_are_rejected_without_disturbing_others(
    serve: Callable[..., Served], first: bytes, why: str
) -> None:
    served = serve("--proxy-protocol")
    good = socket.create_connection((served.host, served.port), timeout=10)
    good.sendall(build_v1(("192.0.2.1", 1000), ("127.0.0.1", 1)) + b"before\r\n")
    assert good.recv(100) == b"You sent: before\r\n"
    reply = exchange(served, first)
    assert b"You sent" not in reply
    served.wait_log(r"rejected: .*" + re.escape(why))
    good.sendall(b"after\r\n.\r\n")
    assert read_all(good) == b"You sent: after\r\n"
    good.close()


def test_truncated_header_is_rejected(serve: Callable[..., Served]) -> None:
    served = serve("--proxy-protocol")
    with served.connect() as sock:
        sock.sendall(build_v2(("192.0.2.1", 1), ("192.0.2.2", 2))[:20])
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b""
    served.wait_log(r"rejected: .*(truncated|ended|incomplete)")


def test_only_trusted_upstreams_send_the_header(serve: Callable[..., Served]) -> None:
    direct = serve("--proxy-protocol-from", "10.0.0.0/8")
    assert exchange(direct, b"") == b"You sent: hi\r\n"  # loopback is a direct client
    proxied = serve("--proxy-protocol-from", "127.0.0.0/8")
    assert exchange(proxied, build_v1(("192.0.2.5", 55), ("127.0.0.1", 1))) == b"You sent: hi\r\n"
    proxied.wait_log(r"192\.0\.2\.5:55 closed after")
    assert b"You sent" not in exchange(proxied, b"")


def test_tls_behind_the_header(
    serve: Callable[..., Served], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    served = serve("--proxy-protocol", "--tls-cert", str(cert), "--tls-key", str(key))
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection((served.host, served.port), timeout=10) as raw:
        raw.sendall(build_v2(("192.0.2.77", 7777), ("127.0.0.1", served.port)))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"secret\r\n.\r\n")
            assert read_all(tls) == b"You sent: secret\r\n"
    served.wait_log(r"192\.0\.2\.77:7777 closed after")


def test_proxy_flag_needs_tcp(tmp_path: Path) -> None:
    from .conftest import linechat_command

    result = subprocess.run(
        linechat_command("serve", "--unix", str(tmp_path / "s"), "--proxy-protocol"),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2  # a usage error
    assert "TCP listeners only" in result.stderr.decode()


# -- a real HAProxy in front of two servers ----------------------------------------


@pytest.fixture
def haproxy(serve: Callable[..., Served], tmp_path: Path) -> Iterator[tuple[int, list[Served]]]:
    """docs/haproxy.cfg as shipped, in front of two `linechat serve --proxy-protocol`."""
    binary = require_tool("haproxy")
    backends = [serve("--proxy-protocol"), serve("--proxy-protocol")]
    log = (tmp_path / "haproxy.log").open("wb")

    def start(front: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "LINECHAT_BIND": f"127.0.0.1:{front}",
            "LINECHAT_BACKEND_1": f"127.0.0.1:{backends[0].port}",
            "LINECHAT_BACKEND_2": f"127.0.0.1:{backends[1].port}",
        }
        return subprocess.Popen(
            [binary, "-db", "-f", str(DOCS / "haproxy.cfg")], env=env, stdout=log, stderr=log
        )

    try:
        process, front = start_on_free_port(start)
    except AssertionError as exc:
        log.close()
        raise AssertionError(f"{exc}:\n{(tmp_path / 'haproxy.log').read_text()}") from None
    try:
        yield front, backends
    finally:
        stop_process(process)
        log.close()


def client_through(front: int, text: bytes) -> int:
    """One exchange through HAProxy; returns our source port."""
    with socket.create_connection(("127.0.0.1", front), timeout=10) as sock:
        sock.sendall(text + b"\r\n.\r\n")
        assert read_all(sock) == b"You sent: " + text + b"\r\n"
        return int(sock.getsockname()[1])


def test_haproxy_spreads_clients_and_passes_their_address(
    haproxy: tuple[int, list[Served]],
) -> None:
    front, backends = haproxy
    ports = [client_through(front, b"client %d" % i) for i in range(10)]
    deadline = time.monotonic() + 10
    missing = ports
    while missing and time.monotonic() < deadline:
        logs = "".join(served.log() for served in backends)
        # every client's own source port is in a backend's log
        missing = [port for port in ports if f"127.0.0.1:{port} closed after" not in logs]
        time.sleep(0.1)
    assert not missing
    for served in backends:
        assert len(re.findall(r"closed after .* 2 lines/", served.log())) >= 3


def test_stopping_a_backend_loses_no_later_client(haproxy: tuple[int, list[Served]]) -> None:
    front, backends = haproxy
    client_through(front, b"warm up")
    assert backends[0].stop() == 0
    for i in range(20):
        client_through(front, b"after stop %d" % i)
    # The client reads EOF a moment before the backend logs the close: wait for the log.
    deadline = time.monotonic() + 10
    while len(re.findall(r"closed after .* 2 lines/", backends[1].log())) < 20:
        assert time.monotonic() < deadline, backends[1].log()
        time.sleep(0.05)


# -- the client side: linechat connect --send-proxy ---------------------------------


def connect_through(*args: str, input: bytes = b"hi\n.\n") -> subprocess.CompletedProcess[bytes]:
    from .conftest import linechat_command

    return subprocess.run(
        linechat_command("connect", *args), input=input, capture_output=True, timeout=30
    )


@pytest.mark.parametrize(
    ("version", "source", "logged"),
    [
        ("v1", "192.0.2.10:1234", "192.0.2.10:1234"),
        ("v2", "192.0.2.11:2345", "192.0.2.11:2345"),
        ("v2", "[2001:db8::5]:3456", "[2001:db8::5]:3456"),
    ],
)
def test_connect_sends_a_proxy_header(
    serve: Callable[..., Served], version: str, source: str, logged: str
) -> None:
    served = serve("--proxy-protocol")
    result = connect_through(
        served.host, str(served.port), "--send-proxy", version, "--proxy-source", source
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"You sent: hi\n"
    served.wait_log(re.escape(logged) + " closed after")


def test_connect_proxy_source_defaults_to_our_address(serve: Callable[..., Served]) -> None:
    served = serve("--proxy-protocol")
    result = connect_through(served.host, str(served.port), "--send-proxy", "v2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"You sent: hi\n"
    served.wait_log(r"127\.0\.0\.1:\d+ closed after")
    assert "rejected" not in served.log()


def test_connect_sends_the_header_before_tls(
    serve: Callable[..., Served], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    served = serve("--proxy-protocol", "--tls-cert", str(cert), "--tls-key", str(key))
    result = connect_through(
        *("127.0.0.1", str(served.port), "--tls", "--cafile", str(cert), "--sni", "localhost"),
        *("--send-proxy", "v1", "--proxy-source", "192.0.2.99:99", "--wait", "10"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"You sent: hi\n"
    served.wait_log(r"192\.0\.2\.99:99 closed after")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxy-source", "192.0.2.1:1"], "--proxy-source needs --send-proxy"),
        (["--send-proxy", "v2", "--proxy-source", "nowhere:1"], "not ADDR:PORT"),
        (["--send-proxy", "v2", "--proxy-source", "192.0.2.1:99999"], "port must be"),
        (["--send-proxy", "v3"], "invalid choice"),
        (["--send-proxy", "v1", "--unix", "/tmp/x.sock"], "TCP only"),
    ],
)
def test_connect_send_proxy_bad_usage(args: list[str], message: str) -> None:
    result = connect_through(*args)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_connect_mixed_families_go_ipv4_mapped(serve: Callable[..., Served]) -> None:
    served = serve("--proxy-protocol")
    result = connect_through(
        served.host, str(served.port), "--send-proxy", "v1", "--proxy-source", "[2001:db8::1]:7"
    )
    assert result.returncode == 0, result.stderr
    served.wait_log(re.escape("[2001:db8::1]:7") + " closed after")


def test_a_silent_peer_gets_no_header_time_forever(caplog: pytest.LogCaptureFixture) -> None:
    """The header must come within the policy's time (10 s by default; 0.3 s here)."""
    import asyncio
    import logging

    from linechat.server import LineServer, ProxyPolicy
    from linechat.services.echo import EchoProtocol

    async def main() -> None:
        server = LineServer(EchoProtocol, proxy=ProxyPolicy(header_timeout=0.3))
        (address,) = await server.listen_tcp("127.0.0.1", 0)
        port = int(address.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert 0.25 < time.monotonic() - started < 5
        writer.close()
        await server.shutdown(0.1)

    with caplog.at_level(logging.WARNING, logger="linechat.server"):
        asyncio.run(main())
    assert "no PROXY header in time" in caplog.text
