"""What docs/services/chat.md promises beyond the numerics: its program, SIGHUP, extras."""

from __future__ import annotations

import os
import re
import signal
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
