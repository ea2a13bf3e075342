"""`linechat serve smtp-sink` end to end: smtplib, swaks and raw sockets against the real server.

Every stored message is read back with ``mailbox.Maildir`` and compared byte
for byte with what was sent, below the trace fields the sink adds.
"""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Served, linechat_command, read_all, require_tool

MESSAGE = b"From: a@b.example\r\nTo: x@y.example\r\nSubject: hello\r\n\r\nHello.\r\n"


@dataclass
class Sink:
    served: Served
    maildir: Path

    @property
    def port(self) -> int:
        return self.served.port

    def smtp(self, **kwargs: object) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30, **kwargs)  # type: ignore[arg-type]

    def connect(self) -> socket.socket:
        sock = self.served.connect(timeout=30)
        assert read_reply(sock).startswith(b"220 ")
        return sock

    def messages(self) -> list[bytes]:
        """Every stored message, oldest first, as its bytes on disk."""
        box = mailbox.Maildir(self.maildir, create=False)
        return [box.get_bytes(key) for key in sorted(box.keys(), key=_order)]

    def leftovers(self) -> list[str]:
        return os.listdir(self.maildir / "tmp")


def _order(key: str) -> tuple[int, int, int]:
    match = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", key)
    assert match is not None, key
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


@pytest.fixture
def sink(serve: Callable[..., Served], tmp_path: Path) -> Iterator[Callable[..., Sink]]:
    started: list[Sink] = []

    def start(*args: str) -> Sink:
        maildir = tmp_path / f"Maildir{len(started)}"
        served = serve("smtp-sink", "--maildir", str(maildir), *args)
        started.append(Sink(served, maildir))
        return started[-1]

    yield start
    for each in started:
        log = each.served.log()
        assert "Traceback" not in log, log


