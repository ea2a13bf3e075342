"""`linechat connect`'s fast path: simple arguments read without argparse.

Whatever the fast path reads, argparse must read the same way (checked on
generated argument lists against the real parser); whatever it declines goes
to argparse. Run as processes, the fast path and the argparse route to the
same pipe mode (``--loop auto`` is the default, spelled out so that the fast
path declines it) must print and say the same.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linechat.cli import build_parser
from linechat.cli.connect import UsageError, _check_usage
from linechat.cli.fastpath import parse

from .conftest import Served, linechat_command
from .helpers import free_port
from .test_connect import (
    SEED_INPUT,
    SEED_OUTPUT,
    Conn,
    Peer,
    imported_modules,
    peer,  # noqa: F401  (the fixture behind ``scripted``)
)

Script = Callable[[Conn], None]


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Callable[[Script], Peer]:
    """test_connect's ``peer`` fixture (one-connection scripted servers, closed after)."""
    start: Callable[[Script], Peer] = request.getfixturevalue("peer")
    return start


#: Words that make up the generated argument lists: the options the fast
#: path reads, in both spellings, values it must take or leave to argparse,
#: and words it must leave (other options, abbreviations, "--", help).
WORDS = [
    "127.0.0.1", "example.org", "::1", "", "25", "0", "65535", "65536", "smtp", "²", "٣",
    "--lf", "--lf=1", "--wait", "--wait=0.5", "--wait=", "5", "0.25", "1e3", " 7 ", "1_0",
    "inf", "nan", "-1", "-0", "x", "--connect-timeout", "--connect-timeout=0", "--unix",
    "/tmp/s.sock", "--unix=/tmp/t.sock", "--wai", "--", "-", "-h", "--help", "--tls",
    "--loop", "auto", "--dialect", "redis", "-v",
]  # fmt: skip

#: Calls a script makes, which the fast path must take (else the test above proves little).
TAKEN = [
    ["127.0.0.1", "25"],
    ["example.org"],
    [],
    ["--lf", "127.0.0.1", "8007"],
    ["127.0.0.1", "8007", "--lf", "--wait", "0.5"],
    ["--wait=0", "--connect-timeout", "3", "::1", "25"],
    ["--unix", "/tmp/s.sock"],
]


def argparse_reading(argv: list[str]) -> tuple[object, ...] | None:
    """What the command reads from ``argv`` through argparse (None: a usage error).

    The six things the fast path reads, or None if anything else differs
    from its default as well.
    """
    parser = build_parser(("connect",))
    try:
        args = parser.parse_args(["connect", *argv])
        _check_usage(args)
    except (SystemExit, UsageError):
        return None
    defaults = vars(parser.parse_args(["connect"]))
    read = ("host", "port", "unix", "lf", "wait", "connect_timeout")
    others = {name: value for name, value in vars(args).items() if name not in read}
    if others != {name: value for name, value in defaults.items() if name not in read}:
        return None
    return tuple(getattr(args, name) for name in read)


@given(st.lists(st.sampled_from(WORDS), max_size=6))
def test_what_the_fast_path_takes_argparse_reads_the_same(argv: list[str]) -> None:
    fast = parse(argv)
    if fast is not None:
        assert fast == argparse_reading(argv), argv


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_a_script_s_usual_calls_take_the_fast_path(argv: list[str]) -> None:
    fast = parse(argv)
    assert fast is not None
    assert fast == argparse_reading(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["host", "--lf", "25"],  # two runs of positionals: argparse refuses the second
        ["--wai", "1", "host"],  # an abbreviation argparse expands
        ["host", "smtp"],  # a service name
        ["host", "70000"],
        ["--wait", "-0", "host"],
        ["--wait"],
        ["a", "b", "c"],
        ["--unix", "/tmp/s", "host"],
        ["--", "host"],
        ["--help"],
        ["--dialect", "redis", "host"],
    ],
    ids=" ".join,
)
def test_anything_else_goes_to_argparse(argv: list[str]) -> None:
    assert parse(argv) is None


