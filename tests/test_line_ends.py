"""Pipe mode's bulk line-end conversions, chunk by chunk, against a one-shot reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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


@given(streams, st.lists(st.integers(min_value=0, max_value=80), max_size=6))
def test_received_ends_match_one_shot(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    ends = ReceivedEnds()
    out = b"".join(ends.convert(chunk) for chunk in chunked(data, cuts)) + ends.finish()
    assert out == one_shot(data)


@given(streams, st.lists(st.integers(min_value=0, max_value=80), max_size=6))
def test_input_ends_become_crlf(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    ends = LineEnds(b"\r\n")
    out = b"".join(ends.convert(chunk) for chunk in chunked(data, cuts)) + ends.finish()
    assert out == one_shot(data, last_cr_ends_line=True).replace(b"\n", b"\r\n")


def test_lone_cr_is_kept_and_crlf_is_not_doubled() -> None:
    ends = ReceivedEnds()
    assert ends.convert(b"You sent: a\r\nb\rc\r\n") == b"You sent: a\nb\rc\n"
    assert ends.convert(b"only\r\ncrlf\r\n") == b"only\ncrlf\n"
