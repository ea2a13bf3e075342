"""`linechat serve TARGET`: built-in names, import strings, factories, Services, errors.

The user's services here are written in a temporary directory against the
public API only, as a user would, and served over real sockets.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Served, read_all
from .helpers import free_port, run_serve, serve_usage_error, start_on_free_port

pytestmark = pytest.mark.timeout(90)

#: A user's services, one module, both layers; only the public API.
USER_MODULE = """
import linechat
from linechat import LineProtocol, LineStream, Option, Service, ServiceError, service_defaults


@service_defaults(max_line_length=64)
class Upper(LineProtocol):
    def connection_started(self) -> None:
        self.write_line(b"READY " + str(self.peer[0] if self.peer else "unix").encode())

    def line_received(self, line: bytes) -> None:
        if line == b"QUIT":
            self.close()
        elif line == b"BOOM":
            raise RuntimeError("boom on purpose")
        else:
            self.write_line(line.upper())


@service_defaults(lenient=True)
async def lower(stream: LineStream) -> None:
    stream.write_line(b"READY")
    async for line in stream:
        if line == b"QUIT":
            return
        if line == b"BOOM":
            raise RuntimeError("boom on purpose")
        stream.write_line(line.lower())


def make_upper():
    return Upper


class Holder:
    class Inner:
        handler = lower


NOT_A_TARGET = 42


def plain_function(stream):
    return None


def returns_number():
    return 42


def _build(options, context):
    prefix = options["prefix"].encode()
    times = options["times"]

    class Prefixed(LineProtocol):
        def line_received(self, line: bytes) -> None:
            for _ in range(times):
                self.write_line(prefix + line)
            if line == b"QUIT":
                self.close()

    return Prefixed


def _check(options, context):
    if options["times"] > 3:
        raise ServiceError(f"--times {options['times']}: at most 3")


SERVICE = Service(
    name="prefixer",
    summary="answers each line with a prefix",
    build=_build,
    check=_check,
    options=(
        Option("prefix", "what to put before each line", default="> "),
        Option("times", "how many answers per line", type=int, default=1, metavar="N"),
        Option("log", "a flag whose name starts a runner flag's", flag=True),
    ),
)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "userapp.py").write_text(USER_MODULE)
    (folder / "broken.py").write_text("import json\nraise ValueError('broken on import')\n")
    (folder / "needs_missing.py").write_text("import surely_not_installed_xyz\n")
    return folder


# -- targets that work --------------------------------------------------------------


def test_echo_by_name(serve: Callable[..., Served]) -> None:
    served = serve("echo")
    assert served.talk(b"hi\r\n.\r\n") == b"You sent: hi\r\n"
    assert "echo service (protocol layer) listening on" in served.log()


def test_echo_by_import_string(serve: Callable[..., Served]) -> None:
    served = serve("linechat.services.echo:EchoProtocol")
    assert served.talk(b"hi\nthere\r\n.\r\n") == b"You sent: hi\r\nYou sent: there\r\n"


def test_echo_handler_by_import_string_is_the_stream_layer(serve: Callable[..., Served]) -> None:
    served = serve("linechat.services.echo:echo_handler")
    assert "(stream layer)" in served.log()
    assert served.talk(b"hi\r\n.\r\n") == b"You sent: hi\r\n"


def test_old_service_spelling(serve: Callable[..., Served]) -> None:
    served = serve("--service", "echo", "--layer", "stream")
    assert "(stream layer)" in served.log()
    assert served.talk(b"old\r\n.\r\n") == b"You sent: old\r\n"


def test_user_protocol_class(serve: Callable[..., Served], app_dir: Path) -> None:
    served = serve("userapp:Upper", "--app-dir", str(app_dir))
    assert served.talk(b"abc\r\nQUIT\r\n") == b"READY 127.0.0.1\r\nABC\r\n"
    assert "max_line_length=64" in served.log()  # its service_defaults, logged once


