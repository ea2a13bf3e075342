"""`linechat connect --dialect` in lockstep against real servers, and every exit status.

Redis, memcached, aiosmtpd (its own process), Dovecot (POP3 and IMAP, run
unprivileged from a config this module writes) and ngircd are the peers;
small scripted servers play the slow one, the one that drops mid-reply, the
one that never answers and the one that speaks garbage.
"""

from __future__ import annotations

import grp
import json
import mailbox
import os
import pwd
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Served, require_tool
from .helpers import free_port, start_on_free_port, start_on_free_ports, stop_process
from .test_connect import (
    PATH_FLAGS,
    Conn,
    Peer,
    finish,
    peer,  # noqa: F401  (the fixture behind ``scripted``)
    pipe_path,  # noqa: F401  (the fixture: both implementations)
    run_connect,
    terminal,
)

Script = Callable[[Conn], None]


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Callable[[Script], Peer]:
    """test_connect's ``peer`` fixture (one-connection scripted servers, closed after)."""
    start: Callable[[Script], Peer] = request.getfixturevalue("peer")
    return start


def ok(result: subprocess.CompletedProcess[bytes], status: int = 0) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert b"Traceback" not in result.stderr
    return result.stdout.decode()


# -- Redis -------------------------------------------------------------------------------


