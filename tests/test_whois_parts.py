"""The WHOIS service's sans-I/O parts: query rules, data loading, the rate limiter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linechat import ServiceError
from linechat.services.rate_limit import RateLimiter, client_key, parse_rate
from linechat.services.whois import WhoisDatabase, error_answer
from linechat.services.whois_data import encode_answer, load_records
from linechat.services.whois_query import (
    MAX_QUERY_BYTES,
    QueryError,
    lookup_key,
    normalise_query,
)

# -- queries -----------------------------------------------------------------


def test_query_is_stripped_text() -> None:
    assert normalise_query(b"  Example.COM ") == "Example.COM"
    assert normalise_query("bücher.de".encode()) == "bücher.de"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "empty query"),
        (b"   ", "empty query"),
        (b"a" * (MAX_QUERY_BYTES + 1), f"query longer than {MAX_QUERY_BYTES} bytes"),
        (b"a\x00b", "query contains control characters"),
        (b"a\tb", "query contains control characters"),
        (b"a\rb", "query contains control characters"),
        (b"a\x7fb", "query contains control characters"),
        ("a\u0085b".encode(), "query contains control characters"),
        (b"\xff\xfe", "query is not valid UTF-8"),
    ],
)
def test_bad_queries(line: bytes, reason: str) -> None:
    with pytest.raises(QueryError, match=f"^{reason}$"):
        normalise_query(line)


def test_keys_fold_case_like_unicode() -> None:
    assert lookup_key("STRASSE.example") == lookup_key("straße.example")


def test_longest_query_is_accepted() -> None:
    assert normalise_query(b"a" * MAX_QUERY_BYTES) == "a" * MAX_QUERY_BYTES


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_text_or_query_error(line: bytes) -> None:
    try:
        text = normalise_query(line)
    except QueryError as exc:
        assert str(exc)
    else:
        assert text and text == text.strip(" ")
        assert len(text.encode()) <= MAX_QUERY_BYTES
        assert not any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in text)


# -- data --------------------------------------------------------------------


def test_answers_end_every_line_in_crlf() -> None:
    assert encode_answer("a\nb\r\nc") == b"a\r\nb\r\nc\r\n"
    assert encode_answer("a\n") == b"a\r\n"


def test_directory_of_files(tmp_path: Path) -> None:
    (tmp_path / "Example.COM").write_text("domain: example.com\nstatus: active\n")
    (tmp_path / "AS64500").write_text("aut-num: AS64500\n")
    (tmp_path / ".hidden").write_text("skipped")
    (tmp_path / "sub").mkdir()
    records = load_records(tmp_path)
    assert records == {
        "example.com": b"domain: example.com\r\nstatus: active\r\n",
        "as64500": b"aut-num: AS64500\r\n",
    }


def test_toml_strings_and_tables(tmp_path: Path) -> None:
    data = tmp_path / "records.toml"
    data.write_text(
        '"example.com" = """\ndomain: example.com\n"""\n'
        '[AS64500]\naut-num = "AS64500"\nmnt-by = ["A", "B"]\nsince = 2001\n'
    )
    assert load_records(data) == {
        "example.com": b"domain: example.com\r\n",
        "as64500": b"aut-num: AS64500\r\nmnt-by: A\r\nmnt-by: B\r\nsince: 2001\r\n",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not = [toml", "is not valid TOML"),
        (b"\xff = 1", "is not UTF-8"),
        (b"x = 1", "record 'x' must be a string or a table"),
        (b"[x]\ny = {z = 1}", "field 'y' must be text or numbers"),
        (b'a = "1"\nA = "2"', "'a' and 'A' are the same key"),
    ],
)
def test_bad_toml_names_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    data = tmp_path / "records.toml"
    data.write_bytes(content)
    with pytest.raises(ServiceError, match=message) as info:
        load_records(data)
    assert str(data) in str(info.value)


def test_file_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "good").write_text("ok")
    (tmp_path / "bad").write_bytes(b"caf\xe9")
    with pytest.raises(ServiceError, match="bad' is not UTF-8"):
        load_records(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="no such file or directory"):
        load_records(tmp_path / "nowhere")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.write_text("x")
    locked.chmod(0)
    with pytest.raises(ServiceError, match=r"cannot read WHOIS data .*locked"):
        load_records(tmp_path)


def test_database_answers_and_keeps_old_data_when_reload_fails(tmp_path: Path) -> None:
    (tmp_path / "one").write_text("first")
    database = WhoisDatabase(tmp_path)
    assert database.answer(b"ONE") == b"first\r\n"
    assert database.answer(b"two") == b'% No match for "two".\r\n'
    assert database.answer(b"a\x01") == error_answer("query contains control characters")
    (tmp_path / "two").write_text("second")
    assert database.reload()
    assert database.answer(b"two") == b"second\r\n"
    (tmp_path / "three").write_bytes(b"\xff")
    assert not database.reload()
    assert database.answer(b"two") == b"second\r\n"


# -- rate limit ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    assert all(limiter.allow("a") for _ in range(60))
    assert not limiter.allow("a")
    assert limiter.allow("b")  # another client is not affected
    clock.now += 1.0  # one query a second refills
    assert limiter.allow("a")
    assert not limiter.allow("a")
    clock.now += 120.0  # never more than the burst
    assert sum(limiter.allow("a") for _ in range(100)) == 60


def test_rate_table_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock, max_clients=100)
    for client in range(10_000):
        limiter.allow(client)
        assert len(limiter) <= 100
    for _ in range(10):
        limiter.allow("busy")
    assert not limiter.allow("busy")  # a recent client is remembered
    clock.now += 3600
    for client in range(10_000, 10_099):
        limiter.allow(client)  # refilled buckets go first
    assert len(limiter) <= 100


@pytest.mark.parametrize(
    ("text", "per_minute"),
    [("60/minute", 60.0), ("60", 60.0), ("2/second", 120.0), ("120/hour", 2.0), ("0", 0.0)],
)
def test_parse_rate(text: str, per_minute: float) -> None:
    assert parse_rate(text) == per_minute


@pytest.mark.parametrize("text", ["", "x/minute", "-1/minute", "5/fortnight", "inf", "nan"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="rate must look like"):
        parse_rate(text)


def test_client_key() -> None:
    assert client_key(("192.0.2.1", 4000)) == "192.0.2.1"
    assert client_key(("::ffff:192.0.2.1", 4000, 0, 0)) == "192.0.2.1"
    same = client_key(("2001:db8::1", 1, 0, 0))
    assert same == client_key(("2001:db8::ffff:2", 2, 0, 0))
    assert same != client_key(("2001:db8:0:1::1", 1, 0, 0))
    assert client_key(None) == client_key("") == "local"
