"""Two chat servers sharing rooms through a real redis-server on a loopback port."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chat.conftest import IRC
from tests.conftest import Served
from tests.helpers import free_port, serve_usage_error
from tests.peers import RedisServer

Connect = Callable[..., IRC]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test started (and stops: SIGKILL, nothing to keep)."""
    server = RedisServer(tmp_path)
    yield server
    server.stop(signal.SIGKILL)


def names(client: IRC, channel: str) -> list[bytes]:
    """The members NAMES lists for ``channel`` (353 lines until the 366), sorted."""
    client.send(f"NAMES {channel}")
    members: list[bytes] = []
    while b" 366 " not in (line := client.expect(" 353 | 366 ")):
        members += line.split(b" :", 1)[1].split()
    return sorted(members)


def until_names(client: IRC, channel: str, *nicks: str, timeout: float = 15.0) -> None:
    """Ask NAMES until ``client``'s server lists exactly ``nicks`` (the others' JOINs and
    PARTs reach it through Redis a moment after their own server answered)."""
    expected = sorted(nick.encode() for nick in nicks)
    deadline = time.monotonic() + timeout
    while (members := names(client, channel)) != expected:
        assert time.monotonic() < deadline, (channel, members, expected)
        time.sleep(0.05)


def two_servers(
    chat: Callable[..., Served], redis: RedisServer, *extra: str
) -> tuple[Served, Served]:
    args = ("--flood-rate", "0", "--redis", redis.url, "--redis-nick-ttl", "2", *extra)
    return chat(*args, "--server-name", "one.test"), chat(*args, "--server-name", "two.test")


def test_messages_both_ways_names_who_whois_across_servers(
    chat: Callable[..., Served], clients: Connect, redis: RedisServer
) -> None:
    one, two = two_servers(chat, redis)
    alice, bob = clients(one.port), clients(two.port)
    alice.register("alice")
    bob.register("bob")
    alice.send("JOIN #net")
    alice.expect(" 366 alice ")
    until_names(bob, "#net", "alice")  # the JOIN reaches the other server through Redis
    bob.send("JOIN #NET")
    bob.expect(r" 353 bob = #net :alice bob")
    alice.expect(r"^:bob!~u@127.0.0.1 JOIN #net$")
    alice.send("PRIVMSG #net :hello from one")
    assert bob.expect("PRIVMSG") == b":alice!~u@127.0.0.1 PRIVMSG #net :hello from one"
    bob.send("PRIVMSG #net :hello from two", "PRIVMSG alice :private from two")
    assert alice.expect("PRIVMSG #net") == b":bob!~u@127.0.0.1 PRIVMSG #net :hello from two"
    assert alice.expect("PRIVMSG alice") == b":bob!~u@127.0.0.1 PRIVMSG alice :private from two"
    alice.send("NAMES #net", "WHO #net", "WHOIS bob")
    alice.expect(r" 353 alice = #net :alice bob")
    alice.expect(r" 352 alice #net ~u 127.0.0.1 one.test alice H :0 Real Name")
    alice.expect(r" 352 alice #net ~u 127.0.0.1 two.test bob H :0 Real Name")
    alice.expect(r" 315 alice #net ")
    alice.expect(r" 311 alice bob ~u 127.0.0.1 ")
    alice.expect(r" 312 alice bob two.test ")
    bob.send("NICK bobby", "TOPIC #net :shared topic")
    assert alice.expect("NICK") == b":bob!~u@127.0.0.1 NICK :bobby"
    assert alice.expect("TOPIC") == b":bobby!~u@127.0.0.1 TOPIC #net :shared topic"
    bob.send("PART #net :off", "QUIT :done")
    assert alice.expect("PART") == b":bobby!~u@127.0.0.1 PART #net :off"
    alice.send("NAMES #net")
    alice.expect(r" 353 alice = #net :alice$")


def test_nick_collision_across_servers_and_release(
    chat: Callable[..., Served], clients: Connect, redis: RedisServer
) -> None:
    one, two = two_servers(chat, redis)
    first = clients(one.port)
    first.register("Unique[nick]")
    second = clients(two.port)
    second.send("NICK unique{NICK}")
    second.expect(r" 433 \* unique\{NICK\} :Nickname is already in use")
    first.send("NICK other")
    first.expect("NICK :other")
    second.send("USER u 0 * :x")  # registered once its NICK is accepted
    deadline = time.monotonic() + 15
    while True:  # the release is on its way to Redis: in use until it is there
        second.send("NICK unique{NICK}")
        if b" 001 " in second.expect(r" 433 \* unique\{NICK\} | 001 unique\{NICK\} "):
            break
        assert time.monotonic() < deadline, "the released nick was never free"
        time.sleep(0.05)