def read_reply(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """One whole SMTP reply (every line of a multi-line one)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        lines = data.split(b"\r\n")
        if len(lines) > 1 and all(len(line) >= 4 for line in lines[:-1]):
            last = lines[-2]
            if last[3:4] == b" ":
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_replies(sock: socket.socket, count: int, timeout: float = 30.0) -> list[bytes]:
    """``count`` reply lines (final lines of replies, and continuation lines too)."""
    sock.settimeout(timeout)
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[:-1]


def split_trace(stored: bytes) -> tuple[bytes, bytes]:
    """The sink's trace fields (Return-Path .. X-Envelope-To) and the message as sent."""
    assert stored.startswith(b"Return-Path: <")
    start = stored.index(b"\r\nX-Envelope-To: ")
    end = start + 2
    while True:
        end = stored.index(b"\r\n", end) + 2
        if stored[end : end + 1] != b"\t":
            return stored[:end], stored[end:]


# -- smtplib -----------------------------------------------------------------


def test_smtplib_plain_message_is_stored_exactly(sink: Callable[..., Sink]) -> None:
    server = sink("--hostname", "sink.test")
    with server.smtp() as client:
        code, banner = client.ehlo("client.example")
        assert code == 250
        for word in (b"PIPELINING", b"8BITMIME", b"SIZE 26214400", b"SMTPUTF8", b"ENHANCED"):
            assert word in banner
        assert b"STARTTLS" not in banner
        assert client.sendmail("a@b.example", ["x@y.example"], MESSAGE) == {}
        assert client.sock is not None
        local_port = client.sock.getsockname()[1]
    (stored,) = server.messages()
    trace, body = split_trace(stored)
    assert body == MESSAGE
    assert trace.startswith(
        b"Return-Path: <a@b.example>\r\n"
        b"Received: from client.example ([127.0.0.1]:%d)\r\n"
        b"\tby sink.test (linechat smtp-sink) with ESMTP\r\n\tid " % local_port
    )
    assert b"\tfor <x@y.example>; " in trace
    assert trace.endswith(b"X-Envelope-To: <x@y.example>\r\n")
    assert server.leftovers() == []


def test_dots_crlf_and_8bit_body_come_back_byte_for_byte(sink: Callable[..., Sink]) -> None:
    server = sink()
    body = (
        b"Subject: 8-bit\r\nContent-Type: text/plain; charset=latin-1\r\n\r\n"
        b".leading dot\r\n..two dots\r\n.\r\n \r\n\xe9t\xe9 \xff\x00\x80\r\n\r\n\r\nend"
    )
    with server.smtp() as client:
        client.ehlo()
        assert client.sendmail("a@b.example", ["x@y.example"], body, ["BODY=8BITMIME"]) == {}
    (stored,) = server.messages()
    # smtplib ends the text with CRLF when it does not: that CRLF is part of the message.
    assert split_trace(stored)[1] == body + b"\r\n"


def test_ten_megabyte_message(sink: Callable[..., Sink]) -> None:
    server = sink()
    line = b"".join(bytes([33 + (i % 90)]) for i in range(990))
    lines = [(b"." if i % 7 == 0 else b"") + line[: 900 + i % 90] for i in range(10_700)]
    body = b"Subject: big\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    assert len(body) > 10_000_000
    with server.smtp() as client:
        assert client.sendmail("a@b.example", ["x@y.example"], body) == {}
    (stored,) = server.messages()
    assert split_trace(stored)[1] == body
    assert server.leftovers() == []


def test_size_declared_too_big_is_refused_at_mail(sink: Callable[..., Sink]) -> None:
    server = sink("--max-message-size", "100K")
    with server.smtp() as client:
        assert b"SIZE 102400" in client.ehlo()[1]
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail("a@b.example", ["x@y.example"], b"x" * 200_000)
        assert info.value.smtp_code == 552
        assert b"5.3.4" in info.value.smtp_error
        client.rset()
        assert client.sendmail("a@b.example", ["x@y.example"], MESSAGE) == {}
    assert len(server.messages()) == 1


def test_size_not_declared_is_enforced_as_the_text_arrives(sink: Callable[..., Sink]) -> None:
    server = sink("--max-message-size", "100K")
    with server.smtp() as client:
        client.ehlo()
        assert client.mail("a@b.example")[0] == 250  # no SIZE= given
        assert client.rcpt("x@y.example")[0] == 250
        code, text = client.data((b"y" * 998 + b"\r\n") * 2000)
        assert code == 552
        assert text == b"5.3.4 Message size exceeds fixed limit of 102400 bytes"
        assert client.sendmail("a@b.example", ["x@y.example"], MESSAGE) == {}
    (stored,) = server.messages()
    assert split_trace(stored)[1] == MESSAGE
    assert server.leftovers() == []


def test_many_recipients_and_the_limit(sink: Callable[..., Sink]) -> None:
    server = sink()
    recipients = [f"user{i}@y.example" for i in range(100)]
    with server.smtp() as client:
        assert client.sendmail("a@b.example", recipients, MESSAGE) == {}
        client.ehlo()
        assert client.mail("a@b.example")[0] == 250
        for address in recipients:
            assert client.rcpt(address)[0] == 250
        assert client.rcpt("one-too-many@y.example") == (452, b"4.5.3 Error: too many recipients")
        assert client.data(MESSAGE)[0] == 250
    first, second = server.messages()
    trace = split_trace(first)[0]
    assert b"\tfor <" not in trace  # one Received "for" only with one recipient
    listed = re.findall(rb"<(user\d+@y\.example)>", trace)
    assert [address.decode() for address in listed] == recipients
    assert split_trace(second)[1] == MESSAGE

    limited = sink("--max-recipients", "3")
    with limited.smtp() as client:
        refused = client.sendmail("a@b.example", recipients[:5], MESSAGE)
        assert refused == {
            recipients[3]: (452, b"4.5.3 Error: too many recipients"),
            recipients[4]: (452, b"4.5.3 Error: too many recipients"),
        }
    assert re.findall(rb"<(user\d@y\.example)>", split_trace(limited.messages()[0])[0]) == [
        address.encode() for address in recipients[:3]
    ]


def test_smtputf8_addresses(sink: Callable[..., Sink]) -> None:
    server = sink()
    with server.smtp() as client:
        client.ehlo()
        refused = client.sendmail("jörg@bücher.example", ["zoë@example.org"], MESSAGE, ["SMTPUTF8"])
        assert refused == {}
    trace = split_trace(server.messages()[0])[0]
    assert "Return-Path: <jörg@bücher.example>".encode() in trace
    assert b" with UTF8SMTP\r\n" in trace


# -- pipelining and raw sessions ---------------------------------------------


def test_pipelined_commands_are_answered_in_order(sink: Callable[..., Sink]) -> None:
    server = sink("--hostname", "sink.test")
    with server.connect() as sock:
        sock.sendall(
            b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n"
            b"RCPT TO:<bad>\r\nRCPT TO:<z@y.example>\r\nDATA\r\n"
        )
        replies = read_replies(sock, 11)
        assert replies[5:] == [
            b"250 ENHANCEDSTATUSCODES",
            b"250 2.1.0 Ok",
            b"250 2.1.5 Ok",
            b"501 5.1.3 Bad recipient address syntax",
            b"250 2.1.5 Ok",
            b"354 End data with <CR><LF>.<CR><LF>",
        ]
        # The text, its end and the next transaction in one write, split mid-line too.
        sock.sendall(b"one\r\n..two\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<q@r.example>\r\nDA")
        time.sleep(0.05)
        sock.sendall(b"TA\r\nthree\r\n.\r\nNOOP\r\nQUIT\r\n")
        rest = read_all(sock).split(b"\r\n")[:-1]
    assert rest[0].startswith(b"250 2.0.0 Ok: queued as ")
    assert rest[1:5] == [
        b"250 2.1.0 Ok",
        b"250 2.1.5 Ok",
        b"354 End data with <CR><LF>.<CR><LF>",
        rest[4],
    ]
    assert rest[4].startswith(b"250 2.0.0 Ok: queued as ") and rest[4] != rest[0]
    assert rest[5:] == [b"250 2.0.0 Ok", b"221 2.0.0 Bye"]
    first, second = server.messages()
    assert split_trace(first)[1] == b"one\r\n.two\r\n"
    assert split_trace(second)[1] == b"three\r\n"
    assert split_trace(second)[0].startswith(b"Return-Path: <>\r\n")


@pytest.mark.parametrize(
    "smuggled",
    [
        b"\n.\r\n",  # <LF>.<CR><LF>
        b"\r\n.\n",  # <CR><LF>.<LF>
        b"\r.\r",  # <CR>.<CR>
        b"\n.\n",  # <LF>.<LF>
        b"\r\n.\r",  # <CR><LF>.<CR>
    ],
)
def test_smuggled_end_of_data_is_text_and_the_message_refused(
    sink: Callable[..., Sink], smuggled: bytes
) -> None:
    server = sink()
    with server.connect() as sock:
        sock.sendall(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
        assert read_replies(sock, 9)[-1].startswith(b"354 ")
        sock.sendall(
            b"Subject: first\r\n\r\nhello"
            + smuggled
            + b"MAIL FROM:<smuggler@evil.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n"
            + b"Subject: smuggled\r\n\r\n.\r\nNOOP\r\nQUIT\r\n"
        )
        replies = read_all(sock).split(b"\r\n")[:-1]
    assert replies == [
        b"554 5.6.0 Message refused: bare CR or LF in its text; "
        b"lines must end with CRLF (RFC 5321 2.3.8)",
        b"250 2.0.0 Ok",
        b"221 2.0.0 Bye",
    ]
    assert server.messages() == []
    assert server.leftovers() == []


def test_unterminated_end_line_at_end_of_stream_stores_nothing(sink: Callable[..., Sink]) -> None:
    server = sink()
    with server.connect() as sock:
        sock.sendall(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
        sock.sendall(b"Subject: cut\r\n\r\ntext\r\n.")
        sock.shutdown(socket.SHUT_WR)
        replies = read_all(sock).split(b"\r\n")[:-1]
    assert replies[-1].startswith(b"354 ")
    assert server.messages() == [] and server.leftovers() == []


def test_client_gone_in_the_middle_of_a_large_message_leaves_nothing(
    sink: Callable[..., Sink],
) -> None:
    server = sink()
    with server.connect() as sock:
        sock.sendall(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
        assert read_replies(sock, 4)[-1].startswith(b"354 ")
        sock.sendall((b"x" * 998 + b"\r\n") * 1000)  # about 1 MB: spilled to tmp/
        deadline = time.monotonic() + 10
        while not server.leftovers() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.leftovers()
    deadline = time.monotonic() + 10
    while server.leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.leftovers() == [] and server.messages() == []


def test_garbage_gets_smtp_errors_then_421(sink: Callable[..., Sink]) -> None:
    server = sink("--hostname", "sink.test")
    with server.connect() as sock:
        sock.sendall(b"\x00\xff\r\nHELO\r\nMAIL FROM:<a@b>\r\n" + b"x" * 70_000 + b"\r\nNOOP\r\n")
        assert read_replies(sock, 5) == [
            b"500 5.5.2 Error: control characters in command",
            b"501 5.5.4 Syntax: HELO hostname",
            b"503 5.5.1 Error: send HELO/EHLO first",
            b"500 5.5.2 Error: line too long",
            b"250 2.0.0 Ok",
        ]
        sock.sendall(b"FROB\r\n" * 30)
        replies = read_all(sock).split(b"\r\n")[:-1]
    assert replies == [b"500 5.5.2 Error: command not recognized"] * 16 + [
        b"421 4.7.0 sink.test Error: too many errors"
    ]


def test_http_request_is_answered_and_closed(sink: Callable[..., Sink]) -> None:
    server = sink()
    with server.connect() as sock:
        sock.sendall(b"POST /form HTTP/1.1\r\nHost: localhost\r\n\r\nMAIL FROM:<a@b.example>\r\n")
        assert read_all(sock) == b"554 5.7.0 Error: HTTP request on an SMTP port; closing\r\n"


def test_idle_client_gets_421_and_is_closed(sink: Callable[..., Sink]) -> None:
    server = sink("--idle-timeout", "0.4", "--hostname", "sink.test")
    with server.connect() as sock:
        assert read_all(sock) == b"421 4.4.2 sink.test Error: timeout exceeded\r\n"


def test_bad_peers_cost_a_good_client_nothing(sink: Callable[..., Sink]) -> None:
    server = sink()
    silent = server.connect()
    flooder = server.connect()
    dribbler = server.connect()
    try:
        # The flooder sends commands and never reads its replies: it is paused, not served.
        flooder.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent < 20_000_000:
            try:
                sent += flooder.send(b"NOOP\r\n" * 10_000)
            except BlockingIOError:
                break
        dribbler.sendall(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
        dribbler.sendall(b"x" * 1000)  # and never a line end
        for _ in range(20):
            with server.smtp() as client:
                assert client.sendmail("a@b.example", ["x@y.example"], MESSAGE) == {}
    finally:
        for sock in (silent, flooder, dribbler):
            sock.close()
    assert len(server.messages()) == 20


# -- STARTTLS ----------------------------------------------------------------


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    return context


def test_starttls_with_smtplib(sink: Callable[..., Sink], certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = sink("--tls-cert", str(cert), "--tls-key", str(key))
    with server.smtp() as client:
        assert b"STARTTLS" in client.ehlo()[1]
        assert client.starttls(context=client_context(certificate))[0] == 220
        code, banner = client.ehlo()
        assert code == 250 and b"STARTTLS" not in banner
        assert client.sendmail("a@b.example", ["x@y.example"], MESSAGE) == {}
    trace, body = split_trace(server.messages()[0])
    assert body == MESSAGE
    assert re.search(rb"\r\n\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\r\n", trace)
    assert b" with ESMTPS\r\n" in trace


def test_starttls_injection_is_discarded(
    sink: Callable[..., Sink], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = sink("--tls-cert", str(cert), "--tls-key", str(key))
    raw = server.connect()
    raw.sendall(b"EHLO c\r\n")
    assert b"250-STARTTLS\r\n" in read_reply(raw)
    # A man in the middle appends commands to the client's STARTTLS packet.
    raw.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\n")
    assert read_reply(raw) == b"220 2.0.0 Ready to start TLS\r\n"
    with client_context(certificate).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"EHLO c\r\n")
        ehlo = read_reply(tls)
        assert ehlo.startswith(b"250-") and ehlo.endswith(b"250 ENHANCEDSTATUSCODES\r\n")
        tls.sendall(b"RCPT TO:<x@y.example>\r\nDATA\r\nQUIT\r\n")
        assert read_replies(tls, 3) == [
            b"503 5.5.1 Error: need MAIL command",
            b"503 5.5.1 Error: need MAIL command",
            b"221 2.0.0 Bye",
        ]
    assert server.messages() == []


def test_plaintext_sent_after_starttls_in_its_own_packet_breaks_only_that_handshake(
    sink: Callable[..., Sink], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = sink("--tls-cert", str(cert), "--tls-key", str(key))
    with server.connect() as raw:
        raw.sendall(b"EHLO c\r\nSTARTTLS\r\n")
        read_replies(raw, 9)
        raw.sendall(b"MAIL FROM:<evil@x.example>\r\n")  # not TLS: the handshake fails
        assert read_all(raw) == b""
    with server.smtp() as client:  # the server goes on
        client.starttls(context=client_context(certificate))
        assert client.sendmail("a@b.example", ["x@y.example"], MESSAGE) == {}
    assert len(server.messages()) == 1


# -- swaks -------------------------------------------------------------------


def run_swaks(*args: str) -> subprocess.CompletedProcess[str]:
    swaks = require_tool("swaks")
    return subprocess.run(
        [swaks, "--helo", "swaks.example", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_swaks_with_pipelining(sink: Callable[..., Sink]) -> None:
    server = sink()
    done = run_swaks(
        "--server",
        f"127.0.0.1:{server.port}",
        "--from",
        "sender@b.example",
        "--to",
        "one@y.example,two@y.example",
        "--pipeline",
        "--body",
        "Swaks body\n.with a dot",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Pipelined: MAIL, both RCPTs and DATA sent before the first of their replies.
    sent = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    start = sent.index("->", sent.index("<-", sent.index("->")) + 1)  # after EHLO's reply
    assert sent[start : start + 4] == ["->"] * 4, done.stdout
    (stored,) = server.messages()
    trace, body = split_trace(stored)
    assert b"Received: from swaks.example (" in trace
    assert b"X-Envelope-To: <one@y.example>,\r\n\t<two@y.example>\r\n" in trace
    assert b"\r\n\r\nSwaks body\r\n.with a dot\r\n" in body
    assert b"\n" not in body.replace(b"\r\n", b"")


def test_swaks_with_tls(sink: Callable[..., Sink], certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = sink("--tls-cert", str(cert), "--tls-key", str(key))
    done = run_swaks(
        "--server",
        f"127.0.0.1:{server.port}",
        "--from",
        "sender@b.example",
        "--to",
        "one@y.example",
        "--tls",
        "--pipeline",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "STARTTLS" in done.stdout
    (stored,) = server.messages()
    assert b" with ESMTPS\r\n" in split_trace(stored)[0]


def test_swaks_sees_the_size_limit(sink: Callable[..., Sink]) -> None:
    server = sink("--max-message-size", "2K")
    done = run_swaks(
        "--server",
        f"127.0.0.1:{server.port}",
        "--to",
        "one@y.example",
        "--body",
        "x" * 5000,
    )
    assert done.returncode != 0
    assert "552 5.3.4 Message size exceeds fixed limit of 2048 bytes" in done.stdout
    assert server.messages() == []


# -- PROXY protocol ------------------------------------------------------------


def test_received_names_the_proxy_client(sink: Callable[..., Sink]) -> None:
    server = sink("--proxy-protocol")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 25\r\n")
        assert read_reply(sock).startswith(b"220 ")
        sock.sendall(b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
        read_replies(sock, 4)
        sock.sendall(MESSAGE + b".\r\nQUIT\r\n")
        read_all(sock)
        own_port = sock.getsockname()[1]
    trace, body = split_trace(server.messages()[0])
    assert body == MESSAGE
    assert b"Received: from c ([203.0.113.7]:4711 via PROXY [127.0.0.1]:%d)\r\n" % own_port in trace


# -- options -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "smtp-sink needs --maildir"),
        (["--maildir", "/proc/no-such-maildir"], "cannot use --maildir /proc/no-such-maildir"),
        (["--maildir", "{tmp}", "--max-message-size", "10Q"], "not a size in bytes"),
        (["--maildir", "{tmp}", "--max-recipients", "0"], "must be at least 1"),
        (["--maildir", "{tmp}", "--hostname", "bad name"], "not a host name"),
        (["--maildir", "{tmp}", "--layer", "stream"], "runs on the protocol layer only"),
    ],
)
def test_unusable_options_exit_2_with_one_clear_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    argv = [arg.format(tmp=tmp_path / "Maildir") for arg in args]
    done = subprocess.run(
        linechat_command("serve", "smtp-sink", "--port", "0", *argv),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_startup_line_says_starttls_and_listeners_stay_plaintext(
    sink: Callable[..., Sink], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = sink("--tls-cert", str(cert), "--tls-key", str(key))
    assert "smtp-sink service (protocol layer) listening on" in server.served.log()
    assert "(STARTTLS)" in server.served.log()
    with server.connect() as sock:  # the greeting came in plaintext
        sock.sendall(b"QUIT\r\n")
        assert read_all(sock) == b"221 2.0.0 Bye\r\n"


def test_over_long_text_line_refuses_only_that_message(sink: Callable[..., Sink]) -> None:
    server = sink("--max-line-length", "1000")
    with server.smtp() as client:
        client.ehlo()
        client.mail("a@b.example")
        client.rcpt("x@y.example")
        code, text = client.data(b"Subject: long\r\n\r\n" + b"z" * 5000 + b"\r\nend\r\n")
        assert (code, text) == (554, b"5.6.0 Message refused: a line of its text is too long")
        assert client.sendmail("a@b.example", ["x@y.example"], MESSAGE) == {}
    (stored,) = server.messages()
    assert split_trace(stored)[1] == MESSAGE


def test_storage_failure_gets_451_and_a_warning(sink: Callable[..., Sink]) -> None:
    server = sink()
    with server.smtp() as client:
        client.ehlo()
        shutil.rmtree(server.maildir / "tmp")  # every new file now fails to open
        client.mail("a@b.example")
        client.rcpt("x@y.example")
        code, text = client.data(MESSAGE)
        assert (code, text) == (
            451,
            b"4.3.0 Error: the message could not be stored; try again later",
        )
        assert client.noop()[0] == 250
    server.served.wait_log("WARNING .*cannot store a message in")
    assert server.messages() == []


def test_the_documented_python_example(sink: Callable[..., Sink]) -> None:
    server = sink()
    page = (Path(__file__).parent.parent / "docs" / "services" / "smtp-sink.md").read_text()
    (program,) = re.findall(r"```python\n(.*?)```", page, re.S)
    env = {**os.environ, "SMTP_PORT": str(server.port), "MAILDIR": str(server.maildir)}
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.endswith(" Welcome <user@example.net>")
    (stored,) = server.messages()
    assert b"\r\n\r\nHello from the application.\r\n" in stored


def test_everything_in_one_write_then_end_of_stream(sink: Callable[..., Sink]) -> None:
    """Lines after a final dot wait for its commit (in a thread) and are answered in order."""
    server = sink()
    with server.connect() as sock:
        sock.sendall(
            b"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n"
            b"first\r\n.\r\n" + b"y" * 70_000 + b"\r\nMAIL FROM:<b@b.example>\r\n"
            b"RCPT TO:<x@y.example>\r\nDATA\r\nsecond\r\n.\r\nNOOP\r\nQUIT\r\n"
        )
        sock.shutdown(socket.SHUT_WR)
        replies = read_all(sock).split(b"\r\n")[:-1]
    assert [reply[:3] for reply in replies] == [
        b"250",  # HELO
        b"250",
        b"250",
        b"354",
        b"250",  # first stored
        b"500",  # the over-long line, in its turn
        b"250",
        b"250",
        b"354",
        b"250",  # second stored
        b"250",  # NOOP
        b"221",
    ]
    assert replies[5] == b"500 5.5.2 Error: line too long"
    first, second = server.messages()
    assert split_trace(first)[1] == b"first\r\n"
    assert split_trace(second)[1] == b"second\r\n"
