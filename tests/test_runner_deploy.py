"""Deploying a service: config files, socket activation, --reload, installed services."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import STARTED, Served, linechat_command, read_all, require_tool
from .helpers import serve_usage_error, start_on_free_port, stop_process, wait_log
from .test_runner import USER_MODULE

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "userapp.py").write_text(USER_MODULE)
    return folder


# -- --config FILE -------------------------------------------------------------------------


def test_config_file_gives_target_and_options(
    serve: Callable[..., Served], app_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "linechat.toml"
    config.write_text(
        f'target = "userapp:SERVICE"\napp-dir = "{app_dir}"\n'
        'prefix = "file: "\ntimes = 2\nmax-connections = 5\n'
    )
    served = serve("--config", str(config))
    assert served.talk(b"QUIT\r\n") == b"file: QUIT\r\nfile: QUIT\r\n"
    assert "max_connections=5" in served.log()


def test_flags_override_the_file(
    serve: Callable[..., Served], app_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "linechat.toml"
    config.write_text('prefix = "file: "\ntimes = 2\nidle-timeout = 30\n')
    served = serve(
        "userapp:SERVICE", "--app-dir", str(app_dir), "--config", str(config), "--times", "1"
    )
    assert served.talk(b"QUIT\r\n") == b"file: QUIT\r\n"
    assert "idle_timeout=30.0" in served.log()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max-conections = 5\n", "unknown key 'max-conections' (accepted: app-dir,"),
        ("max-connections = 'many'\n", "key 'max-connections': not a whole number: 'many'"),
        ("max-connections = 0\n", "key 'max-connections': must be at least 1"),
        ("proxy-protocol = 'yes'\n", "key 'proxy-protocol': not true or false"),
        ("times = 'x'\n", "key 'times'"),
        ("loop = 'tokio'\n", "key 'loop': 'tokio' is not one of auto, asyncio, uvloop"),
        ("port = = 3\n", "is not valid TOML"),
    ],
)
def test_config_file_errors(app_dir: Path, tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    err = serve_usage_error("userapp:SERVICE", "--app-dir", str(app_dir), "--config", str(config))
    assert message in err and str(config) in err
    assert "Traceback" not in err


def test_unknown_key_lists_the_services_options(app_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("colour = 'red'\n")
    result = subprocess.run(
        linechat_command(
            "serve", "userapp:SERVICE", "--app-dir", str(app_dir), "--config", str(config)
        ),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    accepted = result.stderr.decode().split("accepted: ", 1)[1]
    assert "prefix" in accepted and "times" in accepted and "max-connections" in accepted


def test_missing_config_file() -> None:
    err = serve_usage_error("--config", "/nonexistent/linechat.toml")
    assert "cannot read config file /nonexistent/linechat.toml" in err


# -- socket activation ---------------------------------------------------------------------


def activated(*args: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`systemd-socket-activate -l 127.0.0.1:PORT linechat serve ARGS`, started."""
    tool = require_tool("systemd-socket-activate")

    def start(port: int) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [tool, "-l", f"127.0.0.1:{port}", *linechat_command("serve", *args)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    return start_on_free_port(start)


@pytest.mark.parametrize("workers", [None, "2"])
def test_systemd_socket_activation(app_dir: Path, tmp_path: Path, workers: str | None) -> None:
    log = tmp_path / "activate.log"
    extra = ["--workers", workers] if workers else []
    process, port = activated("userapp:Upper", "--app-dir", str(app_dir), *extra, log=log)
    try:
        wait_log(log, "Listening on", 20)
        import socket

        # systemd-socket-activate starts linechat at the first connection: that
        # one waits for linechat's start-up (and its workers') on a loaded machine.
        for i in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"act %d\r\nQUIT\r\n" % i)
                reply = read_all(sock, timeout=30 if i == 0 else 10)
                assert reply == b"READY 127.0.0.1\r\nACT %d\r\n" % i
        wait_log(log, f"listening on 127.0.0.1:{port}", 20)
        if workers:
            assert "(2 workers)" in wait_log(log, r"\(2 workers\)", 20)
    finally:
        assert stop_process(process, timeout=20) == 0