def test_user_handler_dotted_attribute(serve: Callable[..., Served], app_dir: Path) -> None:
    served = serve("userapp:Holder.Inner.handler", "--app-dir", str(app_dir))
    assert served.talk(b"ABC\nQUIT\n") == b"READY\r\nabc\r\n"  # lenient, from its defaults


def test_user_factory(serve: Callable[..., Served], app_dir: Path) -> None:
    served = serve("userapp:make_upper", "--factory", "--app-dir", str(app_dir))
    assert served.talk(b"x\r\nQUIT\r\n") == b"READY 127.0.0.1\r\nX\r\n"


def test_flags_override_service_defaults(serve: Callable[..., Served], app_dir: Path) -> None:
    served = serve("userapp:Upper", "--app-dir", str(app_dir), "--max-line-length", "8")
    reply = served.talk(b"123456789\r\n")
    assert reply.startswith(b"READY") and b"ERROR line too long" in reply


def test_service_options_are_flags(serve: Callable[..., Served], app_dir: Path) -> None:
    served = serve(
        "userapp:SERVICE", "--app-dir", str(app_dir), "--prefix", "+ ", "--times", "2", "--log"
    )
    assert served.talk(b"a\r\nQUIT\r\n") == b"+ a\r\n+ a\r\n+ QUIT\r\n+ QUIT\r\n"


def test_service_help_shows_its_options(app_dir: Path) -> None:
    result = run_serve("userapp:SERVICE", "--app-dir", str(app_dir), "--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "options of the prefixer service" in out and "--times N" in out
    assert "TARGET" in out and "module.path:attr" in out


def test_app_dir_defaults_to_the_current_directory(
    serve: Callable[..., Served], app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(app_dir)
    served = serve("userapp:Upper")
    assert served.talk(b"cwd\r\nQUIT\r\n") == b"READY 127.0.0.1\r\nCWD\r\n"


def test_a_failing_connection_leaves_the_others(
    serve: Callable[..., Served], app_dir: Path
) -> None:
    for target in ("userapp:Upper", "userapp:lower"):
        served = serve(target, "--app-dir", str(app_dir))
        with served.connect() as other:
            other.sendall(b"first\r\n")
            served.talk(b"BOOM\r\n")  # closed; what it was sent before is the other branch's
            other.sendall(b"second\r\nQUIT\r\n")
            assert read_all(other).count(b"\r\n") == 3
        served.wait_log("boom on purpose")
        assert served.process.poll() is None


def test_list_names_builtin_services() -> None:
    result = run_serve("--list")
    assert result.returncode == 0
    assert "echo" in result.stdout.decode()


# -- errors a user makes: one line, exit 2, no traceback --------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmodule_abc:thing", "cannot import 'nosuchmodule_abc': no module named"),
        ("userapp:Nope", "module 'userapp' has no attribute 'Nope'"),
        ("userapp:Holder.Missing", "has no attribute 'Holder.Missing'"),
        ("userapp:NOT_A_TARGET", "expected a LineProtocol subclass"),
        ("userapp:plain_function", "not a coroutine function (a factory needs --factory)"),
        ("userapp", "no service named 'userapp'"),
        ("userapp:", "malformed TARGET"),
        ("a:b:c", "malformed TARGET"),
        ("bad name!", "malformed TARGET"),
    ],
)
def test_target_errors(app_dir: Path, target: str, message: str) -> None:
    err = serve_usage_error(target, "--app-dir", str(app_dir), "--port", "0")
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_factory_returning_the_wrong_kind(app_dir: Path) -> None:
    err = serve_usage_error("userapp:returns_number", "--factory", "--app-dir", str(app_dir))
    assert "what userapp:returns_number() returned is a int (42)" in err
    assert "Traceback" not in err


def test_service_error_from_check(app_dir: Path) -> None:
    err = serve_usage_error("userapp:SERVICE", "--app-dir", str(app_dir), "--times", "9")
    assert err.strip() == "linechat serve: --times 9: at most 3"


def test_bad_service_option_value(app_dir: Path) -> None:
    err = serve_usage_error("userapp:SERVICE", "--app-dir", str(app_dir), "--times", "many")
    assert "--times" in err
    assert "Traceback" not in err


