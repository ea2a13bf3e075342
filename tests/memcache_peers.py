"""Helpers for the memcache example's tests: the seeded command stream and its exchange.

The real memcached they compare with is ``tests.peers.real_memcached``.
"""

from __future__ import annotations

import random
import re
import socket
import threading

#: What is not the same between two servers by design: their version string.
VERSION_LINE = re.compile(rb"^VERSION [^\r\n]*\r\n", re.MULTILINE)


def exchange(port: int, stream: bytes, timeout: float = 30.0) -> bytes:
    """Send ``stream`` (read concurrently, so neither side blocks), then EOF; all replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:

        def send() -> None:
            try:
                sock.sendall(stream)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server closed first (quit): what it answered is compared

        sender = threading.Thread(target=send)
        sender.start()
        replies = bytearray()
        try:
            while chunk := sock.recv(1 << 20):
                replies += chunk
        except ConnectionResetError:
            pass
        sender.join(timeout)
        return bytes(replies)


# -- the seeded command stream ------------------------------------------------------

KEYS = [b"k0", b"k1", b"k2", b"k3", b"n0", b"n1", b"t\tab", b"\xc3\xa9", b"K" * 250]
LONG_KEY = b"L" * 251
# No stored counter of 2**63 or more: memcached then looks for a '-' with
# strchr() past the value's end, into whatever memory follows it.
NUMBERS = [b"0", b"5", b"7 ", b"  9", b"9223372036854775807", b"-3", b"12abc", b"", b"-0"]
FLAGS = [b"0", b"0", b"1", b"42", b"4294967295", b"4294967296", b"-1", b"+5", b"x", b"007"]
EXPTIMES = [b"0", b"0", b"0", b"100", b"-1", b"2000000000", b"1000000000", b"x", b"2592000"]
DELTAS = [b"1", b"5", b"100", b"0", b"18446744073709551615", b"18446744073709551616", b"-1", b"x"]
GARBAGE = [
    b"zzz",
    b"GET k0",
    b"sets k0",
    b"x",
    b"",
    b"   ",
    b"get",
    b"gets",
    b"set",
    b"set k0",
    b"set k0 0 0",
    b"cas k0 0 0 1",
    b"incr",
    b"incr k0",
    b"touch k0",
    b"delete",
    b"delete k0 0 0 0",
    b"flush_all 1 2 3",
    b"zz \x01\x02\xff",
    b"get k0\x00k1",
    b"set k0 0 0 1 " + b" ".join([b"x"] * 25),
    b"deleted k0",
    b"increment k0 1",
]
DELETES = [b"", b" 0", b" noreply", b" 0 noreply", b" 1", b" x noreply", b" 0 x"]
FLUSHES = [b"flush_all", b"flush_all 0", b"flush_all noreply", b"flush_all -5", b"flush_all x"]
# No delayed flush: memcached flushes lazily, and a later delayed flush_all
# brings back items an earlier flush hid unless something (its background LRU
# crawler, a read) removed them meanwhile: timing again.
FLUSHES += [b"flush_all x noreply", b"flush_all 0 0", b"flush_all 0 noreply"]


def _value(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(NUMBERS)
    if kind < 0.5:
        return b"a\r\nb\r\n" * rng.randint(0, 3)  # CRLF inside a value
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))


def _key(rng: random.Random) -> bytes:
    return LONG_KEY if rng.random() < 0.04 else rng.choice(KEYS)


def _noreply(rng: random.Random) -> bytes:
    return b" noreply" if rng.random() < 0.2 else b""


def command(rng: random.Random, big_budget: list[int]) -> bytes:
    """One command (with its data block) of the differential stream."""
    pick = rng.random()
    end = b"\n" if rng.random() < 0.1 else b"\r\n"  # memcached also takes a bare LF
    space = b"  " if rng.random() < 0.05 else b" "
    if pick < 0.40:
        verb = rng.choice([b"set", b"set", b"add", b"replace", b"append", b"prepend", b"cas"])
        value = _value(rng)
        length = str(len(value)).encode()
        data = value + b"\r\n"
        odd = rng.random()
        if odd < 0.05:
            length = str(max(0, len(value) + rng.choice([-2, -1, 1, 2]))).encode()
        elif odd < 0.08:
            length = rng.choice([b"-1", b"x", b"2147483646"])
        elif odd < 0.10:
            data = value + rng.choice([b"\n", b"\r", b"xy", b""])
        parts = [verb, _key(rng), rng.choice(FLAGS), rng.choice(EXPTIMES), length]
        if verb == b"cas":
            parts.append(rng.choice([b"x", *(str(rng.randint(1, 60)).encode() for _ in range(9))]))
        line = space.join(parts) + _noreply(rng)
        if rng.random() < 0.03:
            line += b" extra"
        return line + end + data
    if pick < 0.43 and big_budget[0] > 0:
        # Around memcached's -I limit (item_size() must agree to the byte), or far past it.
        big_budget[0] -= 1
        edge = 1024 * 1024 - 59 - 3
        size = rng.choice([edge - 1, edge, edge + 1, 2 * 1024 * 1024])
        verb = rng.choice([b"set", b"set", b"add"])
        # Short lines inside: if an earlier wrong length shifted the stream, the
        # value is read as commands, and no line is over memcached's 2048 bytes
        # (it drops such a peer, losing unsent replies: timing, not protocol).
        value = (b"v" * 1022 + b"\r\n") * (size // 1024) + b"w" * (size % 1024)
        return b"%s big 0 0 %d%s\r\n" % (verb, size, _noreply(rng)) + value + b"\r\n"
    if pick < 0.65:
        verb = rng.choice([b"get", b"gets"])
        count = 30 if rng.random() < 0.05 else rng.randint(1, 4)
        # Never a key over 250 bytes here: memcached then drops the replies it
        # still holds for earlier commands of the same read, which depends on
        # how the stream was cut into reads (the lockstep test covers the key).
        keys = [rng.choice(KEYS) for _ in range(count)]
        if rng.random() < 0.1:
            keys.append(b"big")
        return verb + b" " + space.join(keys) + end
    if pick < 0.72:
        return b"delete " + _key(rng) + rng.choice(DELETES) + end
    if pick < 0.82:
        verb = rng.choice([b"incr", b"decr"])
        key = rng.choice([b"n0", b"n1", b"n1", b"k0", b"nokey"])
        line = space.join([verb, key, rng.choice(DELTAS)]) + _noreply(rng) + end
        # A shorter result is written in place, padded with spaces, unless a
        # reply memcached has not sent yet (or its LRU maintainer) holds the
        # item: then it is a new item, unpadded. That is timing, so the counter
        # is overwritten at once: the reply is compared, the padding is not
        # (test_counter_padding checks the example's, which is memcached's usual).
        value = rng.choice(NUMBERS)
        return line + b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value)
    if pick < 0.87:
        return b"touch " + _key(rng) + b" " + rng.choice(EXPTIMES) + _noreply(rng) + end
    if pick < 0.89:
        return rng.choice(FLUSHES) + end
    if pick < 0.91:
        return b"version" + end
    return rng.choice(GARBAGE) + end


def command_stream(seed: int, count: int, big: int = 2) -> bytes:
    """``count`` seeded commands, then quit: the same bytes for both servers."""
    rng = random.Random(seed)
    budget = [big]
    return b"".join(command(rng, budget) for _ in range(count)) + b"quit\r\n"
