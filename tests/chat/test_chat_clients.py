"""Real IRC clients against the chat service: jaraco's `irc` library and WeeChat."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat.conftest import IRC
from tests.conftest import Served, require_tool
from tests.helpers import stop_process

irc_client = pytest.importorskip("irc.client")

Connect = Callable[..., IRC]


class Seen:
    """Every event the `irc` library parsed, per connection, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, str, str, list[str]]] = []

    def __call__(self, connection: Any, event: Any) -> None:
        self.events.append((connection, event.type, event.target or "", list(event.arguments)))

    def of(self, connection: Any, kind: str) -> list[tuple[str, list[str]]]:
        return [(t, a) for c, k, t, a in self.events if c is connection and k == kind]


def run_until(reactor: Any, done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the irc library never saw what was expected")
        reactor.process_once(0.05)


def test_the_irc_library_registers_joins_talks_and_parses_replies(
    shared_chat: Served,
) -> None:
    reactor = irc_client.Reactor()
    seen = Seen()
    reactor.add_global_handler("all_events", seen)
    alice = reactor.server().connect("127.0.0.1", shared_chat.port, "lib_alice", ircname="Alice")
    bob = reactor.server().connect("127.0.0.1", shared_chat.port, "lib_bob", ircname="Bob")
    try:
        run_until(reactor, lambda: bool(seen.of(alice, "welcome") and seen.of(bob, "welcome")))
        assert alice.get_nickname() == "lib_alice"
        features = alice.features
        assert features.network == "linechat"
        assert features.casemapping == "rfc1459"
        assert features.nicklen == 30
        alice.join("#lib")
        run_until(reactor, lambda: bool(seen.of(alice, "endofnames")))
        bob.join("#lib")
        run_until(reactor, lambda: len(seen.of(alice, "join")) == 2)
        run_until(reactor, lambda: bool(seen.of(bob, "endofnames")))
        names = [a for _, a in seen.of(bob, "namreply")]
        assert names[-1][-1].split() == ["lib_alice", "lib_bob"]
        alice.privmsg("#lib", "héllo from the library ✓")
        bob.privmsg("lib_alice", "a private word")
        bob.notice("#lib", "a notice")
        alice.topic("#lib", "library topic")
        run_until(reactor, lambda: bool(seen.of(bob, "pubmsg") and seen.of(alice, "privmsg")))
        assert seen.of(bob, "pubmsg") == [("#lib", ["héllo from the library ✓"])]
        assert seen.of(alice, "privmsg") == [("lib_alice", ["a private word"])]
        run_until(reactor, lambda: bool(seen.of(alice, "pubnotice") and seen.of(bob, "topic")))
        assert seen.of(bob, "topic") == [("#lib", ["library topic"])]
        alice.whois(["lib_bob"])
        run_until(reactor, lambda: bool(seen.of(alice, "endofwhois")))
        assert seen.of(alice, "whoisuser")[0][1][:2] == ["lib_bob", "~lib_bob"]
        alice.nick("lib_alice2")
        run_until(reactor, lambda: bool(seen.of(bob, "nick")))
        assert alice.get_nickname() == "lib_alice2"
        bob.part("#lib", "bye")
        run_until(reactor, lambda: len(seen.of(alice, "part")) == 1)
        bob.quit("done")
        run_until(reactor, lambda: bool(seen.of(bob, "disconnect")))
    finally:
        for connection in (alice, bob):
            connection.close()


def test_the_irc_library_sees_433_and_can_pick_another_nick(shared_chat: Served) -> None:
    reactor = irc_client.Reactor()
    seen = Seen()
    reactor.add_global_handler("all_events", seen)
    first = reactor.server().connect("127.0.0.1", shared_chat.port, "lib_dup")
    try:
        run_until(reactor, lambda: bool(seen.of(first, "welcome")))
        second = reactor.server()
        # The library's connect() sends NICK and USER and does not wait for 001.
        second.connect("127.0.0.1", shared_chat.port, "LIB_DUP")
        run_until(reactor, lambda: bool(seen.of(second, "nicknameinuse")))
        second.nick("lib_dup2")
        run_until(reactor, lambda: bool(seen.of(second, "welcome")))
        second.close()
    finally:
        first.close()


@pytest.fixture
def weechat(tmp_path: Path) -> Iterator[Callable[[int, str], Path]]:
    """Start weechat-headless on a server on PORT; stopped after the test.

    COMMANDS (separated by ``;``) run once it is registered (the server's
    ``command`` option, run on 001), not after a fixed /wait that a slow
    start-up on a loaded machine outlasts.
    """
    binary = require_tool("weechat-headless")
    processes: list[subprocess.Popen[bytes]] = []

    def start(port: int, commands: str) -> Path:
        home = tmp_path / "weechat"
        home.mkdir()
        setup = ";".join(
            [
                "/set logger.file.flush_delay 0",
                "/set irc.server_default.autoreconnect off",
                '/set irc.server_default.capabilities ""',
                f"/server add t 127.0.0.1/{port} -notls -nicks=weebot -username=wee",
                # An escaped ';' stays in the option's value (where it separates again).
                '/set irc.server.t.command "' + commands.replace(";", "\\;") + '"',
                "/connect t",
            ]
        )
        processes.append(
            subprocess.Popen(
                [binary, "--dir", str(home), "--run-command", setup],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return home

    yield start
    for process in processes:
        stop_process(process)


def test_weechat_registers_joins_sends_and_receives(
    shared_chat: Served, clients: Connect, weechat: Callable[[int, str], Path]
) -> None:
    peer = clients(shared_chat.port)
    peer.register("peer")
    peer.send("JOIN #wee")
    peer.expect(" 366 ")
    home = weechat(
        shared_chat.port,
        "/join -server t #wee;/msg -server t #wee hello from weechat ✓",
    )
    peer.expect(r"^:weebot!~?wee@127.0.0.1 JOIN #wee$", timeout=20)
    assert peer.expect("PRIVMSG", timeout=20) == (
        ":weebot!~wee@127.0.0.1 PRIVMSG #wee :hello from weechat ✓".encode()
    )
    peer.send("PRIVMSG #wee :hello weechat, from a socket ✓")
    log = home / "logs" / "irc.t.#wee.weechatlog"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if log.exists() and "hello weechat, from a socket ✓" in log.read_text(errors="replace"):
            break
        time.sleep(0.2)
    else:
        found = (
            sorted(p.name for p in (home / "logs").glob("*")) if (home / "logs").exists() else []
        )
        raise AssertionError(f"WeeChat never logged the line; logs: {found}")
    assert "peer" in log.read_text(errors="replace")


def test_irssi_under_a_pty_registers_joins_sends_and_receives(
    shared_chat: Served, clients: Connect, tmp_path: Path
) -> None:
    binary = require_tool("irssi")
    pexpect = pytest.importorskip("pexpect")
    peer = clients(shared_chat.port)
    peer.register("irspeer")
    peer.send("JOIN #irs")
    peer.expect(" 366 ")
    home = tmp_path / "irssi"
    home.mkdir()
    (home / "config").write_text('settings = { core = { real_name = "irssi test"; }; };\n')
    child = pexpect.spawn(
        binary,
        ["--home", str(home), "-c", "127.0.0.1", "-p", str(shared_chat.port), "-n", "irsbot"],
        env={"TERM": "xterm", "HOME": str(home), "LANG": "C.UTF-8"},
        dimensions=(40, 200),
        timeout=20,
    )
    try:
        child.expect("Welcome to the linechat IRC Network")
        child.send("/join #irs\r")
        peer.expect(r"^:irsbot!\S+ JOIN #irs$", timeout=20)
        child.send("hello from irssi\r")
        assert peer.expect("PRIVMSG", timeout=20).endswith(b" PRIVMSG #irs :hello from irssi")
        peer.send("PRIVMSG #irs :hello irssi, from a socket")
        child.expect("hello irssi, from a socket")
        child.send("/quit leaving\r")
        peer.expect(r"^:irsbot!\S+ QUIT :Quit: leaving$", timeout=20)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
