"""`linechat connect` against real servers: linechat's, the seed's, Redis, memcached, openssl.

TTY mode is driven in a real pty (pexpect); pipe mode through pipes and files.
Small scripted servers (a thread, a socket, a few lines) play the odd peers:
one that speaks first, one that resets, one that sends garbage, STARTTLS.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pexpect
import pytest

from .conftest import STARTED, Served, linechat_command, require_tool
from .helpers import free_port, start_on_free_port, stop_process

SEED_INPUT = b"Hello!\nThis is a line.\nThis is another.\n.\n"
SEED_OUTPUT = b"You sent: Hello!\nYou sent: This is a line.\nYou sent: This is another.\n"
SEED_SERVER = Path(__file__).with_name("seed_server.py")


#: Flags put before every `linechat connect` of the pipe-mode tests: set by
#: the ``pipe_path`` fixture, so that they run on both implementations.
PATH_FLAGS: list[str] = []


@pytest.fixture(params=["plain", "asyncio"])
def pipe_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Pipe mode without asyncio (the default on a plain connection), then with it.

    ``--loop asyncio`` takes the asyncio path (any flag beyond the plain ones
    does); both must behave the same.
    """
    PATH_FLAGS[:] = [] if request.param == "plain" else ["--loop", "asyncio"]
    yield request.param
    PATH_FLAGS.clear()


def run_connect(
    *args: str, input: bytes = b"", timeout: float = 30, stdin: IO[bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `linechat connect ARGS` with ``input`` (a pipe) or ``stdin`` (a file) on stdin."""
    command = linechat_command("connect", *PATH_FLAGS, *args)
    if stdin is not None:
        return subprocess.run(command, stdin=stdin, capture_output=True, timeout=timeout)
    return subprocess.run(command, input=input, capture_output=True, timeout=timeout)


def start_connect(
    host: str, port: int, stdin: IO[bytes] | int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """`linechat connect HOST PORT` started, its stdout and stderr pipes (stop it by PID)."""
    return subprocess.Popen(
        linechat_command("connect", *PATH_FLAGS, host, str(port)),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# -- scripted one-connection servers -------------------------------------------


class Conn:
    """The server's side of one connection, line by line (unbuffered: TLS can follow)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket = sock
        sock.settimeout(10)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        data = b""
        while not data.endswith(b"\n") and len(data) < 65536:
            byte = self.sock.recv(1)
            if not byte:
                break
            data += byte
        return data

    def until_eof(self) -> bytes:
        data = b""
        while len(data) < 1 << 20:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data


class Peer:
    """A one-connection server on loopback running ``script`` in a thread."""

    def __init__(self, script: Callable[[Conn], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(20)
        self.port: int = self.listener.getsockname()[1]
        self.script = script
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
            with sock:
                self.script(Conn(sock))
        except BaseException as exc:
            self.error = exc
        finally:
            self.listener.close()

    def join(self) -> None:
        self.thread.join(20)
        assert not self.thread.is_alive(), "the scripted server did not finish"
        if self.error is not None:
            raise self.error


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[Conn], None]], Peer]]:
    peers: list[Peer] = []

    def start(script: Callable[[Conn], None]) -> Peer:
        peers.append(Peer(script))
        return peers[-1]

    yield start
    for item in peers:
        item.listener.close()
        item.thread.join(20)


# -- pipe mode: the seed's transcripts -------------------------------------------