def test_a_killed_servers_nicks_are_freed_and_its_users_leave(
    chat: Callable[..., Served], clients: Connect, redis: RedisServer
) -> None:
    one, two = two_servers(chat, redis)
    doomed, survivor = clients(one.port), clients(two.port)
    doomed.register("doomed")
    doomed.send("JOIN #split")
    doomed.expect(" 366 ")
    survivor.register("survivor")
    until_names(survivor, "#split", "doomed")  # the JOIN reaches the other server through Redis
    survivor.send("JOIN #split")
    survivor.expect(" 353 survivor = #split :doomed survivor")
    one.stop(signal.SIGKILL)
    survivor.expect(r"^:doomed!\S+ QUIT :\*\.net \*\.split$", timeout=15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        survivor.send("NICK doomed")
        line = survivor.expect(r" 433 | NICK :doomed")
        if b"NICK :doomed" in line:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the killed server's nick was never freed")


def test_redis_killed_and_restarted_while_clients_chat(
    chat: Callable[..., Served], clients: Connect, redis: RedisServer
) -> None:
    one, two = two_servers(chat, redis)
    a1, a2, b1 = clients(one.port), clients(one.port), clients(two.port)
    for client, nick in ((a1, "a1"), (a2, "a2"), (b1, "b1")):
        client.register(nick)
        client.send("JOIN #outage")
        client.expect(f" 366 {nick} ")
    a1.expect("b1!\\S+ JOIN")
    redis.stop(signal.SIGKILL)
    time.sleep(0.5)
    # Local rooms keep working, nobody is dropped.
    a1.send("PRIVMSG #outage :during the outage")
    assert a2.expect("PRIVMSG") == b":a1!~u@127.0.0.1 PRIVMSG #outage :during the outage"
    one.wait_log("Redis lost")
    redis.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # back: the servers hear each other again
        b1.send("PRIVMSG #outage :ping from two")
        try:
            a1.expect("ping from two", timeout=0.5)
            break
        except (TimeoutError, AssertionError):
            continue
    else:
        raise AssertionError("the servers never heard each other after Redis came back")
    # The mirror is rebuilt from the others' state (asked for once Redis is back):
    # b1 is listed again, if not at the very moment its line came through.
    until_names(a1, "#outage", "a1", "a2", "b1")
    for client in (a1, a2, b1):
        client.send("PING :alive")
        client.expect("PONG")


def test_workers_share_rooms_through_redis(
    chat: Callable[..., Served], clients: Connect, redis: RedisServer
) -> None:
    served = chat("--flood-rate", "0", "--redis", redis.url, "--workers", "2")
    members = [clients(served.port) for _ in range(16)]  # SO_REUSEPORT spreads them
    for number, client in enumerate(members):
        client.register(f"w{number}")
        client.send("JOIN #workers")
        client.expect(f" 366 w{number} ")
    for client in members:  # on both workers: the last JOINs reach the other through Redis
        until_names(client, "#workers", *(f"w{number}" for number in range(16)))
    members[0].send("WHO #workers")
    servers: set[bytes] = set()
    while b" 315 " not in (line := members[0].expect(" 352 | 315 ")):
        servers.add(line.split()[6])
    assert len(servers) == 2, servers  # both workers have members (2**-15 odds otherwise)
    for number, client in enumerate(members):
        client.send(f"PRIVMSG #workers :from w{number}")
    for number, client in enumerate(members):
        heard: set[bytes] = set()
        while len(heard) < 15:
            heard.add(client.expect("PRIVMSG #workers :from w").split(b":from ")[1])
        assert f"w{number}".encode() not in heard


def test_workers_without_redis_are_refused(tmp_path: Path) -> None:
    err = serve_usage_error(
        "chat", "--workers", "2", "--host", "127.0.0.1", "--port", "0", timeout=60
    )
    assert "chat with --workers needs --redis URL" in err


def test_an_unreachable_redis_is_a_clear_error() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    err = serve_usage_error(
        "chat", "--redis", url, "--host", "127.0.0.1", "--port", "0", timeout=60
    )
    assert f"--redis {url}: cannot use it" in err


def test_a_nick_taken_on_two_servers_during_an_outage_is_logged(
    chat: Callable[..., Served], clients: Connect, redis: RedisServer
) -> None:
    one, two = two_servers(chat, redis)
    redis.stop(signal.SIGKILL)
    one.wait_log("Redis lost", timeout=15)
    two.wait_log("Redis lost", timeout=15)
    first, second = clients(one.port), clients(two.port)
    first.register("twice")  # each server checks nicks on its own meanwhile
    second.register("twice")
    redis.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "also claimed on another server" in one.log() + two.log():
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the clash was never logged")
    for client in (first, second):  # both keep it, neither is dropped
        client.send("PING :kept")
        client.expect("PONG")