# -- the two routes, as processes ------------------------------------------------------

ROUTES: dict[str, list[str]] = {"fast": [], "argparse": ["--loop", "auto"]}


def connect(route: str, *args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    command = linechat_command("connect", *ROUTES[route], *args)
    return subprocess.run(command, input=input, capture_output=True, timeout=30)


def test_the_fast_path_imports_neither_argparse_nor_re_nor_enum(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    names = imported_modules(served.host, str(served.port), input=SEED_INPUT)
    assert "linechat.cli.fastpath" in names
    slow = {"argparse", "re", "enum", "gettext", "locale", "linechat.cli.connect"} & names
    assert slow == set()
    # The same listing sees them on the argparse route (it can fail).
    names = imported_modules("--loop", "auto", served.host, str(served.port), input=SEED_INPUT)
    assert {"argparse", "linechat.cli.connect", "linechat.client.plain"} <= names
    assert "asyncio" not in names


@pytest.mark.parametrize("route", ROUTES)
def test_seed_exchange_on_both_routes(route: str, serve: Callable[..., Served]) -> None:
    served = serve()
    result = connect(route, served.host, str(served.port), input=SEED_INPUT)
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, b"")


@pytest.mark.parametrize("route", ROUTES)
def test_lf_on_both_routes(route: str, scripted: Callable[[Script], Peer]) -> None:
    def script(conn: Conn) -> None:
        assert conn.line() == b"one\n"
        conn.send(b"ok\r\n")
        assert conn.until_eof() == b"two\n"

    server = scripted(script)
    result = connect(route, "--lf", "127.0.0.1", str(server.port), input=b"one\ntwo")
    server.join()
    assert (result.returncode, result.stdout, result.stderr) == (0, b"ok\n", b"")


def test_unix_socket_on_the_fast_path(serve: Callable[..., Served], tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    serve("--unix", str(path), host=None)
    result = connect("fast", f"--unix={path}", input=SEED_INPUT)
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, b"")


def failures(*args: str, input: bytes = b"") -> dict[str, tuple[int, bytes]]:
    """Exit status and stderr of each route."""
    results = {route: connect(route, *args, input=input) for route in ROUTES}
    return {route: (result.returncode, result.stderr) for route, result in results.items()}


def test_refused_reads_the_same_on_both_routes() -> None:
    said = failures("127.0.0.1", str(free_port()), input=b"hello\n")
    assert said["fast"] == said["argparse"]
    assert said["fast"][0] == 1
    assert b"cannot connect to 127.0.0.1:" in said["fast"][1]


def test_wait_expired_reads_the_same_on_both_routes(scripted: Callable[[Script], Peer]) -> None:
    said: dict[str, tuple[int, bytes]] = {}
    for route in ROUTES:
        done = threading.Event()

        def script(conn: Conn, done: threading.Event = done) -> None:
            conn.send(b"hi\r\n")
            conn.until_eof()
            done.wait(15)  # never closes on its own

        server = scripted(script)
        # 1 s: the greeting is sent at once, but a loaded machine can hold it back a while.
        result = connect(route, "--wait", "1", "127.0.0.1", str(server.port))
        done.set()
        server.join()
        assert result.stdout == b"hi\n"
        said[route] = (result.returncode, result.stderr)
    assert said["fast"] == said["argparse"]
    assert said["fast"] == (
        0,
        b"linechat connect: no answer for 1 s after the end of input: closed\n",
    )


def test_a_terminal_on_stdout_is_left_to_the_full_command() -> None:
    code = (
        "import os, pty, sys\n"
        "from linechat.cli import fastpath\n"
        "parent, child = pty.openpty()\n"
        "os.dup2(child, 1)\n"
        "sys.stderr.write(repr(fastpath.run(['127.0.0.1', '1'])))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.stderr == b"None"