@pytest.mark.usefixtures("pipe_path")
def test_seed_transcript_against_linechat_serve(serve: Callable[..., Served]) -> None:
    served = serve()
    result = run_connect(served.host, str(served.port), input=SEED_INPUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == SEED_OUTPUT
    assert result.stderr == b""


@pytest.mark.usefixtures("pipe_path")
def test_seed_transcript_against_the_seed_server(tmp_path: Path) -> None:
    log = tmp_path / "seed.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(SEED_SERVER), "--port", "0"], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 15
        while not (match := STARTED.search(log.read_bytes())) and time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()
            time.sleep(0.05)
        assert match, log.read_text()
        result = run_connect("127.0.0.1", match.group(2).decode(), input=SEED_INPUT)
    finally:
        stop_process(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == SEED_OUTPUT


@pytest.mark.usefixtures("pipe_path")
def test_stdin_from_a_file_many_lines(serve: Callable[..., Served], tmp_path: Path) -> None:
    served = serve()
    lines = [f"line {i}".encode() for i in range(100_000)]
    source = tmp_path / "in.txt"
    source.write_bytes(b"".join(line + b"\n" for line in lines) + b".\n")
    with source.open("rb") as stdin:
        result = run_connect(served.host, str(served.port), stdin=stdin, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"".join(b"You sent: " + line + b"\n" for line in lines)


@pytest.mark.usefixtures("pipe_path")
def test_stdin_from_a_pipe_many_lines(serve: Callable[..., Served]) -> None:
    served = serve()
    lines = [f"{i} ".encode() * 20 for i in range(20_000)]
    data = b"".join(line + b"\n" for line in lines)
    result = run_connect(served.host, str(served.port), input=data, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"".join(b"You sent: " + line + b"\n" for line in lines)


@pytest.mark.usefixtures("pipe_path")
def test_unix_socket(serve: Callable[..., Served], tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    serve("--unix", path, host=None)
    result = run_connect("--unix", path, input=b"over unix\n.\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"You sent: over unix\n"


@pytest.mark.usefixtures("pipe_path")
def test_line_ends_crlf_by_default_lf_on_request(
    peer: Callable[[Callable[[Conn], None]], Peer],
) -> None:
    got: list[bytes] = []
    for flags, expected in (([], b"a\r\nb\r\nc\r\n"), (["--lf"], b"a\nb\nc\n")):
        got.clear()
        server = peer(lambda conn: got.append(conn.until_eof()))
        result = run_connect("127.0.0.1", str(server.port), *flags, input=b"a\nb\r\nc")
        server.join()
        assert result.returncode == 0, result.stderr
        assert got == [expected]


@pytest.mark.usefixtures("pipe_path")
def test_server_speaks_first_several_lines(
    peer: Callable[[Callable[[Conn], None]], Peer],
) -> None:
    def script(conn: Conn) -> None:
        conn.send(b"+OK hello\r\n+OK two\r\n+OK three\r\n")
        assert conn.line() == b"QUIT\r\n"
        assert conn.until_eof() == b""
        conn.send(b"+OK bye\r\n")

    server = peer(script)
    result = run_connect("127.0.0.1", str(server.port), input=b"QUIT\n")
    server.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"+OK hello\n+OK two\n+OK three\n+OK bye\n"


@pytest.mark.usefixtures("pipe_path")
def test_wait_bounds_a_server_that_never_closes(
    peer: Callable[[Callable[[Conn], None]], Peer],
) -> None:
    done = threading.Event()

    def script(conn: Conn) -> None:
        conn.send(b"hi\r\n")
        conn.until_eof()
        done.wait(15)  # never closes on its own

    server = peer(script)
    started = time.monotonic()
    # 1 s: the greeting is sent at once, but a loaded machine can hold it back a while.
    result = run_connect("127.0.0.1", str(server.port), "--wait", "1")
    elapsed = time.monotonic() - started
    done.set()
    server.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi\n"
    assert b"no answer for 1 s" in result.stderr
    assert elapsed < 10


def test_transcript_log(serve: Callable[..., Served], tmp_path: Path) -> None:
    served = serve()
    log = tmp_path / "session.log"
    result = run_connect(served.host, str(served.port), "--log", str(log), input=SEED_INPUT)
    assert result.returncode == 0, result.stderr
    text = log.read_text()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d"
    for pattern in (
        rf"{stamp} \* connected to 127\.0\.0\.1:\d+",
        rf"{stamp} > Hello!",
        rf"{stamp} < You sent: Hello!",
        rf"{stamp} > \.",
        rf"{stamp} \* end: the server closed the connection",
    ):
        assert re.search(pattern, text), (pattern, text)


# -- pipe mode without asyncio -------------------------------------------------------

#: What `linechat connect` in plain pipe mode must not import: the server's and
#: services' packages, and what makes start-up slow (asyncio alone is ~25 ms).
HEAVY = (
    "asyncio",
    "ssl",
    "typing",
    "uvloop",
    "dataclasses",
    "linechat.protocol",
    "linechat.service",
    "linechat.server",
    "linechat.services",
    "linechat.client.session",
    "linechat.client.pipe",
)


#: Runs the command as the `linechat` entry point does, then lists sys.modules
#: (-X importtime misses what importlib.import_module loads).
#: Only what the command itself imported is listed: what the interpreter's
#: start-up loaded (site, .pth files, a coverage hook) is left out.
LIST_MODULES = (
    "import sys\n"
    "before = set(sys.modules)\n"
    "from linechat.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "new = sorted(set(sys.modules) - before)\n"
    "sys.stderr.write('\\nMODULES ' + ' '.join(new) + '\\n')\n"
    "sys.exit(code)\n"
)


def imported_modules(*args: str, input: bytes) -> set[str]:
    """The modules `linechat connect ARGS` has imported by its end."""
    command = [sys.executable, "-c", LIST_MODULES, "connect", *args]
    result = subprocess.run(command, input=input, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr[-2000:]
    listing = result.stderr.rsplit(b"\nMODULES ", 1)[1].decode()
    names = set(listing.split())
    assert "linechat.cli" in names  # the listing works
    return names


def test_plain_pipe_mode_imports_no_asyncio_server_or_services(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    address = (served.host, str(served.port))
    names = imported_modules(*address, input=SEED_INPUT)
    assert "linechat.client.plain" in names
    heavy = sorted(name for name in names if name.split(".")[0] in HEAVY or name in HEAVY)
    heavy += sorted(n for n in names for h in HEAVY if "." in h and n.startswith(h + "."))
    assert heavy == [], heavy
    # The same check sees them on the asyncio path (it can fail).
    names = imported_modules("--loop", "asyncio", *address, input=SEED_INPUT)
    assert {"asyncio", "linechat.client.session", "linechat.client.pipe"} <= names


def test_plain_lockstep_imports_no_asyncio(peer: Callable[[Callable[[Conn], None]], Peer]) -> None:
    def script(conn: Conn) -> None:
        assert conn.line() == b"PING\r\n"
        conn.send(b"+PONG\r\n")
        conn.until_eof()

    server = peer(script)
    names = imported_modules("--dialect", "redis", "127.0.0.1", str(server.port), input=b"PING\n")
    server.join()
    assert {"linechat.client.plain", "linechat.client.lockstep", "linechat.dialects.resp"} <= names
    heavy = sorted(n for n in names for h in HEAVY if n == h or n.startswith(h + "."))
    assert heavy == [], heavy


@pytest.mark.usefixtures("pipe_path")
def test_stdout_closed_early(serve: Callable[..., Served], tmp_path: Path) -> None:
    served = serve()
    source = tmp_path / "in.txt"
    source.write_bytes(b"".join(b"line %d\n" % i for i in range(300_000)))
    with source.open("rb") as stdin:
        process = start_connect(served.host, served.port, stdin)
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == b"You sent: line 0\n"
        process.stdout.close()  # the reader goes away: EPIPE for the client
        assert process.wait(30) == 0
        assert b"Traceback" not in process.stderr.read()
    finally:
        stop_process(process)


@pytest.mark.usefixtures("pipe_path")
def test_greeting_shown_while_stdin_is_silent(
    peer: Callable[[Callable[[Conn], None]], Peer],
) -> None:
    """Waiting for input never holds back what the server says."""

    def script(conn: Conn) -> None:
        conn.send(b"220 hello\r\n")
        assert conn.line() == b"QUIT\r\n"
        conn.send(b"221 bye\r\n")

    server = peer(script)
    process = start_connect("127.0.0.1", server.port)
    try:
        assert process.stdin is not None and process.stdout is not None
        assert process.stdout.readline() == b"220 hello\n"  # before any input
        process.stdin.write(b"QUIT\n")
        process.stdin.close()
        assert process.stdout.read() == b"221 bye\n"
        assert process.wait(20) == 0
    finally:
        stop_process(process)
    server.join()


# -- pipe mode: failures -----------------------------------------------------------


def assert_one_clear_line(result: subprocess.CompletedProcess[bytes], *words: str) -> None:
    stderr = result.stderr.decode()
    assert b"Traceback" not in result.stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for word in words:
        assert word in stderr, stderr


@pytest.mark.usefixtures("pipe_path")
def test_connection_refused() -> None:
    result = run_connect("127.0.0.1", str(free_port()), input=b"hello\n")
    assert result.returncode == 1
    assert_one_clear_line(result, "cannot connect to 127.0.0.1:", "connection refused")


@pytest.mark.usefixtures("pipe_path")
def test_server_reset_mid_exchange(peer: Callable[[Callable[[Conn], None]], Peer]) -> None:
    def script(conn: Conn) -> None:
        assert conn.line() == b"hello\r\n"
        conn.send(b"answer\r\n")
        time.sleep(0.3)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = peer(script)
    process = start_connect("127.0.0.1", server.port)
    try:
        assert process.stdin is not None
        process.stdin.write(b"hello\n")
        process.stdin.flush()  # and stdin stays open: the exchange is not over
        stdout, stderr = process.communicate(timeout=20)
    finally:
        stop_process(process)
    server.join()
    assert process.returncode == 1
    assert stdout == b"answer\n"
    result = subprocess.CompletedProcess(process.args, 1, stdout, stderr)
    assert_one_clear_line(result, "connection to 127.0.0.1:", "reset")


@pytest.mark.usefixtures("pipe_path")
def test_binary_garbage_from_the_server(peer: Callable[[Callable[[Conn], None]], Peer]) -> None:
    garbage = bytes(range(256)) * 3 + b"\r\n\x1b[2J\xff\xfe\xc3\x28\r\nno line end"

    def script(conn: Conn) -> None:
        conn.send(garbage)

    server = peer(script)
    result = run_connect("127.0.0.1", str(server.port))
    server.join()
    assert result.returncode == 0, result.stderr
    # Not a terminal: lines come out as sent, each ended by LF.
    assert result.stdout == garbage.replace(b"\r\n", b"\n") + b"\n"


@pytest.mark.usefixtures("pipe_path")
def test_line_ends_split_across_packets(peer: Callable[[Callable[[Conn], None]], Peer]) -> None:
    def script(conn: Conn) -> None:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in (b"ab\r", b"\ncd\r\n", b"bare lf\n", b"lone\rcr\r\n", b"ef"):
            conn.send(part)
            time.sleep(0.05)

    server = peer(script)
    result = run_connect("127.0.0.1", str(server.port))
    server.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ab\ncd\nbare lf\nlone\rcr\nef\n"


def test_pipe_mode_escapes_when_stdout_is_a_terminal(
    peer: Callable[[Callable[[Conn], None]], Peer],
) -> None:
    def script(conn: Conn) -> None:
        conn.send(b"\x1b[2Jcleared?\x07\r\n")
        conn.until_eof()

    server = peer(script)
    command = " ".join(linechat_command("connect", "127.0.0.1", str(server.port)))
    child = pexpect.spawn("sh", ["-c", f"printf 'hi\\n' | {command}"], timeout=10)
    try:
        child.expect(pexpect.EOF)
        output = child.before
    finally:
        child.close(force=True)
    server.join()
    assert b"\\e[2Jcleared?\\x07" in output
    assert b"\x1b[2J" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--unix", "/tmp/x.sock", "example.org"], "--unix"),
        (["--insecure"], "needs --tls"),
        (["--key", "k.pem", "--tls"], "--key needs --cert"),
        (["--tls", "--starttls", "smtp"], "exclude each other"),
        (["--tls", "--cafile", "/nonexistent/ca.pem"], "cannot load TLS files"),
        (["localhost", "70000"], "port must be 0-65535"),
        (["--starttls", "ftp"], "invalid choice"),
        (["--wait", "-1"], ">= 0"),
    ],
)
def test_bad_usage(args: list[str], message: str) -> None:
    result = run_connect(*args)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert b"Traceback" not in result.stderr


# -- real servers no one here wrote ------------------------------------------------


def test_redis_inline_commands(redis_port: int) -> None:
    result = run_connect(
        "127.0.0.1", str(redis_port), input=b"PING\nSET greeting hello\nGET greeting\nQUIT\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"+PONG\n+OK\n$5\nhello\n+OK\n"


def test_memcached_counted_payload(memcached_port: int) -> None:
    result = run_connect(
        "127.0.0.1", str(memcached_port), input=b"version\nset k 0 0 5\nhello\nget k\nquit\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split(b"\n")
    assert lines[0].startswith(b"VERSION ")
    assert lines[1:] == [b"STORED", b"VALUE k 0 5", b"hello", b"END", b""]


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture
def s_server(certificate: tuple[Path, Path]) -> Iterator[Callable[..., int]]:
    """``openssl s_server -rev`` (answers each line reversed) for one connection.

    A ``CLOSE`` line makes it close the connection: the client's end comes from
    the server, not from ``--wait`` (a second of silence, which a loaded machine
    can give before the last answer); ``--wait 10`` only bounds a server that hangs.
    """
    openssl = require_tool("openssl")
    cert, key = certificate
    processes: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> int:
        def spawn(port: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [
                    *(openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-rev", "-naccept", "1"),
                    *("-cert", str(cert), "-key", str(key), *extra),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        # Waits without connecting: s_server takes one connection only.
        process, port = start_on_free_port(spawn)
        processes.append(process)
        return port

    yield start
    for process in processes:
        stop_process(process)


def test_tls_against_openssl_s_server(
    s_server: Callable[..., int], certificate: tuple[Path, Path]
) -> None:
    port = s_server()
    cert, _ = certificate
    result = run_connect(
        "127.0.0.1", str(port), "--tls", "--cafile", str(cert), "--wait", "10",
        input=b"hello\nTLS works\nCLOSE\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"olleh\nskrow SLT\n"


def test_tls_client_certificate_and_sni(
    s_server: Callable[..., int], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    port = s_server("-Verify", "1", "-CAfile", str(cert))
    result = run_connect(
        "127.0.0.1", str(port), "--tls", "--cafile", str(cert), "--sni", "localhost",
        "--cert", str(cert), "--key", str(key), "--wait", "10", input=b"abc\nCLOSE\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"cba\n"


def test_tls_unverified_certificate_fails(s_server: Callable[..., int]) -> None:
    port = s_server()
    result = run_connect("127.0.0.1", str(port), "--tls", input=b"hello\n")
    assert result.returncode == 1
    assert_one_clear_line(result, "cannot connect", "certificate verif")


def test_tls_insecure(s_server: Callable[..., int]) -> None:
    port = s_server()
    result = run_connect(
        "127.0.0.1", str(port), "--tls", "--insecure", "--wait", "10", input=b"hello\nCLOSE\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"olleh\n"


def test_tls_to_a_plaintext_server_fails(serve: Callable[..., Served]) -> None:
    served = serve()
    result = run_connect(served.host, str(served.port), "--tls", "--insecure", input=b"x\n")
    assert result.returncode == 1
    assert_one_clear_line(result, "cannot connect")


STARTTLS_DIALOGUES = {
    # protocol: (greeting, [(expected command prefix, answer)])
    "smtp": (
        b"220-test.example ESMTP\r\n220 ready\r\n",
        [(b"EHLO ", b"250-test.example\r\n250 STARTTLS\r\n"), (b"STARTTLS", b"220 go ahead\r\n")],
    ),
    "pop3": (b"+OK POP3 ready\r\n", [(b"STLS", b"+OK begin TLS\r\n")]),
    "imap": (
        b"* OK IMAP4rev1 ready\r\n",
        [(b"a1 STARTTLS", b"* an untagged line\r\na1 OK begin TLS\r\n")],
    ),
    "plain": (b"", [(b"STARTTLS", b"OK\r\n")]),
}


def starttls_script(
    kind: str, certificate: tuple[Path, Path], inject: bytes = b""
) -> Callable[[Conn], None]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    greeting, steps = STARTTLS_DIALOGUES[kind]

    def script(conn: Conn) -> None:
        conn.send(greeting)
        for index, (expected, answer) in enumerate(steps, 1):
            assert conn.line().startswith(expected)
            # With ``inject``: plaintext in the same packet as the go-ahead.
            conn.send(answer + inject if index == len(steps) else answer)
        if inject:
            conn.until_eof()
            return
        tls = context.wrap_socket(conn.sock, server_side=True)
        over = Conn(tls)
        line = over.line()
        over.send(b"over TLS: " + line)

    return script


@pytest.mark.parametrize("kind", sorted(STARTTLS_DIALOGUES))
def test_starttls(
    kind: str, peer: Callable[[Callable[[Conn], None]], Peer], certificate: tuple[Path, Path]
) -> None:
    server = peer(starttls_script(kind, certificate))
    result = run_connect(
        "127.0.0.1", str(server.port), "--starttls", kind, "--cafile", str(certificate[0]),
        "--wait", "10", input=b"secret\n",
    )  # fmt: skip
    server.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"over TLS: secret\n"


def test_starttls_refuses_plaintext_injection(
    peer: Callable[[Callable[[Conn], None]], Peer], certificate: tuple[Path, Path]
) -> None:
    server = peer(starttls_script("smtp", certificate, inject=b"250 injected\r\n"))
    result = run_connect(
        "127.0.0.1", str(server.port), "--starttls", "smtp", "--cafile", str(certificate[0]),
        input=b"secret\n",
    )  # fmt: skip
    server.join()
    assert result.returncode == 1
    assert_one_clear_line(result, "before the TLS handshake")
    assert result.stdout == b""


def test_starttls_refused_by_the_server(
    peer: Callable[[Callable[[Conn], None]], Peer], certificate: tuple[Path, Path]
) -> None:
    def script(conn: Conn) -> None:
        conn.send(b"+OK POP3 ready\r\n")
        conn.line()
        conn.send(b"-ERR no TLS here\r\n")
        conn.until_eof()

    server = peer(script)
    result = run_connect(
        "127.0.0.1", str(server.port), "--starttls", "pop3", "--cafile", str(certificate[0])
    )
    server.join()
    assert result.returncode == 1
    assert_one_clear_line(result, "-ERR no TLS here")


# -- TTY mode, in a real pty -----------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@contextlib.contextmanager
def terminal(home: Path, *args: str, **env: str) -> Iterator[pexpect.spawn]:
    """``linechat connect *args`` in a pty, killed when the block ends."""
    environment = {
        **os.environ,
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",
        **env,
    }
    if "NO_COLOR" not in env:
        environment.pop("NO_COLOR", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "linechat", "connect", *args],
        env=environment,
        timeout=10,
        dimensions=(40, 200),
    )
    try:
        yield child
    finally:
        child.close(force=True)


def prompt_ready(child: pexpect.spawn) -> None:
    """Wait for the editor's first prompt: the terminal is raw from then on.

    Keys sent before it meet the kernel's line discipline (cooked mode): its
    echo looks like the editor's, and Ctrl-C there is a SIGINT, not a key.
    """
    child.expect("connected to")
    child.expect("> ")


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    status: int = child.exitstatus
    return status


def test_tty_seed_session(serve: Callable[..., Served], home: Path) -> None:
    served = serve()
    with terminal(home, served.host, str(served.port)) as child:
        child.expect("connected to 127.0.0.1:")
        for line in ("Hello!", "This is a line.", "This is another."):
            child.sendline(line)
            child.expect(re.escape(f"You sent: {line}"))
        child.sendline(".")
        child.expect("connection closed by the server")
        assert finish(child) == 0


def test_tty_server_line_arrives_while_typing(
    peer: Callable[[Callable[[Conn], None]], Peer], home: Path
) -> None:
    typed = threading.Event()
    got: list[bytes] = []

    def script(conn: Conn) -> None:
        assert typed.wait(15)
        time.sleep(0.3)
        conn.send(b"* a line from the server\r\n")
        got.append(conn.line())
        conn.send(b"done\r\n")

    server = peer(script)
    with terminal(home, "127.0.0.1", str(server.port), "--no-history") as child:
        prompt_ready(child)
        child.send("half typed")
        child.expect("half typed")
        typed.set()
        child.expect(re.escape("* a line from the server"))
        child.expect("half typed")  # the prompt is drawn again below, text intact
        child.send(" and finished\r")
        child.expect("done")
        child.expect("connection closed by the server")
        assert finish(child) == 0
    server.join()
    assert got == [b"half typed and finished\r\n"]


def test_tty_history_is_kept_across_runs(serve: Callable[..., Served], home: Path) -> None:
    served = serve()
    with terminal(home, served.host, str(served.port)) as child:
        prompt_ready(child)
        child.sendline("remember me")
        child.expect("You sent: remember me")
        child.sendline(".")
        assert finish(child) == 0
    assert "remember me" in (home / "state" / "linechat" / "history").read_text()

    with terminal(home, served.host, str(served.port)) as child:
        prompt_ready(child)
        child.send("\x1b[A")  # up arrow: the last line of the last run (".")
        child.send("\x1b[A")  # and the one before
        child.expect("remember me")
        child.send("\r")
        child.expect("You sent: remember me")
        child.send("\x03")
        finish(child)


def test_tty_no_history(serve: Callable[..., Served], home: Path) -> None:
    served = serve()
    with terminal(home, served.host, str(served.port), "--no-history") as child:
        child.expect("connected to")
        child.sendline("forget me")
        child.expect("You sent: forget me")
        child.sendline(".")
        assert finish(child) == 0
    assert not (home / "state" / "linechat" / "history").exists()


def test_tty_ctrl_d_closes_our_side_and_waits(
    peer: Callable[[Callable[[Conn], None]], Peer], home: Path
) -> None:
    def script(conn: Conn) -> None:
        assert conn.line() == b"one\r\n"
        conn.send(b"got one\r\n")
        assert conn.until_eof() == b""
        time.sleep(0.5)
        conn.send(b"goodbye after your end\r\n")

    server = peer(script)
    with terminal(home, "127.0.0.1", str(server.port)) as child:
        child.expect("connected to")
        child.sendline("one")
        child.expect("got one")
        child.send("\x04")
        child.expect("goodbye after your end")
        assert finish(child) == 0
    server.join()


def test_tty_ctrl_c_quits_at_once(serve: Callable[..., Served], home: Path) -> None:
    served = serve()
    with terminal(home, served.host, str(served.port)) as child:
        prompt_ready(child)
        child.send("typing something")
        child.expect("typing something")
        started = time.monotonic()
        child.send("\x03")
        assert finish(child) == 130
        assert time.monotonic() - started < 5


def test_tty_received_garbage_is_escaped(
    peer: Callable[[Callable[[Conn], None]], Peer], home: Path
) -> None:
    def script(conn: Conn) -> None:
        conn.send(b"\x1b]0;pwned\x07title \x1b[2J clear \xff\xfe bad\tend\r\n")
        conn.until_eof()

    server = peer(script)
    with terminal(home, "127.0.0.1", str(server.port), NO_COLOR="1") as child:
        child.expect("connected to")
        # Each escape is a run of its own (in reverse video), between plain runs.
        for part in (
            r"\e",
            "]0;pwned",
            r"\x07",
            "title ",
            r"\e",
            "[2J clear ",
            r"\xff\xfe",
            " bad",
        ):
            child.expect(re.escape(part))
        screen = child.before + child.after
        assert b"\x1b]0;pwned" not in screen and b"\x1b[2J" not in screen
        child.send("\x04")
        assert finish(child) == 0
    server.join()


def test_tty_colour_and_no_color(serve: Callable[..., Served], home: Path) -> None:
    served = serve()
    outputs = {}
    for name, env in (("colour", {}), ("plain", {"NO_COLOR": "1"})):
        with terminal(home, served.host, str(served.port), "--no-history", **env) as child:
            child.expect("connected to")
            child.sendline("hi")
            child.expect("You sent: hi")
            child.sendline(".")
            child.expect(pexpect.EOF)
            outputs[name] = child.before
    green = re.compile(rb"\x1b\[[0-9;]*3[2]m")  # ANSI green: what the user sent
    assert green.search(outputs["colour"])
    assert not green.search(outputs["plain"])


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),  # uvloop
        OSError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)"),  # asyncio's own loop
    ],
)
def test_a_refused_connection_reads_the_same_on_every_loop(error: OSError) -> None:
    from linechat.client.session import describe_error

    assert describe_error(error) == "connection refused"
