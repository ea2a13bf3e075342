"""Pipe mode's bulk line-end conversions, chunk by chunk, against a one-shot reference."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linechat.client import newlines
from linechat.client.pipe import LineEnds, ReceivedEnds

# Bytes rich in line-end characters, so CRs land everywhere: before LF, alone, last.
streams = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"bc", b"\x00"]), max_size=40)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def one_shot(data: bytes, *, last_cr_ends_line: bool = False) -> bytes:
    """Lines ended by CRLF or LF, ended with LF; a last CR is kept (or ends the line)."""
    if data.endswith(b"\r"):
        return data[:-1].replace(b"\r\n", b"\n") + (b"\n" if last_cr_ends_line else b"\r\n")
    out = data.replace(b"\r\n", b"\n")
    return out + b"\n" if out and not out.endswith(b"\n") else out


def convert_all(ends: LineEnds | ReceivedEnds, pieces: Iterable[bytes]) -> bytes:
    """Every piece through ``ends``, in order, and what it holds at the end."""
    return b"".join(ends.convert(piece) for piece in pieces) + ends.finish()


@contextmanager
def bulk_check() -> Iterator[None]:
    """Chunks of any size checked for lone CRs as big ones are (the compiled pattern)."""
    small = newlines.SMALL
    newlines.SMALL = 0
    try:
        yield
    finally:
        newlines.SMALL = small


#: Chunks checked as their size has them checked, then all as big ones are.
SIZE_CHECKS = pytest.mark.parametrize(
    "checked", [nullcontext, bulk_check], ids=["by-size", "bulk-check"]
)


@SIZE_CHECKS
@given(streams, st.lists(st.integers(min_value=0, max_value=80), max_size=6))
def test_received_ends_match_one_shot(
    checked: Callable[[], AbstractContextManager[None]], parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    with checked():
        out = convert_all(ReceivedEnds(), chunked(data, cuts))
    assert out == one_shot(data)


@SIZE_CHECKS
@given(streams, st.lists(st.integers(min_value=0, max_value=80), max_size=6))
def test_input_ends_become_crlf(
    checked: Callable[[], AbstractContextManager[None]], parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    with checked():
        out = convert_all(LineEnds(b"\r\n"), chunked(data, cuts))
    assert out == one_shot(data, last_cr_ends_line=True).replace(b"\n", b"\r\n")


def test_lone_cr_is_kept_and_crlf_is_not_doubled() -> None:
    ends = ReceivedEnds()
    assert ends.convert(b"You sent: a\r\nb\rc\r\n") == b"You sent: a\nb\rc\n"
    assert ends.convert(b"only\r\ncrlf\r\n") == b"only\ncrlf\n"


def big_stream(ends: list[bytes], lines: int = 20_000, seed: int = 7) -> bytes:
    """Short lines, each ended by one of ``ends`` at random."""
    pick = random.Random(seed).choice
    return b"".join(b"line %d%s" % (number, pick(ends)) for number in range(lines))


@pytest.mark.parametrize(
    "ends",
    [[b"\n"], [b"\r\n"], [b"\r\n", b"\n"], [b"\r\n", b"\r"], [b"\r\n", b"\n", b"\r", b"\r\r\n"]],
    ids=["bare LF", "CRLF", "mixed", "CRLF and lone CR", "all"],
)
@pytest.mark.parametrize("size", [1000, newlines.SMALL, newlines.SMALL + 1, 65536, 256 * 1024])
def test_big_chunks_both_ways(ends: list[bytes], size: int) -> None:
    """Chunks on both sides of the size where the check changes, cut anywhere (mid CRLF too)."""
    data = big_stream(ends)
    cut = random.Random(size).randrange
    pieces, start = [], 0
    while start < len(data):
        end = start + size - cut(7)  # a size near ``size``: ends fall on CR, LF, anything
        pieces.append(data[start:end])
        start = end
    assert convert_all(ReceivedEnds(), pieces) == one_shot(data)
    crlf = one_shot(data, last_cr_ends_line=True).replace(b"\n", b"\r\n")
    assert convert_all(LineEnds(b"\r\n"), pieces) == crlf


def test_a_big_chunk_ending_in_two_crs_keeps_the_first() -> None:
    ends = ReceivedEnds()
    body = b"x\r\n" * newlines.SMALL
    assert ends.convert(body + b"a\r\r") == b"x\n" * newlines.SMALL + b"a\r"
    assert ends.convert(b"\nb\r\n") == b"\nb\n"
