"""What docs/services/chat.md promises beyond the numerics: its program, SIGHUP, extras."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.chat.conftest import IRC
from tests.conftest import Served

Connect = Callable[..., IRC]
DOC = Path(__file__).parents[2] / "docs" / "services" / "chat.md"


def test_the_documented_script_talks_to_the_server(shared_chat: Served, clients: Connect) -> None:
    program = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert program is not None
    listener = clients(shared_chat.port)
    listener.register("doclisten")
    listener.send("JOIN #general")
    listener.expect(" 366 ")
    result = subprocess.run(
        [sys.executable, "-c", program.group(1)],
        env={**os.environ, "CHAT_PORT": str(shared_chat.port)},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ERROR :Closing Link: 127.0.0.1 (Quit: done)\n"
    assert listener.expect("PRIVMSG") == (
        b":scriptbot!~bot@127.0.0.1 PRIVMSG #general :hello from a script"
    )


def test_sighup_rereads_the_motd(
    chat: Callable[..., Served], clients: Connect, tmp_path: Path
) -> None:
    motd = tmp_path / "motd"
    motd.write_text("first text\n")
    served = chat("--motd", str(motd))
    before = clients(served.port)
    before.send("NICK hup1", "USER u 0 * :x")
    before.expect(" 372 hup1 :- first text")
    motd.write_text("second text\n")
    served.process.send_signal(signal.SIGHUP)
    served.wait_log("MOTD reloaded")
    after = clients(served.port)
    after.send("NICK hup2", "USER u 0 * :x")
    after.expect(" 372 hup2 :- second text")
    motd.unlink()  # unreadable: the old text stays
    served.process.send_signal(signal.SIGHUP)
    served.wait_log("MOTD not reloaded")
    last = clients(served.port)
    last.send("NICK hup3", "USER u 0 * :x")
    last.expect(" 372 hup3 :- second text")


def test_ison_userhost_away_and_405(shared_chat: Served, clients: Connect) -> None:
    client = clients(shared_chat.port)
    client.register("extras")
    client.send("ISON extras nobody EXTRAS", "USERHOST extras", "AWAY :lunch", "AWAY")
    client.expect(" 303 extras :extras extras$")
    client.expect(" 302 extras :extras=\\+~u@127.0.0.1$")
    client.expect(" 306 extras :You have been marked as being away")
    client.expect(" 305 extras :You are no longer marked as being away")
    client.send("JOIN " + ",".join(f"#many{i}" for i in range(51)))
    client.expect(" 366 extras #many49 ")
    client.expect(" 405 extras #many50 :You have joined too many channels")


def test_idle_timeout_is_not_used_the_ping_timeout_is(
    chat: Callable[..., Served], clients: Connect
) -> None:
    served = chat("--idle-timeout", "1")
    client = clients(served.port)
    client.register("idler")
    assert client.quiet(2.5) == []  # silent past --idle-timeout: still connected, no PING yet
    client.send("PING :still")
    client.expect("PONG \\S+ :still")


def test_irc_over_tls(chat: Callable[..., Served], certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    served = chat("--tls-cert", str(cert), "--tls-key", str(key))
    context = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"NICK tls\r\nUSER u 0 * :x\r\nQUIT\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b" 001 tls :Welcome to the linechat IRC Network tls!~u@127.0.0.1\r\n" in data
    assert data.endswith(b"ERROR :Closing Link: 127.0.0.1 (Client Quit)\r\n")
