"""The Redis backplane's event codec, without Redis."""

from __future__ import annotations

import pytest

pytest.importorskip("redis")

from linechat.services.chat.redis_backplane import decode_event, encode_event


def test_round_trip_keeps_spaces_in_the_last_field() -> None:
    raw = encode_event(b"PART", b"abc123", b"nick", b"#chan", b"gone for lunch :)")
    assert raw == b"PART abc123 nick #chan gone for lunch :)"
    assert decode_event(raw) == (b"PART", b"abc123", [b"nick", b"#chan", b"gone for lunch :)"])


def test_a_channel_line_passes_through_byte_for_byte() -> None:
    line = ":a!~u@h PRIVMSG #c :héllo \xff".encode("utf-8", "surrogateescape")
    assert decode_event(encode_event(b"MSG", b"id", b"#c", line)) == (b"MSG", b"id", [b"#c", line])


def test_empty_last_field_and_no_fields() -> None:
    assert decode_event(b"QUIT id nick ") == (b"QUIT", b"id", [b"nick", b""])
    assert decode_event(b"HELLO id") == (b"HELLO", b"id", [])


@pytest.mark.parametrize(
    "raw", [b"", b"UNKNOWN id x", b"JOIN id", b"JOIN id nick", b"USER id a b c", b"HELLO"]
)
def test_unknown_or_short_events_are_skipped(raw: bytes) -> None:
    assert decode_event(raw) is None
