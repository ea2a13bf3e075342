"""`linechat serve` and the echo service, over real sockets, against real peers.

Every echo test runs against each server layer (`--layer`), one suite for both.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from .conftest import Served, linechat_command, read_all, read_until, require_tool
from .helpers import openssl_s_client

LAYERS = ["protocol", "stream"]


@pytest.fixture(params=LAYERS)
def echo(request: pytest.FixtureRequest, serve: Callable[..., Served]) -> Callable[..., Served]:
    """Start the echo service on the layer under test, with extra flags."""

    def start(*args: str, **kwargs: object) -> Served:
        return serve("--layer", request.param, *args, **kwargs)

    return start


def answers(*lines: bytes) -> bytes:
    return b"".join(b"You sent: " + line + b"\r\n" for line in lines)


# -- the seed's transcripts --------------------------------------------------


def test_seed_telnet_transcript(echo: Callable[..., Served]) -> None:
    with echo().connect() as sock:
        sock.sendall(b"This is a line.\r\n")
        assert read_until(sock, answers(b"This is a line.")) == answers(b"This is a line.")
        sock.sendall(b".\r\n")
        assert read_all(sock) == b""


def test_seed_client_transcript(echo: Callable[..., Served]) -> None:
    served = echo()
    with served.connect() as sock:
        for line in (b"Hello!", b"This is a line.", b"This is another."):
            sock.sendall(line + b"\r\n")
            assert read_until(sock, answers(line)) == answers(line)
        sock.sendall(b".\r\n")
        assert read_all(sock) == b""
    served.wait_log(r"closed after .*4 lines/\d+ B in, 3 lines")


def test_ten_thousand_lines_in_one_write(echo: Callable[..., Served]) -> None:
    lines = [f"line {i}".encode() for i in range(10_000)]
    with echo().connect() as sock:
        sock.sendall(b"".join(line + b"\r\n" for line in lines) + b".\r\n")
        assert read_all(sock) == answers(*lines)


def test_one_line_in_a_thousand_writes(echo: Callable[..., Served]) -> None:
    line = bytes(ord("a") + i % 26 for i in range(998))
    with echo().connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in line + b"\r\n":
            sock.sendall(bytes([byte]))
        assert read_until(sock, answers(line)) == answers(line)


def test_dot_closes_after_every_earlier_answer(echo: Callable[..., Served]) -> None:
    with echo().connect() as sock:
        sock.sendall(b"one\r\ntwo\r\n.\r\nnever\r\n")
        assert read_all(sock) == answers(b"one", b"two")


def test_dot_must_be_alone(echo: Callable[..., Served]) -> None:
    with echo().connect() as sock:
        sock.sendall(b". \r\n..\r\n.\r\n")
        assert read_all(sock) == answers(b". ", b"..")


def test_bare_lf_accepted_answers_in_crlf(echo: Callable[..., Served]) -> None:
    with echo().connect() as sock:
        sock.sendall(b"unix\nwindows\r\n.\n")
        assert read_all(sock) == answers(b"unix", b"windows")


def test_byte_transparent(echo: Callable[..., Served]) -> None:
    garbage = bytes(range(256)).replace(b"\n", b"").replace(b"\r", b"")
    lines = [b"\x00", b"\xff\xfe invalid utf-8 \xc3\x28", garbage, b"caf\xc3\xa9", b"a\rb"]
    with echo().connect() as sock:
        sock.sendall(b"".join(line + b"\r\n" for line in lines) + b".\r\n")
        assert read_all(sock) == answers(*lines)


def test_unterminated_last_line_is_answered_at_eof(echo: Callable[..., Served]) -> None:
    with echo().connect() as sock:
        sock.sendall(b"done\r\nhalf a line")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == answers(b"done", b"half a line")


def test_unix_socket(echo: Callable[..., Served], tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    with echo("--unix", path, host=None).connect() as sock:
        sock.sendall(b"over unix\r\n.\r\n")
        assert read_all(sock) == answers(b"over unix")


def test_localhost_means_ipv4_and_ipv6(echo: Callable[..., Served]) -> None:
    served = echo(host="localhost")
    assert "127.0.0.1:" in served.log()
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        if f"[{address}]" not in served.log() and family == socket.AF_INET6:
            pytest.skip("IPv6 loopback is not available here")
        with socket.socket(family) as sock:
            sock.settimeout(10)
            sock.connect((address, served.port))
            sock.sendall(b"hi\r\n.\r\n")
            assert read_all(sock) == answers(b"hi")


# -- limits --------------------------------------------------------------------


def test_over_long_line_answers_earlier_lines_then_error(echo: Callable[..., Served]) -> None:
    served = echo("--max-line-length", "100")
    with served.connect() as sock:
        sock.sendall(b"short\r\n" + b"x" * 100 + b"\r\n" + b"y" * 5000)
        reply = read_all(sock)
    assert reply.startswith(answers(b"short", b"x" * 100))
    assert reply.endswith(b"\r\n")
    assert b"too long" in reply[len(answers(b"short", b"x" * 100)) :]
    # the server is still fine for others
    with served.connect() as sock:
        sock.sendall(b"next\r\n.\r\n")
        assert read_all(sock) == answers(b"next")


def test_max_connections(echo: Callable[..., Served]) -> None:
    served = echo("--max-connections", "2")
    first, second = served.connect(), served.connect()
    try:
        for sock in (first, second):
            sock.sendall(b"in\r\n")
            assert read_until(sock, answers(b"in")) == answers(b"in")
        with served.connect() as third:
            reply = read_all(third)
            assert reply.startswith(b"ERROR") and reply.endswith(b"\r\n")
        for sock in (first, second):
            sock.sendall(b"still here\r\n")
            assert read_until(sock, answers(b"still here")) == answers(b"still here")
    finally:
        first.close()
        second.close()


def test_idle_client_is_closed(echo: Callable[..., Served]) -> None:
    served = echo("--idle-timeout", "0.5")
    with served.connect() as sock:
        started = time.monotonic()
        assert read_all(sock, timeout=10) == b""
        assert time.monotonic() - started >= 0.4
    served.wait_log(r"no data for 0.5 s")


def test_active_client_is_not_idle(echo: Callable[..., Served]) -> None:
    # A line every 0.2 s for 1.6 s in all, past the 1 to 1.25 s a silent peer gets;
    # 0.8 s of slack between lines for a client or server slowed by a loaded machine.
    with echo("--idle-timeout", "1").connect() as sock:
        for i in range(8):
            line = f"tick {i}".encode()
            sock.sendall(line + b"\r\n")
            assert read_until(sock, answers(line)) == answers(line)
            time.sleep(0.2)


def rss_kib(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    raise AssertionError("no VmRSS")


def flood(sock: socket.socket, stop: threading.Event, sent: list[int]) -> None:
    """Send lines without ever reading, until told to stop or blocked for good."""
    block = b"flood flood flood flood flood\r\n" * 2048
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            sent[0] += sock.send(block)
        except TimeoutError:
            continue
        except OSError:
            return


def test_flood_without_reading_stays_bounded(echo: Callable[..., Served]) -> None:
    served = echo()
    before = rss_kib(served.process.pid)
    stop, sent = threading.Event(), [0]
    flooder = served.connect()
    thread = threading.Thread(target=flood, args=(flooder, stop, sent), daemon=True)
    thread.start()
    try:
        time.sleep(3)
        # A second client is answered promptly while the first floods.
        with served.connect() as other:
            started = time.monotonic()
            other.sendall(b"am I served?\r\n")
            assert read_until(other, answers(b"am I served?")) == answers(b"am I served?")
            # Milliseconds on a quiet machine; 5 s is room for a loaded one, and a
            # server stuck on the flood still fails it (sent and RSS are checked below).
            assert time.monotonic() - started < 5.0
        grown = rss_kib(served.process.pid) - before
        assert grown < 32 * 1024, f"server grew {grown} KiB while flooded"
        # Reading is paused: the flooder has stalled far below what it could push.
        assert sent[0] < 64 * 1024 * 1024
    finally:
        stop.set()
        thread.join(5)
        flooder.close()


def test_peer_reset_mid_line(echo: Callable[..., Served]) -> None:
    served = echo()
    sock = served.connect()
    sock.sendall(b"complete\r\nhalf a li")
    assert read_until(sock, answers(b"complete")) == answers(b"complete")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    served.wait_log(r"closed after")
    with served.connect() as other:
        other.sendall(b"fine\r\n.\r\n")
        assert read_all(other) == answers(b"fine")
    assert served.process.poll() is None


def test_thousand_concurrent_connections(echo: Callable[..., Served]) -> None:
    served = echo()

    async def one(i: int) -> bytes:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(f"client {i}\r\n".encode())
        reply = await reader.readexactly(len(answers(f"client {i}".encode())))
        await asyncio.sleep(0.5)  # all open at once
        writer.write(b".\r\n")
        assert await reader.read() == b""
        writer.close()
        return reply

    async def main() -> list[bytes]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 60)

    replies = asyncio.run(main())
    assert replies == [answers(f"client {i}".encode()) for i in range(1000)]


# -- shutdown ------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_clients_flood(echo: Callable[..., Served], sig: int) -> None:
    served = echo("--grace", "2")
    stops, threads, socks = [], [], []
    for _ in range(3):
        stop, sock = threading.Event(), served.connect()
        thread = threading.Thread(target=flood, args=(sock, stop, [0]), daemon=True)
        thread.start()
        stops.append(stop)
        threads.append(thread)
        socks.append(sock)
    reader = served.connect()
    reader.sendall(b"before the end\r\n")
    assert read_until(reader, answers(b"before the end")) == answers(b"before the end")
    time.sleep(1)
    started = time.monotonic()
    assert served.stop(sig) == 0
    assert time.monotonic() - started < 10
    assert read_all(reader) == b""  # closed cleanly after its answers
    for stop, thread, sock in zip(stops, threads, socks, strict=True):
        stop.set()
        thread.join(5)
        sock.close()
    reader.close()


def test_sigterm_sends_queued_answers(echo: Callable[..., Served]) -> None:
    served = echo()
    with served.connect() as sock:
        sock.sendall(b"a\r\nb\r\n")
        assert read_until(sock, answers(b"a", b"b")) == answers(b"a", b"b")
        assert served.stop() == 0
        assert read_all(sock) == b""


# -- real peers ------------------------------------------------------------------


def test_telnet_in_a_pty(echo: Callable[..., Served]) -> None:
    telnet = require_tool("telnet")
    served = echo()
    child = pexpect.spawn(telnet, [served.host, str(served.port)], timeout=10)
    try:
        child.expect("Escape character")
        child.sendline("This is a line.")
        child.expect(r"You sent: This is a line\.\r\n")
        child.sendline(".")
        child.expect("Connection closed by foreign host")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_ncat_crlf(echo: Callable[..., Served]) -> None:
    ncat = require_tool("ncat")
    served = echo()
    result = subprocess.run(
        [ncat, "-C", served.host, str(served.port)],
        input=b"Hello!\nThis is a line.\n.\n",
        capture_output=True,
        timeout=20,
    )
    assert result.stdout == answers(b"Hello!", b"This is a line.")


def test_socat_crlf(echo: Callable[..., Served]) -> None:
    socat = require_tool("socat")
    served = echo()
    result = subprocess.run(
        [socat, "-t", "5", "STDIO", f"TCP:{served.host}:{served.port},crlf"],
        input=b"Hello!\nAnother.\n.\n",
        capture_output=True,
        timeout=20,
    )
    # socat's crlf turns the CRLF answers back into LF on its stdout.
    assert result.stdout == b"You sent: Hello!\nYou sent: Another.\n"


def test_openssl_s_client_against_tls(
    echo: Callable[..., Served], certificate: tuple[Path, Path]
) -> None:
    openssl = require_tool("openssl")
    cert, key = certificate
    served = echo("--tls-cert", str(cert), "--tls-key", str(key))
    child = openssl_s_client(openssl, cert, served.port)
    try:
        child.expect("verify return:1")
        child.sendline("over TLS")
        child.expect(r"You sent: over TLS\r")
        child.sendline(".")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert "(TLS)" in served.log()


def test_tls_refuses_plaintext_peer_only(
    echo: Callable[..., Served], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    served = echo("--tls-cert", str(cert), "--tls-key", str(key))
    with served.connect() as sock:
        sock.sendall(b"plain text\r\n")
        assert b"You sent" not in read_all(sock)
    assert served.process.poll() is None


# -- the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--port", "70000"], 2, "port must be 0-65535"),
        (["--port", "http"], 2, "not a port number"),
        (["--max-connections", "0"], 2, "must be at least 1"),
        (["--idle-timeout", "-1"], 2, ">= 0"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], 1, "TLS"),
        (["--tls-cert", "/nonexistent.pem"], 2, "go together"),
        (["--loop", "tokio"], 2, "invalid choice"),
    ],
)
def test_bad_usage_is_one_clear_line(args: list[str], code: int, message: str) -> None:
    result = subprocess.run(
        linechat_command("serve", "--port", "0", *args), capture_output=True, timeout=20
    )
    assert result.returncode == code
    assert message in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_address_in_use(serve: Callable[..., Served]) -> None:
    served = serve()
    result = subprocess.run(
        linechat_command("serve", "--host", "127.0.0.1", "--port", str(served.port)),
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert result.stderr.decode().strip().endswith("address already in use")
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops(serve: Callable[..., Served], loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    with serve("--loop", loop).connect() as sock:
        sock.sendall(b"loop\r\n.\r\n")
        assert read_all(sock) == answers(b"loop")


def test_connections_are_logged(serve: Callable[..., Served]) -> None:
    served = serve()
    with served.connect() as sock:
        sock.sendall(b"abc\r\n.\r\n")
        read_all(sock)
    served.wait_log(r"127\.0\.0\.1:\d+ closed after [\d.]+ s: 2 lines/8 B in, 1 lines/15 B out")
