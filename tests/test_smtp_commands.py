"""The smtp-sink's command parser: lines in, commands or the exact error reply out."""

from __future__ import annotations

import pytest

from linechat.services.smtp_sink.commands import (
    MAX_COMMAND_LENGTH,
    MailFrom,
    SmtpError,
    parse_command,
    parse_helo,
    parse_mail,
    parse_rcpt,
)


def reply_of(call: object, *args: object) -> bytes:
    assert callable(call)
    with pytest.raises(SmtpError) as info:
        call(*args)
    return info.value.reply


def test_command_verb_is_upper_cased_and_argument_trimmed() -> None:
    command = parse_command(b"mail FROM:<a@b.c>  ")
    assert command.verb == b"MAIL"
    assert command.arg == b"FROM:<a@b.c>"
    assert parse_command(b"DATA").arg == b""
    assert parse_command(b"").verb == b""


@pytest.mark.parametrize(
    "line", [b"HELO a\nMAIL FROM:<x@y>", b"RCPT TO:<a@b>\r", b"NOOP \x00", b"QUIT\x7f", b"\tNOOP"]
)
def test_control_bytes_are_refused(line: bytes) -> None:
    assert reply_of(parse_command, line) == b"500 5.5.2 Error: control characters in command"


def test_over_long_command_is_refused() -> None:
    assert parse_command(b"NOOP " + b"x" * (MAX_COMMAND_LENGTH - 5)).verb == b"NOOP"
    line = b"NOOP " + b"x" * (MAX_COMMAND_LENGTH - 4)
    assert reply_of(parse_command, line) == b"500 5.5.2 Error: line too long"


def test_helo_takes_one_printable_token() -> None:
    assert parse_helo(b"client.example", b"EHLO") == b"client.example"
    assert parse_helo(b"[192.0.2.1]", b"HELO") == b"[192.0.2.1]"
    assert parse_helo("bücher.example".encode(), b"EHLO") == "bücher.example".encode()
    for bad in (b"", b"two words", b"\xff\xfe", b"x" * 256):
        assert reply_of(parse_helo, bad, b"EHLO") == b"501 5.5.4 Syntax: EHLO hostname"


def test_mail_from_plain_and_lenient_space() -> None:
    assert parse_mail(b"FROM:<a@b.example>") == MailFrom(b"a@b.example")
    assert parse_mail(b"from: <a@b.example>").address == b"a@b.example"
    assert parse_mail(b"FROM:<>").address == b""


def test_mail_from_parameters() -> None:
    mail = parse_mail(b"FROM:<a@b.c> SIZE=1000 body=8bitmime SMTPUTF8")
    assert mail == MailFrom(b"a@b.c", 1000, b"8BITMIME", True)
    assert parse_mail(b"FROM:<a@b.c>   BODY=7BIT").body == b"7BIT"


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        (b"FROM:a@b.c", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"TO:<a@b.c>", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"FROM:<a@b.c", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"FROM:<a@b.c>SIZE=1", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"FROM:<a<b@c.d>", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        (b"FROM:<a@b.c> SIZE=x", b"501 5.5.4 Bad SIZE parameter (SIZE=<bytes>)"),
        (b"FROM:<a@b.c> SIZE", b"501 5.5.4 Bad SIZE parameter (SIZE=<bytes>)"),
        (
            b"FROM:<a@b.c> BODY=BINARYMIME",
            b"501 5.5.4 Bad BODY parameter (BODY=7BIT or BODY=8BITMIME)",
        ),
        (b"FROM:<a@b.c> SMTPUTF8=yes", b"501 5.5.4 SMTPUTF8 takes no value"),
        (b"FROM:<a@b.c> SIZE=1 size=2", b"501 5.5.4 Parameter given twice: SIZE"),
        (b"FROM:<a@b.c> =x", b"501 5.5.4 Bad parameter syntax (KEYWORD or KEYWORD=value)"),
        (b"FROM:<a@b.c> RET=FULL", b"555 5.5.4 Unsupported MAIL parameter RET"),
        (b"FROM:<nobody>", b"501 5.1.7 Bad sender address syntax"),
        (b"FROM:<@b.c>", b"501 5.1.7 Bad sender address syntax"),
        (b"FROM:<a@>", b"501 5.1.7 Bad sender address syntax"),
        (b"FROM:<a b@c.d>", b"501 5.1.7 Bad sender address syntax"),
        (b"FROM:<a@b..c>", b"501 5.1.7 Bad sender address syntax"),
        (b"FROM:<a@-b.c>", b"501 5.1.7 Bad sender address syntax"),
        (b"FROM:<\xff@b.c> SMTPUTF8", b"501 5.1.7 Bad sender address syntax"),
        (
            "FROM:<jörg@b.c>".encode(),
            b"553 5.6.7 Non-ASCII address needs SMTPUTF8 (MAIL FROM:<...> SMTPUTF8)",
        ),
        (b"FROM:<" + b"a" * 251 + b"@b.c>", b"501 5.1.0 Address too long"),
    ],
)
def test_mail_from_errors(arg: bytes, reply: bytes) -> None:
    assert reply_of(parse_mail, arg) == reply


def test_mail_from_odd_but_valid_addresses() -> None:
    assert parse_mail(b'FROM:<"john > doe"@b.c>').address == b'"john > doe"@b.c'
    assert parse_mail(b'FROM:<"a\\"b"@b.c>').address == b'"a\\"b"@b.c'
    assert parse_mail(b"FROM:<@relay.example,@r2.example:a@b.c>").address == b"a@b.c"
    assert parse_mail(b"FROM:<a@[192.0.2.1]>").address == b"a@[192.0.2.1]"
    assert parse_mail(b"FROM:<a@[IPv6:2001:db8::1]>").address == b"a@[IPv6:2001:db8::1]"
    assert parse_mail(b"FROM:<o'brien+tag@b.c>").address == b"o'brien+tag@b.c"
    longest = b"a" * 250 + b"@b.c"  # 256 bytes with its brackets: RFC 5321's limit
    assert parse_mail(b"FROM:<" + longest + b">").address == longest
    utf8 = "jörg@bücher.example".encode()
    assert parse_mail(b"FROM:<" + utf8 + b"> SMTPUTF8") == MailFrom(utf8, smtputf8=True)


def test_rcpt_to() -> None:
    assert parse_rcpt(b"TO:<x@y.z>", False) == b"x@y.z"
    assert parse_rcpt(b"to: <Postmaster>", False) == b"Postmaster"
    assert parse_rcpt("TO:<ü@y.z>".encode(), True) == "ü@y.z".encode()
    assert reply_of(parse_rcpt, b"TO:<>", False) == b"501 5.1.3 Bad recipient address syntax"
    assert reply_of(parse_rcpt, b"TO:<x>", False) == b"501 5.1.3 Bad recipient address syntax"
    assert reply_of(parse_rcpt, b"FROM:<x@y.z>", False) == b"501 5.5.4 Syntax: RCPT TO:<address>"
    assert (
        reply_of(parse_rcpt, b"TO:<x@y.z> NOTIFY=NEVER", False)
        == b"555 5.5.4 Unsupported RCPT parameter NOTIFY"
    )
    assert reply_of(parse_rcpt, "TO:<ü@y.z>".encode(), False).startswith(b"553 5.6.7 ")
