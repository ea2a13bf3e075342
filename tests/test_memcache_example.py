"""examples/memcache.py via `linechat serve`: the real memcached's replies; pymemcache unchanged."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError

from examples import memcache as example
from examples.memcache import Cache, MemcacheProtocol, deadline
from linechat import LineProtocol

from .conftest import Served, read_all, read_until
from .memcache_peers import KEYS, VERSION_LINE, command_stream, exchange
from .peers import real_memcached

REPO = Path(__file__).resolve().parents[1]
TARGET = "examples.memcache:MemcacheProtocol"


@pytest.fixture
def cache_server(serve: Callable[..., Served]) -> Callable[..., Served]:
    def start(*flags: str) -> Served:
        return serve(TARGET, "--app-dir", str(REPO), *flags)

    return start


@pytest.fixture
def client(cache_server: Callable[..., Served]) -> Iterator[Client]:
    served = cache_server()
    pymemcache = Client((served.host, served.port), connect_timeout=10, timeout=10)
    yield pymemcache
    pymemcache.close()


def same(replies: bytes) -> bytes:
    """The one difference on purpose: the version string."""
    return VERSION_LINE.sub(b"VERSION x\r\n", replies)


# -- the real memcached --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_same_replies_as_memcached(seed: int, cache_server: Callable[..., Served]) -> None:
    """400 seeded commands, bad ones included, in one stream: byte-identical replies.

    CAS uniques are compared as they are: the example counts them as memcached
    does (one per store, counter change and flush), so they match exactly.
    """
    stream = command_stream(seed, 400)
    with real_memcached() as port:
        expected = exchange(port, stream)
    served = cache_server()
    got = exchange(served.port, stream)
    assert same(got) == same(expected)
    assert b"CLIENT_ERROR" in expected and b"STORED" in expected  # the stream did exercise
    assert "Traceback" not in served.log()


LONG_KEY = b"L" * 251
#: Sent one by one, each after the previous reply: (command, memcached's reply).
LOCKSTEP = [
    (b"set a 0 0 1\r\nz\r\n", b"STORED\r\n"),
    # memcached drops replies it still holds when a multi-get fails, so this
    # one is sent alone (the random stream never has a long key in a get).
    (b"get a " + LONG_KEY + b" a\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"gets a a\r\n", b"VALUE a 0 1 1\r\nz\r\nVALUE a 0 1 1\r\nz\r\nEND\r\n"),
    (b"get " + b"k" * 3000 + b"\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"get " + b" ".join(KEYS * 4) + b" a\r\n", b"VALUE a 0 1\r\nz\r\nEND\r\n"),
    (b"set b 0 0 1 " + b"x " * 25 + b"\r\nz\r\n", b"ERROR\r\nERROR\r\n"),
    (b"set b 0 0 3\nx\r\n\r\n", b"STORED\r\n"),
    (b"get b\n", b"VALUE b 0 3\r\nx\r\n\r\nEND\r\n"),
    (b"version\r\n", b"VERSION x\r\n"),
]


def test_one_command_at_a_time_like_memcached(cache_server: Callable[..., Served]) -> None:
    served = cache_server()
    with real_memcached() as port:
        for target in (port, served.port):
            with socket.create_connection(("127.0.0.1", target), timeout=10) as sock:
                for command, reply in LOCKSTEP:
                    sock.sendall(command)
                    got = read_until(sock, VERSION_LINE.sub(b"VERSION 1.6.18\r\n", reply))
                    if reply.startswith(b"VERSION"):
                        got += read_until(sock, b"\n") if not got.endswith(b"\n") else b""
                    assert same(got) == reply, (target, command[:40])


# -- pymemcache, unchanged -------------------------------------------------------------


def test_pymemcache_storage_and_retrieval(client: Client) -> None:
    value = b"any\r\nbyte\x00\xff at all\r\n.\r\n"
    assert client.set("k", value, noreply=False)
    assert client.get("k") == value
    assert client.add("k", b"other", noreply=False) is False
    assert client.replace("k", b"v1", noreply=False)
    assert client.append("k", b"-end", noreply=False)
    assert client.prepend("k", b"start-", noreply=False)
    assert client.get("k") == b"start-v1-end"
    assert client.replace("missing", b"x", noreply=False) is False
    client.set_many({"a": b"1", "b": b"2"}, noreply=False)
    assert client.get_many(["a", "b", "nope"]) == {"a": b"1", "b": b"2"}
    assert client.get("nope") is None


def test_pymemcache_cas(client: Client) -> None:
    client.set("c", b"one", noreply=False)
    value, unique = client.gets("c")
    assert value == b"one"
    assert client.cas("c", b"two", unique, noreply=False) is True
    assert client.cas("c", b"three", unique, noreply=False) is False  # stale
    assert client.cas("absent", b"x", unique, noreply=False) is None
    assert client.get("c") == b"two"


def test_pymemcache_counters_touch_delete_flush(client: Client) -> None:
    client.set("n", b"10", noreply=False)
    assert client.incr("n", 5, noreply=False) == 15
    assert client.decr("n", 20, noreply=False) == 0
    assert client.incr("absent", 1, noreply=False) is None
    assert client.touch("n", 100, noreply=False) is True
    assert client.touch("absent", 100, noreply=False) is False
    assert client.delete("n", noreply=False) is True
    assert client.delete("n", noreply=False) is False
    client.set("f", b"x", noreply=False)
    assert client.flush_all(noreply=False) is True
    assert client.get("f") is None
    assert client.version() == b"1.6.18-linechat-example"


def test_pymemcache_noreply_pipeline(client: Client) -> None:
    for i in range(200):
        client.set(f"key{i}", str(i).encode())  # pymemcache's default: noreply
    assert client.get_many([f"key{i}" for i in range(200)]) == {
        f"key{i}": str(i).encode() for i in range(200)
    }


def test_pymemcache_item_size_limit(client: Client) -> None:
    limit = 1024 * 1024 - 59 - 1  # memcached's -I 1m for a one-byte key, no flags
    assert client.set("x", b"v" * limit, noreply=False)
    assert client.get("x") == b"v" * limit
    with pytest.raises(MemcacheServerError, match="object too large for cache"):
        client.set("x", b"v" * (limit + 1), noreply=False)
    assert client.get("x") is None  # as memcached: a failed set drops the old value
    assert client.set("y", b"after", noreply=False)  # the connection goes on


# -- data blocks are raw reads, not lines (issue 13) -----------------------------------


@pytest.mark.parametrize("size", [1500, 3000, 200_000])
def test_value_longer_than_the_line_limit_in_the_commands_chunk(
    size: int, cache_server: Callable[..., Served]
) -> None:
    """The line limit is for command lines: a longer value sent with its command is stored.

    With a 1 KiB limit, a 1.5 or 3 KB value arrives in the read of its
    command (one ``sendall`` under the 4 KiB slice of a read), where the
    framer used to take it for an over-long line and answer ``CLIENT_ERROR
    line too long``; 200 KB comes over several reads.
    """
    served = cache_server("--max-line-length", "1024")
    value = b"\r\n" + b"v" * (size - 2)  # a "line" of the value over the limit
    with served.connect() as sock:
        sock.sendall(b"set k 5 0 %d\r\n%s\r\nget k\r\n" % (size, value))
        reply = b"STORED\r\nVALUE k 5 %d\r\n%s\r\nEND\r\n" % (size, value)
        assert read_until(sock, reply) == reply
        sock.sendall(b"get " + b"k " * 600 + b"\r\n")  # a command line over the limit
        assert read_all(sock) == b"CLIENT_ERROR line too long\r\n"
    assert "Traceback" not in served.log()


def test_storage_command_cut_by_the_end_of_stream(cache_server: Callable[..., Served]) -> None:
    """A set as the unterminated last line: no data can follow; closed, no traceback."""
    served = cache_server()
    with served.connect() as sock:
        sock.sendall(b"get a\r\nset k 0 0 5")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"END\r\n"
    assert "Traceback" not in served.log()


# -- bad input costs the others nothing ----------------------------------------------------


def test_floods_and_garbage_leave_other_clients_alone(
    cache_server: Callable[..., Served],
) -> None:
    served = cache_server()
    other = Client((served.host, served.port), connect_timeout=10, timeout=10)
    try:
        with served.connect() as flood, served.connect() as slow:
            slow.sendall(b"set slow 0 0 100000\r\n" + b"s" * 50_000)  # half a value, held
            flood.sendall(b"x" * (example.MAX_LINE_LENGTH + 1))  # no line end, all read
            assert read_all(flood) == b"CLIENT_ERROR line too long\r\n"
            assert other.set("k", b"v", noreply=False)
            assert other.get("k") == b"v"
            slow.sendall(b"s" * 50_000 + b"\r\n")
            assert read_until(slow, b"STORED\r\n") == b"STORED\r\n"
        with served.connect() as garbage:
            garbage.sendall(bytes(range(256)) * 20 + b"\r\nquit\r\n")
            assert b"Traceback" not in read_all(garbage)
        assert other.get("slow") == b"s" * 100_000
    finally:
        other.close()
    assert "Traceback" not in served.log()


# -- the example's own rules (no memcached needed) -------------------------------------


def test_counter_is_rewritten_in_place_with_padding(client: Client) -> None:
    """memcached's usual way: a shorter result keeps the item's length, spaces after."""
    client.set("n", b"100", noreply=False)
    assert client.decr("n", 95, noreply=False) == 5
    assert client.get("n") == b"5  "
    assert client.incr("n", 995, noreply=False) == 1000
    assert client.get("n") == b"1000"


def test_cache_memory_is_bounded() -> None:
    cache = Cache(max_bytes=10_000)
    for i in range(1000):
        cache.put(b"key%d" % i, example.Item(b"v" * 100, 0, 0.0, cache.next_cas()))
        assert cache.size <= 10_000
    assert cache.get(b"key999") is not None  # the newest stay
    assert cache.get(b"key0") is None  # the oldest went first


def test_delayed_flush_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("examples.memcache.time.monotonic", lambda: now[0])
    cache = Cache()
    cache.put(b"old", example.Item(b"1", 0, 0.0, cache.next_cas()))
    cache.put(b"short", example.Item(b"1", 0, deadline(5), cache.next_cas()))
    cache.flush(10)
    assert cache.get(b"old") is not None and cache.get(b"short") is not None
    now[0] += 6
    assert cache.get(b"short") is None  # expired
    now[0] += 5
    assert cache.get(b"old") is None  # flushed at the deadline
    cache.put(b"new", example.Item(b"1", 0, 0.0, cache.next_cas()))
    assert cache.get(b"new") is not None


def test_protocol_class_is_a_line_protocol() -> None:
    assert issubclass(MemcacheProtocol, LineProtocol)
    assert MemcacheProtocol.max_item_size == 1024 * 1024
