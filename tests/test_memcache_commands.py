"""The memcache example's sans-I/O command parser: memcached 1.6's rules, quirks included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.memcache_commands import (
    BAD_FORMAT,
    ERROR,
    Arithmetic,
    Command,
    Delete,
    Error,
    FlushAll,
    Quit,
    Retrieve,
    Storage,
    Touch,
    Version,
    item_size,
    parse,
    parse_counter,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"set k 1 2 3", Storage(b"set", b"k", 1, 2, 3, 0, False)),
        (b"  cas  k 0 0 3 99 noreply", Storage(b"cas", b"k", 0, 0, 3, 99, True)),
        (b"set k 0 0 1 anything", Storage(b"set", b"k", 0, 0, 1, 0, False)),
        (b"set k 4294967296 0 1", Storage(b"set", b"k", 0, 0, 1, 0, False)),  # flags wrap
        (b"set k +5 -0 007", Storage(b"set", b"k", 5, 0, 7, 0, False)),
        (b"set k 0 2147483648 1", Storage(b"set", b"k", 0, -(2**31), 1, 0, False)),
        (b"get a b\tc", Retrieve([b"a", b"b\tc"], False)),
        (b"gets a", Retrieve([b"a"], True)),
        (b"get a\x00 b", Retrieve([b"a"], False)),  # a NUL ends the line
        (b"incr k 18446744073709551615", Arithmetic(b"k", 2**64 - 1, True, False)),
        (b"decr k 1 noreply", Arithmetic(b"k", 1, False, True)),
        (b"delete k", Delete(b"k", False)),
        (b"delete k 0", Delete(b"k", False)),
        (b"delete k noreply", Delete(b"k", True)),
        (b"delete k 0 noreply", Delete(b"k", True)),
        (b"touch k -1", Touch(b"k", -1, False)),
        (b"flush_all", FlushAll(0, False)),
        (b"flush_all 0 0", FlushAll(0, False)),
        (b"flush_all 10 noreply", FlushAll(10, True)),
        (b"version whatever", Version()),
        (b"quit", Quit()),
    ],
)
def test_commands(line: bytes, command: Command) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"", ERROR),
        (b"x", ERROR),
        (b"GET a", ERROR),
        (b"gat 0 a", ERROR),  # not implemented: gat, gats, stats, meta commands
        (b"stats", ERROR),
        (b"mg a v", ERROR),
        (b"get", ERROR),
        (b"set k 0 0", ERROR),
        (b"set k 0 0 1 noreply extra", ERROR),
        (b"set k 0 0 1 " + b"x " * 25, ERROR),  # past 23 tokens
        (b"set " + b"k" * 251 + b" 0 0 1", BAD_FORMAT),
        (b"get a " + b"k" * 251, BAD_FORMAT),
        (b"set k x 0 1", BAD_FORMAT),
        (b"set k -1 0 1", BAD_FORMAT),
        (b"set k 0 0 -1", BAD_FORMAT),
        (b"set k 0 0 2147483646", BAD_FORMAT),
        (b"cas k 0 0 1 x", BAD_FORMAT),
        (b"incr k -1", b"CLIENT_ERROR invalid numeric delta argument"),
        (b"incr k 18446744073709551616", b"CLIENT_ERROR invalid numeric delta argument"),
        (b"touch k x", b"CLIENT_ERROR invalid exptime argument"),
        (b"flush_all x", b"CLIENT_ERROR invalid exptime argument"),
        (b"flush_all 1 2 3", ERROR),
        (b"delete k 1", b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"),
        (b"set k x 0 1 noreply", None),  # noreply silences errors too
        (b"delete k x noreply", None),
        (b"incr k x noreply", None),
    ],
)
def test_errors(line: bytes, reply: bytes | None) -> None:
    assert parse(line) == Error(reply)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (b"5", 5),
        (b"  9", 9),
        (b"7 ", 7),
        (b"5 6", 5),
        (b"-0", 0),
        (b"+3", 3),
        (b"-3", None),
        (b"12abc", None),
        (b"", None),
        (b"99999999999999999999", None),
        (b"18446744073709551615", 2**64 - 1),
        (b"4\x00junk", 4),
    ],
)
def test_counter_values(value: bytes, number: int | None) -> None:
    assert parse_counter(value) == number


def test_item_size_is_memcacheds() -> None:
    # memcached -I 1m stores a 1,048,516-byte value under a 1-byte key, not one byte more.
    assert item_size(1, 1_048_516, 0) == 1024 * 1024
    assert item_size(1, 1_048_512, 5) == 1024 * 1024


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_line_parses_to_a_command(line: bytes) -> None:
    command = parse(line.replace(b"\n", b""))
    assert isinstance(
        command, (Error, Storage, Retrieve, Delete, Arithmetic, Touch, FlushAll, Version, Quit)
    )