def test_fd_flag(app_dir: Path, tmp_path: Path) -> None:
    """--fd N: a socket bound by the parent, passed by number (as uvicorn's --fd)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    fd = listener.fileno()
    log = tmp_path / "fd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            linechat_command("serve", "userapp:lower", "--app-dir", str(app_dir), "--fd", str(fd)),
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
        )
    try:
        wait_log(log, "listening on", 20)
        port = listener.getsockname()[1]
        listener.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"FD\r\nQUIT\r\n")
            assert read_all(sock) == b"READY\r\nfd\r\n"
    finally:
        stop_process(process, timeout=20)


def test_fd_that_is_not_a_listening_socket(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as file:
        result = subprocess.run(
            linechat_command("serve", "--fd", str(file.fileno())),
            capture_output=True,
            timeout=30,
            pass_fds=(file.fileno(),),
        )
    assert result.returncode == 1
    assert "is not a socket" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


# -- --reload --------------------------------------------------------------------------------


def test_reload_picks_up_an_edit(serve: Callable[..., Served], tmp_path: Path) -> None:
    app = tmp_path / "reloadapp"
    app.mkdir()
    module = app / "greeter.py"
    module.write_text(
        "from linechat import LineProtocol\n"
        "class Greeter(LineProtocol):\n"
        "    def connection_started(self):\n"
        "        self.write_line(b'version 1')\n"
        "        self.close()\n"
    )
    served = serve("greeter:Greeter", "--app-dir", str(app), "--reload")
    assert served.talk(b"") == b"version 1\r\n"
    module.write_text(module.read_text().replace("version 1", "version 2"))
    served.wait_log(r"changed: greeter\.py; restarting")
    deadline = time.monotonic() + 30
    reply = b""
    while time.monotonic() < deadline:
        reply = served.talk(b"")  # the port stays open across the restart
        if reply == b"version 2\r\n":
            break
        time.sleep(0.1)
    assert reply == b"version 2\r\n"
    assert served.stop() == 0


def test_reload_without_watchfiles_says_which_extra(tmp_path: Path) -> None:
    (tmp_path / "watchfiles.py").write_text("raise ImportError('not installed here')\n")
    err = serve_usage_error("--reload", "--app-dir", str(tmp_path), "--port", "0")
    assert "pip install 'linechat[reload]'" in err
    assert "Traceback" not in err


def test_reload_with_workers_is_refused() -> None:
    err = serve_usage_error("--reload", "--workers", "2")
    assert "does not work with --workers" in err


# -- installed services (entry points) -----------------------------------------------------


def test_entry_point_service(tmp_path: Path) -> None:
    """A tiny distribution installed into a fresh venv registers `linechat serve shout`."""
    package = tmp_path / "shout-pkg"
    (package / "shout").mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["hatchling"]\n'
        'build-backend = "hatchling.build"\n'
        "[project]\n"
        'name = "shout"\n'
        'version = "1.0"\n'
        '[project.entry-points."linechat.services"]\n'
        'shout = "shout.service:Shout"\n'
        "[tool.hatch.build.targets.wheel]\n"
        'packages = ["shout"]\n'
    )
    (package / "shout" / "__init__.py").write_text("")
    (package / "shout" / "service.py").write_text(
        "from linechat import LineProtocol\n"
        "class Shout(LineProtocol):\n"
        "    def line_received(self, line):\n"
        "        self.write_line(line.upper() + b'!')\n"
        "        self.close()\n"
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # linechat and its dependencies, from the test's own environment.
    ours = [p for p in sys.path if p.endswith("site-packages")]
    src = str(Path(__file__).resolve().parents[1] / "src")
    Path(site, "linechat-dev.pth").write_text("\n".join([src, *ours]) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(package),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    listed = subprocess.run(
        [str(python), "-m", "linechat", "serve", "--list"], capture_output=True, timeout=30
    )
    assert re.search(rb"shout\s+installed: shout.service:Shout", listed.stdout)
    log = tmp_path / "shout.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-m", "linechat", "serve", "shout", "--host", "127.0.0.1", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    try:
        text = wait_log(log, "listening on", 20)
        match = STARTED.search(text.encode())
        assert match is not None
        import socket

        with socket.create_connection(("127.0.0.1", int(match.group(2))), timeout=10) as sock:
            sock.sendall(b"hello\r\n")
            assert read_all(sock) == b"HELLO!\r\n"
        assert "shout service (protocol layer)" in text
    finally:
        stop_process(process, timeout=20)
