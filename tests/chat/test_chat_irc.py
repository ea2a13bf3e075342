"""The sans-I/O IRC parser, formatter and name rules, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linechat.services.chat.irc import (
    MAX_PARAMS,
    IRCParseError,
    Message,
    casefold,
    fit_text,
    format_message,
    parse,
    valid_channel,
    valid_nick,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"NICK alice", Message(None, b"NICK", [b"alice"])),
        (b"privmsg #c :hello world", Message(None, b"PRIVMSG", [b"#c", b"hello world"])),
        (b":a!b@c PRIVMSG #c ::-)", Message(b"a!b@c", b"PRIVMSG", [b"#c", b":-)"])),
        (b"USER u 0 * :Real Name", Message(None, b"USER", [b"u", b"0", b"*", b"Real Name"])),
        (b"TOPIC #c :", Message(None, b"TOPIC", [b"#c", b""])),
        (b"JOIN   #a,#b   key", Message(None, b"JOIN", [b"#a,#b", b"key"])),
        (b"  PING x", Message(None, b"PING", [b"x"])),
        (b"@time=x PING :y", Message(None, b"PING", [b"y"])),
        (b"001 me :hi", Message(None, b"001", [b"me", b"hi"])),
        ("PRIVMSG #c :héllo ✓".encode(), Message(None, b"PRIVMSG", [b"#c", "héllo ✓".encode()])),
        (b"PRIVMSG #c :\xff\xfe raw", Message(None, b"PRIVMSG", [b"#c", b"\xff\xfe raw"])),
    ],
)
def test_parse(line: bytes, expected: Message) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize("line", [b"", b"   ", b"@tags-only"])
def test_empty_lines_are_none(line: bytes) -> None:
    assert parse(line) is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b":prefix", "a prefix and no command"),
        (b":prefix   ", "a prefix and no command"),
        (b"PR1VMSG x", "not a command"),
        (b"12 x", "not a command"),
        (b"\x00 x", "not a command"),
        (b"caf\xc3\xa9 x", "not a command"),
    ],
)
def test_parse_errors(line: bytes, reason: str) -> None:
    with pytest.raises(IRCParseError) as caught:
        parse(line)
    assert caught.value.reason == reason


def test_more_than_15_params_fold_into_the_last() -> None:
    message = parse(b"CMD " + b" ".join(b"p%d" % i for i in range(20)))
    assert message is not None
    assert len(message.params) == MAX_PARAMS
    assert message.params[-1] == b" ".join(b"p%d" % i for i in range(14, 20))


def test_casefold_rfc1459() -> None:
    assert casefold(b"Nick[]\\~") == b"nick{}|^"
    assert casefold(b"#Chan") == b"#chan"
    assert casefold("É".encode()) == "É".encode()  # only ASCII folds


@pytest.mark.parametrize("nick", [b"alice", b"[bot]", b"a-1", b"_x_", b"x" * 30, b"`^{|}"])
def test_valid_nicks(nick: bytes) -> None:
    assert valid_nick(nick)


@pytest.mark.parametrize("nick", [b"", b"1abc", b"-x", b"a b", b"a!b", b"a@b", b"#x", b"x" * 31])
def test_invalid_nicks(nick: bytes) -> None:
    assert not valid_nick(nick)


@pytest.mark.parametrize("name", [b"#a", "#ünïcode".encode(), b"#" + b"x" * 49])
def test_valid_channels(name: bytes) -> None:
    assert valid_channel(name)


@pytest.mark.parametrize(
    "name", [b"#", b"a", b"&x", b"#a b", b"#a,b", b"#a:b", b"#\x07", b"#" * 51]
)
def test_invalid_channels(name: bytes) -> None:
    assert not valid_channel(name)


def test_format_message() -> None:
    assert format_message(b"srv", b"001", b"me", b"Welcome home") == b":srv 001 me :Welcome home"
    assert format_message(None, b"PING", b"x") == b"PING :x"
    assert format_message(b"s", b"004", b"me", b"s", b"v", trailing=False) == b":s 004 me s v"
    assert format_message(b"s", b"QUIT") == b":s QUIT"


def test_fit_text_keeps_whole_characters() -> None:
    text = "aé✓".encode()  # 1 + 2 + 3 bytes
    assert [fit_text(text, n) for n in range(7)] == [
        b"",
        b"a",
        b"a",
        "aé".encode(),
        "aé".encode(),
        "aé".encode(),
        text,
    ]


words = st.binary(min_size=1, max_size=8).filter(lambda w: b" " not in w and not w.startswith(b":"))


@settings(deadline=None)
@given(
    command=st.sampled_from([b"PRIVMSG", b"NICK", b"JOIN", b"001"]),
    middle=st.lists(words, max_size=5),
    trailing=st.binary(max_size=40),
)
def test_format_then_parse_round_trips(
    command: bytes, middle: list[bytes], trailing: bytes
) -> None:
    line = format_message(b"p!u@h", command, *middle, trailing)
    assert parse(line) == Message(b"p!u@h", command, [*middle, trailing])


@settings(deadline=None)
@given(st.binary(max_size=600))
def test_any_line_parses_or_fails_cleanly(line: bytes) -> None:
    try:
        message = parse(line)
    except IRCParseError as exc:
        assert exc.reason
    else:
        if message is not None:
            assert message.command
            assert len(message.params) <= MAX_PARAMS