def redis_get(port: int, key: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {key}\r\n".encode())
        return sock.recv(1024)


@pytest.mark.usefixtures("pipe_path")
def test_redis_lockstep_like_redis_cli(redis_port: int) -> None:
    script = b"PING\nSET k hello\nGET k\nRPUSH l a b\nLRANGE l 0 -1\nGET none\nINCR n\n\nECHO x\n"
    out = ok(run_connect("--dialect", "redis", "127.0.0.1", str(redis_port), input=script))
    assert out == 'PONG\nOK\n"hello"\n(integer) 2\n1) "a"\n2) "b"\n(nil)\n(integer) 1\n"x"\n'
    raw = ok(run_connect("--dialect", "redis", "--raw", "127.0.0.1", str(redis_port),
                         input=b"LRANGE l 0 -1\nGET none\nHELLO 3\nHGETALL none\n"))  # fmt: skip
    assert raw.startswith("a\nb\n\nserver\nredis\n")


@pytest.mark.usefixtures("pipe_path")
def test_redis_first_error_stops_quits_and_exits_3(redis_port: int) -> None:
    script = b"SET before 1\nNOSUCHCOMMAND\nSET after 1\n"
    result = run_connect("--dialect", "redis", "127.0.0.1", str(redis_port), input=script)
    out = ok(result, 3)
    assert out.startswith("OK\n(error) ERR unknown command")
    assert out.endswith("OK\n")  # the reply to QUIT
    assert b"stopped at an error reply" in result.stderr
    assert redis_get(redis_port, "before") == b"$1\r\n1\r\n"
    assert redis_get(redis_port, "after") == b"$-1\r\n"  # never sent


@pytest.mark.usefixtures("pipe_path")
def test_redis_keep_going_and_json(redis_port: int) -> None:
    script = b"NOSUCHCOMMAND\nSET after 1\n"
    result = run_connect(
        "--dialect", "redis", "--keep-going", "--json", "127.0.0.1", str(redis_port), input=script
    )
    records = [json.loads(line) for line in ok(result, 3).splitlines()]
    assert [r["sent"] for r in records] == [["NOSUCHCOMMAND"], ["SET after 1"]]
    assert [r["status"] for r in records] == ["error", "ok"]
    assert records[1]["reply"] == ["OK"]
    assert all(isinstance(r["elapsed_ms"], float | int) for r in records)
    assert b"1 error reply" in result.stderr
    assert redis_get(redis_port, "after") == b"$1\r\n1\r\n"


@pytest.mark.usefixtures("pipe_path")
def test_expect_replays_a_transcript(redis_port: int, tmp_path: Path) -> None:
    log = tmp_path / "session.log"
    script = b"SET k v1\nGET k\nINCR visits\nCLIENT ID\n"
    port = str(redis_port)
    ok(run_connect("--dialect", "redis", "--log", str(log), "127.0.0.1", port, input=script))
    text = log.read_text()
    assert re.search(r"\* dialect redis", text) and re.search(r" < \$2\n", text)
    # Replayed as is: INCR now answers 2 (and CLIENT ID differs), so the replay fails...
    result = run_connect("--expect", str(log), "127.0.0.1", port)
    ok(result, 5)
    stderr = result.stderr.decode()
    assert "reply 3 (to 'INCR visits') differs from the transcript" in stderr, stderr
    assert "-< :1" in stderr and "+< :2" in stderr
    # ...and passes once the variable lines are marked.
    marked = re.sub(r"< :1$", "< :{{*}}", text, flags=re.M)
    marked = re.sub(r"< :\d+$", "< {{*}}", marked, flags=re.M)  # a whole line: any one line
    log.write_text(marked)
    ok(run_connect("--expect", str(log), "127.0.0.1", port))
    with terminal(tmp_path, "--expect", str(log), "127.0.0.1", port) as child:  # not the editor
        child.expect('"v1"')
        assert finish(child) == 0
    # A reply that is not what the transcript says is caught with its diff.
    log.write_text(marked.replace("< v1\n", "< v9\n"))
    result = run_connect("--expect", str(log), "127.0.0.1", port)
    ok(result, 5)
    stderr = result.stderr.decode()
    assert "reply 2 (to 'GET k') differs" in stderr and "-< v9\n+< v1" in stderr, stderr


# -- memcached -----------------------------------------------------------------------------


@pytest.mark.usefixtures("pipe_path")
def test_memcached_data_blocks_and_filled_length(memcached_port: int) -> None:
    script = (
        b"set k 0 0 -\nhello world\nget k\nset q 0 0 3 noreply\nEND\nget q k\n"
        b"mg k v\ndelete k\nincr q 1\nversion\n"
    )
    result = run_connect("--dialect", "memcached", "127.0.0.1", str(memcached_port), input=script)
    out = ok(result, 3)
    assert out.startswith(
        "STORED\nVALUE k 0 11\nhello world\nEND\n"
        "VALUE q 0 3\nEND\nVALUE k 0 11\nhello world\nEND\nVA 11\nhello world\nDELETED\n"
        "CLIENT_ERROR"
    ), out
    assert "VERSION" not in out  # stopped at the error


# -- SMTP (aiosmtpd) -------------------------------------------------------------------------


@pytest.fixture
def smtpd(tmp_path: Path) -> Iterator[Callable[..., tuple[int, Path]]]:
    pytest.importorskip("aiosmtpd")
    started: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> tuple[int, Path]:
        log = tmp_path / f"smtpd-{len(started)}.log"

        def spawn(port: int) -> subprocess.Popen[bytes]:
            with log.open("wb") as out:
                return subprocess.Popen(
                    [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", *extra],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )

        process, port = start_on_free_port(spawn)
        started.append(process)
        return port, log

    yield start
    for process in started:
        stop_process(process)


MESSAGE = (
    b"EHLO client.test\nMAIL FROM:<a@example.org>\nRCPT TO:<b@example.org>\nDATA\n"
    b"Subject: lockstep\n\n.a line that starts with a dot\n.\nQUIT\n"
)


@pytest.mark.usefixtures("pipe_path")
def test_smtp_message_through_aiosmtpd(smtpd: Callable[..., tuple[int, Path]]) -> None:
    port, log = smtpd()
    out = ok(run_connect("--dialect", "smtp", "127.0.0.1", str(port), input=MESSAGE))
    lines = out.splitlines()
    assert lines[0].startswith("220 ")
    assert [line[:3] for line in lines[-5:]] == ["250", "250", "354", "250", "221"]
    deadline = time.monotonic() + 10
    while b".a line that starts" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"\n.a line that starts with a dot" in log.read_bytes()  # unstuffed again


@pytest.mark.usefixtures("pipe_path")
def test_smtp_error_reply_exit_3_and_json(smtpd: Callable[..., tuple[int, Path]]) -> None:
    port, _ = smtpd()
    script = b"HELO x\nRCPT TO:<b@example.org>\nMAIL FROM:<a@example.org>\n"
    result = run_connect("--dialect", "smtp", "--json", "127.0.0.1", str(port), input=script)
    records = [json.loads(line) for line in ok(result, 3).splitlines()]
    assert records[0]["sent"] == [] and records[0]["reply"][0].startswith("220")
    assert records[2]["status"] == "error" and records[2]["reply"][0][:1] == "5"
    assert len(records) == 4  # MAIL FROM never sent
    assert records[-1]["sent"] == ["QUIT"] and records[-1]["reply"][0].startswith("221")


def test_smtp_starttls_then_lockstep(
    smtpd: Callable[..., tuple[int, Path]], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    port, _ = smtpd("--tlscert", str(cert), "--tlskey", str(key))
    result = run_connect(
        "--dialect", "smtp", "--starttls", "smtp", "--cafile", str(cert),
        "127.0.0.1", str(port), input=MESSAGE,
    )  # fmt: skip
    out = ok(result)
    assert out.startswith("250-")  # the greeting was STARTTLS's; EHLO again over TLS
    assert out.rstrip().endswith("Bye") or out.splitlines()[-1].startswith("221")


def test_smtp_over_tls_and_send_proxy(
    scripted: Callable[[Script], Peer], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[bytes] = []

    def script(conn: Conn) -> None:
        seen.append(conn.line())  # the PROXY header, before TLS
        tls = Conn(context.wrap_socket(conn.sock, server_side=True))
        tls.send(b"220 tls.test ready\r\n")
        while line := tls.line():
            seen.append(line)
            tls.send(b"221 bye\r\n" if line.startswith(b"QUIT") else b"250 ok\r\n")
            if line.startswith(b"QUIT"):
                break

    server = scripted(script)
    result = run_connect(
        "--dialect", "smtp", "--tls", "--cafile", str(cert), "--send-proxy", "v1",
        "--proxy-source", "192.0.2.7:4242", "localhost", str(server.port),
        input=b"HELO x\nNOOP\nQUIT\n",
    )  # fmt: skip
    server.join()
    assert ok(result) == "220 tls.test ready\n250 ok\n250 ok\n221 bye\n"
    assert seen[0].startswith(b"PROXY TCP4 192.0.2.7 ")
    assert seen[1:] == [b"HELO x\r\n", b"NOOP\r\n", b"QUIT\r\n"]


def test_smtp_into_linechat_serve_smtp_sink(serve: Callable[..., Served], tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    served = serve("smtp-sink", "--maildir", str(maildir), "--max-recipients", "1")
    port = str(served.port)
    out = ok(run_connect("--dialect", "smtp", served.host, port, input=MESSAGE))
    assert out.splitlines()[0].startswith("220 ") and out.splitlines()[-1].startswith("221")
    box = mailbox.Maildir(maildir, create=False)
    (stored,) = [box.get_bytes(key) for key in box.iterkeys()]
    assert b"\n.a line that starts with a dot" in stored  # unstuffed by the sink
    assert b"Subject: lockstep" in stored
    two = MESSAGE.replace(
        b"RCPT TO:<b@example.org>\n", b"RCPT TO:<b@example.org>\nRCPT TO:<c@x.org>\n"
    )
    result = run_connect("--dialect", "smtp", "--json", served.host, port, input=two)
    records = [json.loads(line) for line in ok(result, 3).splitlines()]
    assert records[-2]["sent"] == ["RCPT TO:<c@x.org>"] and records[-2]["status"] == "error"
    assert records[-1]["sent"] == ["QUIT"] and records[-1]["reply"][0].startswith("221")
    assert len(box.keys()) == 1  # the second message was never sent


# -- a slow server: lockstep holds, nothing sleeps ------------------------------------------


@pytest.mark.usefixtures("pipe_path")
def test_slow_server_sees_no_early_line(scripted: Callable[[Script], Peer]) -> None:
    early: list[bytes] = []

    def reply(conn: Conn, text: bytes) -> None:
        time.sleep(0.3)  # several hundred ms per reply
        if select.select([conn.sock], [], [], 0)[0]:
            early.append(text)  # a line came before this reply: not lockstep
        conn.send(text)

    def script(conn: Conn) -> None:
        reply(conn, b"220-slow.test\r\n220 ready\r\n")
        while line := conn.line():
            if line.startswith(b"DATA"):
                reply(conn, b"354 go on\r\n")
                while conn.line() not in (b".\r\n", b""):
                    pass
                reply(conn, b"250 queued\r\n")
            elif line.startswith(b"QUIT"):
                reply(conn, b"221 bye\r\n")
                return
            else:
                reply(conn, b"250 ok\r\n")

    server = scripted(script)
    started = time.monotonic()
    result = run_connect("--dialect", "smtp", "127.0.0.1", str(server.port), input=MESSAGE)
    elapsed = time.monotonic() - started
    server.join()
    out = ok(result)
    assert early == []
    assert out.splitlines()[-1] == "221 bye"
    assert elapsed >= 0.3 * 7  # seven replies, each awaited


# -- exit statuses 1, 2, 4 ---------------------------------------------------------------------


@pytest.mark.usefixtures("pipe_path")
def test_reply_timeout_exits_4(scripted: Callable[[Script], Peer]) -> None:
    def script(conn: Conn) -> None:
        conn.line()
        conn.send(b"$10\r\nabc")  # a reply begun, never finished
        conn.until_eof()

    server = scripted(script)
    result = run_connect(
        "--dialect", "redis", "--reply-timeout", "0.5", "127.0.0.1", str(server.port),
        input=b"GET k\nGET j\n",
    )  # fmt: skip
    server.join()
    ok(result, 4)
    assert b"no complete reply within 0.5 s to 'GET k'" in result.stderr


@pytest.mark.usefixtures("pipe_path")
def test_connection_lost_mid_reply_exits_1(scripted: Callable[[Script], Peer]) -> None:
    def script(conn: Conn) -> None:
        conn.line()
        conn.send(b"*2\r\n$1\r\na\r\n")

    server = scripted(script)
    result = run_connect("--dialect", "redis", "127.0.0.1", str(server.port), input=b"LRANGE l\n")
    server.join()
    ok(result, 1)
    assert b"closed in the middle of the reply to 'LRANGE l'" in result.stderr


@pytest.mark.usefixtures("pipe_path")
def test_garbage_from_the_server_exits_1(scripted: Callable[[Script], Peer]) -> None:
    server = scripted(lambda conn: conn.send(b"SSH-2.0-OpenSSH_9.2\r\n"))
    result = run_connect("--dialect", "smtp", "127.0.0.1", str(server.port), input=b"HELO x\n")
    server.join()
    ok(result, 1)
    assert b"not smtp: not an SMTP reply line" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.usefixtures("pipe_path")
def test_input_ending_inside_data_exits_1(scripted: Callable[[Script], Peer]) -> None:
    def script(conn: Conn) -> None:
        conn.send(b"220 hi\r\n")
        conn.line()
        conn.send(b"354 go\r\n")
        conn.until_eof()

    server = scripted(script)
    result = run_connect("--dialect", "smtp", "127.0.0.1", str(server.port), input=b"DATA\nx\n")
    server.join()
    ok(result, 1)
    assert b"the input ended before the command's data did" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json"], "--json needs --dialect"),
        (["--keep-going", "--dialect", "line"], "--keep-going needs --dialect"),
        (["--dialect", "smtp", "--raw"], "--raw is for --dialect redis"),
        (["--dialect", "redis", "--unstuff"], "--unstuff is for --dialect pop3"),
        (["--dialect", "gopher"], "invalid choice"),
        (["--reply-timeout", "-1", "--dialect", "smtp"], ">= 0"),
        (["--expect", "/nonexistent/t.log"], "cannot read --expect"),
        (["127.0.0.1", "no-such-service-name"], "not a port number or service name"),
    ],
)
def test_dialect_bad_usage_exits_2(args: list[str], message: str) -> None:
    result = run_connect(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.decode()


def test_service_name_as_port_and_one_wording() -> None:
    try:
        smtp = socket.getservbyname("smtp", "tcp")
    except OSError:
        pytest.skip("no services database")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", smtp)) == 0:
            pytest.skip("something listens on the smtp port here")
    result = run_connect("127.0.0.1", "smtp", input=b"QUIT\n")
    ok(result, 1)
    assert (
        result.stderr == b"linechat connect: cannot connect to 127.0.0.1:25: connection refused\n"
    )


def test_refused_on_a_terminal_in_the_same_words(tmp_path: Path) -> None:
    port = free_port()
    with terminal(tmp_path, "127.0.0.1", str(port)) as child:
        child.expect(
            f"linechat connect: cannot connect to 127.0.0.1:{port}: connection refused\r\n"
        )
        assert finish(child) == 1


def test_help_documents_every_exit_status() -> None:
    result = run_connect("--help")
    text = ok(result)
    for status in ("0", "1", "2", "3", "4", "5", "130"):
        assert re.search(rf"^  {status} +\S", text, re.M), status


# -- Dovecot: POP3 and IMAP ---------------------------------------------------------------------


@pytest.fixture
def dovecot(certificate: tuple[Path, Path]) -> Iterator[tuple[int, int]]:
    binary = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    if binary is None:
        require_tool("dovecot")
    assert binary is not None
    folder = Path(tempfile.mkdtemp(prefix="linechat-dovecot-"))
    folder.chmod(0o755)  # the login processes run as another user when we are root
    root = os.geteuid() == 0
    user = pwd.getpwnam("nobody") if root else pwd.getpwuid(os.getuid())
    group = grp.getgrgid(user.pw_gid).gr_name
    mail = folder / "mail"
    mail.mkdir()
    if root:
        os.chown(mail, user.pw_uid, user.pw_gid)
    (folder / "passwd").write_text("alice:{PLAIN}secret\n")
    config = folder / "dovecot.conf"
    log = (folder / "dovecot.log").open("wb")

    def start(imap: int, pop3: int) -> subprocess.Popen[bytes]:
        config.write_text(f"""
protocols = imap pop3
base_dir = {folder}/run
state_dir = {folder}/state
log_path = /dev/stderr
info_log_path = /dev/null
default_internal_user = {user.pw_name}
default_internal_group = {group}
default_login_user = {user.pw_name}
first_valid_uid = 1
listen = 127.0.0.1
ssl = yes
ssl_cert = <{certificate[0]}
ssl_key = <{certificate[1]}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={user.pw_uid} gid={user.pw_gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        return subprocess.Popen([binary, "-F", "-c", str(config)], stdout=log, stderr=log)

    try:
        process, (imap, pop3) = start_on_free_ports(start, 2)
    except BaseException:
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield imap, pop3
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.usefixtures("pipe_path")
def test_imap_session_with_literals(dovecot: tuple[int, int]) -> None:
    imap, _ = dovecot
    body = b"Subject: hi\r\n\r\n.dot\r\n"  # 21 bytes: three input lines with their CRLFs
    script = (
        b"LOGIN alice secret\nSELECT INBOX\nAPPEND INBOX {21}\nSubject: hi\n\n.dot\n\n"
        b"FETCH 1 BODY[]\nLOGOUT\n"
    )
    out = ok(run_connect("--dialect", "imap", "127.0.0.1", str(imap), input=script))
    assert re.search(r"^a1 OK .*Logged in", out, re.M)
    assert re.search(r"^\+ ", out, re.M)
    assert re.search(r"^a3 OK .*Append completed", out, re.M)
    assert re.search(r"^\* 1 FETCH \(.*BODY\[\] \{21\}\nSubject: hi\n\n\.dot\n\)\na4 OK", out, re.M)
    assert len(body) == 21


def test_imap_after_starttls(dovecot: tuple[int, int], certificate: tuple[Path, Path]) -> None:
    imap, _ = dovecot
    result = run_connect(
        "--dialect", "imap", "--starttls", "imap", "--cafile", str(certificate[0]),
        "127.0.0.1", str(imap), input=b"LOGIN alice secret\nLOGOUT\n",
    )  # fmt: skip
    out = ok(result)
    assert out.startswith("a1 OK ")  # no greeting to wait for: STARTTLS read it
    assert re.search(r"^a2 OK .*Logout", out, re.M)


def test_imap_no_is_an_error(dovecot: tuple[int, int]) -> None:
    imap, _ = dovecot
    result = run_connect(
        "--dialect", "imap", "127.0.0.1", str(imap), input=b"LOGIN alice wrong\nSELECT INBOX\n"
    )
    out = ok(result, 3)
    assert re.search(r"^a1 NO ", out, re.M)
    assert "SELECT" not in out and re.search(r"^a2 OK .*Logout", out, re.M)


@pytest.mark.usefixtures("pipe_path")
def test_pop3_session_and_unstuff(dovecot: tuple[int, int]) -> None:
    imap, pop3 = dovecot
    append = b"LOGIN alice secret\nAPPEND INBOX {21}\nSubject: hi\n\n.dot\n\nLOGOUT\n"
    ok(run_connect("--dialect", "imap", "127.0.0.1", str(imap), input=append))
    script = b"USER alice\nPASS secret\nSTAT\nLIST\nRETR 1\nQUIT\n"
    out = ok(run_connect("--dialect", "pop3", "127.0.0.1", str(pop3), input=script))
    assert "+OK 1 " in out and "\n1 " in out
    assert "\n..dot\n.\n+OK Logging out" in out
    unstuffed = ok(
        run_connect("--dialect", "pop3", "--unstuff", "127.0.0.1", str(pop3), input=script)
    )
    assert "\n.dot\n+OK Logging out" in unstuffed
    result = run_connect("--dialect", "pop3", "127.0.0.1", str(pop3), input=b"USER alice\nPASS x\n")
    assert "-ERR" in ok(result, 3)


# -- IRC (ngircd) ---------------------------------------------------------------------------------


@pytest.fixture
def ngircd(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("ngircd") or (
        "/usr/sbin/ngircd" if Path("/usr/sbin/ngircd").exists() else None
    )
    if binary is None:
        require_tool("ngircd")
    assert binary is not None
    config = tmp_path / "ngircd.conf"
    motd = tmp_path / "motd"
    motd.write_text("welcome to the test\n")

    def start(port: int) -> subprocess.Popen[bytes]:
        config.write_text(f"""
[Global]
Name = irc.test
Info = linechat test
Listen = 127.0.0.1
Ports = {port}
MotdFile = {motd}
PidFile = {tmp_path}/ngircd.pid
[Limits]
PingTimeout = 120
[Options]
DNS = no
Ident = no
PAM = no
""")
        return subprocess.Popen(
            [binary, "-n", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    process, port = start_on_free_port(start)
    try:
        yield port
    finally:
        stop_process(process)


@pytest.mark.usefixtures("pipe_path")
def test_irc_registration_join_and_errors(ngircd: int) -> None:
    script = (
        b"NICK tester\nUSER tester 0 * :Test\nJOIN #room\nPRIVMSG #room :hello\n"
        b"WHOIS tester\nQUIT :done\n"
    )
    result = run_connect(
        "--dialect", "irc", "--wait", "0.5", "--json", "127.0.0.1", str(ngircd), input=script
    )
    records = [json.loads(line) for line in ok(result).splitlines()]
    sent = [r["sent"] for r in records]
    assert sent[:2] == [["NICK tester"], ["USER tester 0 * :Test"]]
    welcome = records[1]["reply"]
    assert " 001 tester " in welcome[0] and re.search(r" (376|422) ", welcome[-1])
    assert re.search(r" 366 ", records[2]["reply"][-1])
    assert records[3] == {**records[3], "sent": ["PRIVMSG #room :hello"], "reply": []}
    assert re.search(r" 318 ", records[4]["reply"][-1])
    assert records[5]["reply"][-1].startswith("ERROR")
    assert {r["status"] for r in records} == {"ok"}
    result = run_connect(
        "--dialect", "irc", "--wait", "0.5", "127.0.0.1", str(ngircd),
        input=b"NICK t2\nUSER t2 0 * :T\nJOIN nochannel\nJOIN #never\n",
    )  # fmt: skip
    out = ok(result, 3)
    assert " 403 " in out and "#never" not in out


# -- on a terminal ---------------------------------------------------------------------------------


def test_tty_dialect_completes_colours_errors_and_shows_state(
    redis_port: int, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    args = ("--dialect", "redis", "--no-history", "127.0.0.1", str(redis_port))
    # The bar under the prompt needs the terminal's answer to where the cursor is.
    with terminal(home, *args, PROMPT_TOOLKIT_NO_CPR="0") as child:

        def cursor_answered() -> None:
            child.expect(re.escape(b"\x1b[6n"))
            child.send("\x1b[1;1R")

        child.expect("connected to")
        cursor_answered()
        child.expect("redis: ready")
        child.send("PIN\t")  # completed to PING (drawn as "PIN", then "G")
        child.expect(rb"PIN.*G")
        child.send("\r")
        cursor_answered()  # the next prompt asks at once
        child.expect("PONG")  # "PIN" alone would be an unknown command
        child.sendline("NOSUCHCOMMAND")
        cursor_answered()
        child.expect(rb"\x1b\[[0-9;]*31[0-9;]*m\(error\) ERR unknown command")
        child.sendline("QUIT")
        assert finish(child) == 0


def test_tty_shows_a_reply_still_awaited(
    scripted: Callable[[Script], Peer], tmp_path: Path
) -> None:
    answer = threading.Event()

    def script(conn: Conn) -> None:
        assert conn.line() == b"PING\r\n"
        assert answer.wait(15)
        conn.send(b"+PONG\r\n")
        conn.until_eof()

    server = scripted(script)
    args = ("--dialect", "redis", "--no-history", "127.0.0.1", str(server.port))
    with terminal(tmp_path, *args, PROMPT_TOOLKIT_NO_CPR="0") as child:
        child.expect("connected to")
        child.expect(re.escape(b"\x1b[6n"))
        child.send("\x1b[1;1R")
        child.expect("redis: ready")
        child.sendline("PING")
        child.expect(re.escape(b"\x1b[6n"))
        child.send("\x1b[1;1R")
        child.expect("redis: waiting for the reply to PING")
        answer.set()
        child.expect("PONG")
        child.sendcontrol("c")
        assert finish(child) == 130
    server.join()


@pytest.mark.usefixtures("pipe_path")
def test_input_is_read_ahead_a_bounded_amount(scripted: Callable[[Script], Peer]) -> None:
    def script(conn: Conn) -> None:
        conn.line()  # the first command, never answered
        conn.until_eof()

    server = scripted(script)
    process = subprocess.Popen(
        [sys.executable, "-m", "linechat", "connect", *PATH_FLAGS, "--dialect", "redis",
         "--reply-timeout", "3", "127.0.0.1", str(server.port)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stderr is not None
    line = b"SET key " + b"v" * 90 + b"\n"
    written = 0
    try:
        os.set_blocking(process.stdin.fileno(), False)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and written < 20_000_000:
            try:
                written += os.write(process.stdin.fileno(), line * 100)
            except BlockingIOError:
                time.sleep(0.05)
        stderr = process.stderr.read()
        process.wait(15)
    finally:
        stop_process(process)
    server.join()
    assert process.returncode == 4, stderr
    assert written < 4_000_000  # 4,096 lines, a 256 KiB read and the pipe's buffer


@pytest.mark.usefixtures("pipe_path")
def test_irc_ping_answered_by_itself_and_noted(
    scripted: Callable[[Script], Peer], tmp_path: Path
) -> None:
    got: list[bytes] = []

    def script(conn: Conn) -> None:
        got.extend((conn.line(), conn.line()))  # NICK, USER
        conn.send(b"PING :tok123\r\n")
        got.append(conn.line())  # the PONG, before the welcome
        conn.send(b":s 001 me :Welcome\r\n:s 422 me :MOTD File is missing\r\n")
        got.append(conn.line())  # QUIT
        conn.send(b"ERROR :Closing link\r\n")

    server = scripted(script)
    log = tmp_path / "irc.log"
    result = run_connect(
        "--dialect", "irc", "--log", str(log), "127.0.0.1", str(server.port),
        input=b"NICK me\nUSER me 0 * :Me\nQUIT\n",
    )  # fmt: skip
    server.join()
    assert ok(result).splitlines() == [
        "PING :tok123", ":s 001 me :Welcome", ":s 422 me :MOTD File is missing",
        "ERROR :Closing link",
    ]  # fmt: skip
    assert got == [b"NICK me\r\n", b"USER me 0 * :Me\r\n", b"PONG :tok123\r\n", b"QUIT\r\n"]
    text = log.read_text()
    assert "* sent by itself: PONG :tok123" in text and "> PONG" not in text