def test_unknown_flag_for_a_service(app_dir: Path) -> None:
    err = serve_usage_error("userapp:Upper", "--app-dir", str(app_dir), "--times", "2")
    assert "unrecognized arguments: --times" in err


def test_layer_that_the_target_does_not_offer(app_dir: Path) -> None:
    result = run_serve("userapp:Upper", "--app-dir", str(app_dir), "--layer", "stream")
    assert result.returncode == 2
    assert "runs on the protocol layer only" in result.stderr.decode()


def test_exception_inside_the_module_shows_its_traceback(app_dir: Path) -> None:
    for module, text in (("broken", "broken on import"), ("needs_missing", "surely_not")):
        result = run_serve(f"{module}:x", "--app-dir", str(app_dir))
        err = result.stderr.decode()
        assert result.returncode == 1
        assert "Traceback" in err and text in err
        assert f"importing '{module}' failed" in err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (
        ["--tls-cert", "x.pem"],
        ["--workers", "2", "--unix", str(tmp_path / "s")],
        ["--unix", str(tmp_path / "s"), "--port", "1"],
        ["echo", "--service", "echo"],
    ):
        result = run_serve(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr.decode()


def test_serve_from_python(tmp_path: Path, app_dir: Path) -> None:
    """``linechat.serve()`` in a program that owns its loop; cancelling it shuts down."""
    for _ in range(3):  # again on another port if someone took this one before it was bound
        result = serve_from_a_program(tmp_path, app_dir, free_port())
        if b"address already in use" not in result.stderr:
            break
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        "b'READY 127.0.0.1\\r\\nABC\\r\\n'",
        "cancelled cleanly",
        "b''",
    ]


def serve_from_a_program(
    tmp_path: Path, app_dir: Path, port: int
) -> subprocess.CompletedProcess[bytes]:
    program = tmp_path / "prog.py"
    program.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys
            sys.path.insert(0, {str(app_dir)!r})
            import linechat
            from userapp import Upper

            async def main():
                task = asyncio.create_task(
                    linechat.serve(Upper, host="127.0.0.1", port={port}, max_line_length=16)
                )
                for _ in range(100):
                    try:
                        reader, writer = await asyncio.open_connection("127.0.0.1", {port})
                        break
                    except OSError:
                        await asyncio.sleep(0.05)
                writer.write(b"abc\\r\\n")
                print((await reader.readline()) + (await reader.readline()))
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    print("cancelled cleanly")
                print(await reader.read())  # closed by the shutdown

            asyncio.run(main())
            """
        )
    )
    return subprocess.run([sys.executable, str(program)], capture_output=True, timeout=30)


def test_run_from_python_until_sigterm(tmp_path: Path, app_dir: Path) -> None:
    """``linechat.run()`` blocks like ``linechat serve`` and takes its options as keywords."""
    program = tmp_path / "prog.py"

    def start(port: int) -> subprocess.Popen[bytes]:
        program.write_text(
            "import linechat, sys\n"
            f"sys.exit(linechat.run('userapp:SERVICE', app_dir={str(app_dir)!r}, host='127.0.0.1',"
            f" port={port}, prefix='py: '))\n"
        )
        return subprocess.Popen([sys.executable, str(program)], stderr=subprocess.DEVNULL)

    process, port = start_on_free_port(start)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"x\r\nQUIT\r\n")
            assert read_all(sock) == b"py: x\r\npy: QUIT\r\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        process.kill()
        process.wait()


def test_run_rejects_unknown_keywords() -> None:
    import linechat

    with pytest.raises(linechat.ConfigError, match="unknown option 'max_conections'"):
        linechat.run("echo", max_conections=5)


def test_run_is_the_function_whatever_was_imported_first() -> None:
    import linechat
    import linechat.server
    import linechat.server.runner  # a submodule named like the function would shadow it

    assert callable(linechat.server.run) and callable(linechat.run)
    assert linechat.run is linechat.server.runner.run
