"""`linechat serve whois` end to end: Debian's whois client and raw sockets over loopback."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Served, read_all, require_tool
from .helpers import serve_usage_error


@pytest.fixture
def records(tmp_path: Path) -> Path:
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "example.com").write_text("domain: example.com\nstatus: active\n")
    (folder / "AS64500").write_text("aut-num: AS64500\nas-name: EXAMPLE-NET\n")
    return folder


@pytest.fixture
def whois_server(serve: Callable[..., Served], records: Path) -> Callable[..., Served]:
    def start(*flags: str) -> Served:
        return serve("whois", "--data", str(records), *flags)

    return start


def whois(served: Served, query: str) -> str:
    """Ask with the real Debian whois client."""
    path = require_tool("whois")
    done = subprocess.run(
        [path, "-h", served.host, "-p", str(served.port), query],
        capture_output=True,
        timeout=20,
        check=True,
    )
    return done.stdout.decode()


def ask(served: Served, data: bytes, *, shut: bool = False) -> bytes:
    """Send raw bytes, read the whole answer (the server closes)."""
    with served.connect() as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def test_whois_client_gets_the_record(whois_server: Callable[..., Served]) -> None:
    served = whois_server()
    assert whois(served, "EXAMPLE.com") == "domain: example.com\nstatus: active\n"
    assert whois(served, "as64500") == "aut-num: AS64500\nas-name: EXAMPLE-NET\n"


def test_unknown_key_is_a_clear_no_match(whois_server: Callable[..., Served]) -> None:
    assert whois(whois_server(), "nothing.example") == '% No match for "nothing.example".\n'


def test_toml_data(serve: Callable[..., Served], tmp_path: Path) -> None:
    data = tmp_path / "records.toml"
    data.write_text('[AS64500]\naut-num = "AS64500"\nmnt-by = ["A", "B"]\n')
    served = serve("whois", "--data", str(data))
    assert whois(served, "AS64500") == "aut-num: AS64500\nmnt-by: A\nmnt-by: B\n"


def test_answer_lines_end_in_crlf_and_the_server_closes(
    whois_server: Callable[..., Served],
) -> None:
    served = whois_server()
    assert ask(served, b"example.com\r\n") == b"domain: example.com\r\nstatus: active\r\n"
    assert ask(served, b"example.com\n") == b"domain: example.com\r\nstatus: active\r\n"
    assert ask(served, b"  Example.Com \r\n") == b"domain: example.com\r\nstatus: active\r\n"
    # One query per connection: what follows it is not answered.
    assert ask(served, b"AS64500\r\nexample.com\r\n") == (
        b"aut-num: AS64500\r\nas-name: EXAMPLE-NET\r\n"
    )
    # A query without its line end, then end of stream, is still a query.
    assert ask(served, b"example.com", shut=True).startswith(b"domain: example.com")


@pytest.mark.parametrize(
    ("query", "answer"),
    [
        (b"a" * 257 + b"\r\n", b"% Error: query longer than 256 bytes.\r\n"),
        (b"a" * 100_000, b"% Error: query longer than 256 bytes.\r\n"),
        (b"exam\x00ple.com\r\n", b"% Error: query contains control characters.\r\n"),
        (b"ex\tample\r\n", b"% Error: query contains control characters.\r\n"),
        (b"caf\xe9\r\n", b"% Error: query is not valid UTF-8.\r\n"),
        (b"   \r\n", b"% Error: empty query.\r\n"),
    ],
)
def test_bad_queries_get_an_error_answer(
    whois_server: Callable[..., Served], query: bytes, answer: bytes
) -> None:
    served = whois_server()
    assert ask(served, query) == answer
    assert "Traceback" not in served.log()


def test_longest_query_is_answered(whois_server: Callable[..., Served]) -> None:
    query = "x" * 256
    assert (
        ask(whois_server(), query.encode() + b"\r\n") == f'% No match for "{query}".\r\n'.encode()
    )


def test_silent_client_is_closed_after_the_idle_timeout(
    whois_server: Callable[..., Served],
) -> None:
    served = whois_server("--idle-timeout", "0.3")
    started = time.monotonic()
    with served.connect() as sock:
        assert read_all(sock) == b"% Error: no query within 0.3 seconds.\r\n"
    assert time.monotonic() - started < 5


def test_silence_and_floods_cost_the_others_nothing(whois_server: Callable[..., Served]) -> None:
    served = whois_server("--idle-timeout", "5")
    silent = [served.connect() for _ in range(50)]
    try:
        with served.connect() as flood:
            flood.sendall(b"x" * 200)  # an unfinished query, held open
            assert whois(served, "example.com").startswith("domain: example.com")
            flood.sendall(b"y" * 10_000)
            assert read_all(flood) == b"% Error: query longer than 256 bytes.\r\n"
        assert whois(served, "as64500").startswith("aut-num")
    finally:
        for sock in silent:
            sock.close()


def test_rate_limit_per_client_address(whois_server: Callable[..., Served]) -> None:
    served = whois_server("--rate", "3/minute")
    assert ask(served, b"bad\x01\r\n").startswith(b"% Error: query contains")  # counts too
    for _ in range(2):
        assert whois(served, "example.com").startswith("domain:")
    over = whois(served, "example.com")
    assert over == (
        "% Error: rate limit exceeded (at most 3 queries a minute from your address); "
        "try again later.\n"
    )
    assert "Traceback" not in served.log()


def test_rate_limit_uses_the_proxy_address(whois_server: Callable[..., Served]) -> None:
    served = whois_server("--rate", "2/minute", "--proxy-protocol")

    def via(client: str) -> bytes:
        header = f"PROXY TCP4 {client} 127.0.0.1 5000 43\r\n".encode()
        return ask(served, header + b"example.com\r\n")

    assert via("192.0.2.1").startswith(b"domain:")
    assert via("192.0.2.1").startswith(b"domain:")
    assert via("192.0.2.1").startswith(b"% Error: rate limit exceeded")
    assert via("192.0.2.2").startswith(b"domain:")  # another client, its own budget


def test_rate_zero_turns_the_limit_off(whois_server: Callable[..., Served]) -> None:
    served = whois_server("--rate", "0")
    for _ in range(70):
        assert ask(served, b"example.com\r\n").startswith(b"domain:")


def test_sighup_reloads_without_dropping_a_connection(
    whois_server: Callable[..., Served], records: Path
) -> None:
    served = whois_server()
    with served.connect() as waiting:  # open across the reload, query sent after it
        waiting.sendall(b"new")
        (records / "new.example").write_text("domain: new.example\n")
        served.process.send_signal(signal.SIGHUP)
        served.wait_log(r"reloaded 3 WHOIS records")
        waiting.sendall(b".example\r\n")
        assert read_all(waiting) == b"domain: new.example\r\n"
    assert whois(served, "new.example") == "domain: new.example\n"


def test_failed_reload_keeps_the_old_data(
    whois_server: Callable[..., Served], records: Path
) -> None:
    served = whois_server()
    (records / "broken").write_bytes(b"\xff\xfe")
    served.process.send_signal(signal.SIGHUP)
    served.wait_log(r"reload failed, still serving the previous data: .*broken' is not UTF-8")
    assert whois(served, "example.com").startswith("domain: example.com")
    assert served.process.poll() is None


def test_unreadable_data_is_an_error_at_start(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"caf\xe9")
    err = serve_usage_error("whois", "--data", str(tmp_path), "--port", "0")
    assert f"{tmp_path / 'bad'}" in err
    assert "Traceback" not in err


def test_missing_data_flag_is_a_usage_error() -> None:
    assert "--data" in serve_usage_error("whois", "--port", "0")


def test_bad_rate_is_a_usage_error(records: Path) -> None:
    err = serve_usage_error("whois", "--data", str(records), "--rate", "often")
    assert "rate must look like 60/minute" in err


def test_whois_client_over_ipv6(serve: Callable[..., Served], records: Path) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    served = serve("whois", "--data", str(records), host="::1")
    # (conftest's start-up pattern does not read "[::1]:port"; read it here.)
    match = re.search(r"listening on \[::1\]:(\d+)", served.log())
    assert match is not None
    served.host, served.port = "::1", int(match.group(1))
    assert whois(served, "example.com").startswith("domain: example.com")


def test_stream_layer_is_refused(records: Path) -> None:
    err = serve_usage_error("whois", "--data", str(records), "--layer", "stream")
    assert "runs on the protocol layer only" in err


def test_workers_each_serve_the_data(whois_server: Callable[..., Served]) -> None:
    served = whois_server("--workers", "2")
    for _ in range(4):
        assert whois(served, "example.com").startswith("domain: example.com")


def test_sighup_to_the_supervisor_reloads_every_worker(
    whois_server: Callable[..., Served], records: Path
) -> None:
    served = whois_server("--workers", "2")
    (records / "late.example").write_text("domain: late.example\n")
    served.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while served.log().count("SIGHUP: reloading") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.log().count("SIGHUP: reloading") == 2
    assert served.process.poll() is None
    for _ in range(8):  # the kernel spreads these over both workers
        assert whois(served, "late.example") == "domain: late.example\n"
