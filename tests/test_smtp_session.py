"""The smtp-sink's state machine and DATA reader, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linechat.framing import LineFramer
from linechat.services.smtp_sink.data import BARE_LINE_END, DataReader
from linechat.services.smtp_sink.session import (
    CLOSED,
    COMMAND,
    DATA,
    STARTTLS,
    Session,
    SessionConfig,
)

CONFIG = SessionConfig(hostname=b"sink.test", max_message_size=1000, max_recipients=3)


def session(**changes: object) -> Session:
    config = SessionConfig(**{**CONFIG.__dict__, **changes})
    return Session(config)


def run(s: Session, *lines: bytes) -> list[bytes]:
    """Send command lines; the first line of each reply."""
    return [s.command(line).split(b"\r\n")[-1] for line in lines]


def codes(s: Session, *lines: bytes) -> list[bytes]:
    return [reply[:3] for reply in run(s, *lines)]


def transaction(s: Session) -> None:
    assert codes(s, b"EHLO c.example", b"MAIL FROM:<a@b.c>", b"RCPT TO:<x@y.z>", b"DATA") == [
        b"250",
        b"250",
        b"250",
        b"354",
    ]
    assert s.mode == DATA


def test_greeting_and_ehlo_advertise_the_extensions() -> None:
    s = session()
    assert s.greeting() == b"220 sink.test ESMTP linechat smtp-sink"
    assert s.command(b"EHLO client.example") == (
        b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n"
        b"250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES"
    )
    assert s.esmtp
    assert s.command(b"HELO client.example") == b"250 sink.test"
    assert not s.esmtp


def test_starttls_is_advertised_only_with_a_certificate_and_only_before_tls() -> None:
    s = session(starttls=True)
    assert b"250-STARTTLS\r\n" in s.command(b"EHLO c")
    assert s.command(b"STARTTLS x") == b"501 5.5.4 Syntax: STARTTLS (no parameters)"
    assert s.command(b"STARTTLS") == b"220 2.0.0 Ready to start TLS"
    assert s.mode == STARTTLS
    s.tls_started()
    assert s.mode == COMMAND and s.tls and s.helo is None
    assert codes(s, b"MAIL FROM:<a@b.c>") == [b"503"]  # EHLO again first
    assert b"STARTTLS" not in s.command(b"EHLO c")
    assert s.command(b"STARTTLS") == b"503 5.5.1 Error: TLS already active"
    plain = session()
    assert b"STARTTLS" not in plain.command(b"EHLO c")
    assert plain.command(b"STARTTLS") == b"502 5.5.1 Error: command not implemented"


def test_starttls_forgets_the_transaction() -> None:
    s = session(starttls=True)
    assert codes(s, b"EHLO c", b"MAIL FROM:<a@b.c>", b"RCPT TO:<x@y.z>", b"STARTTLS") == [
        b"250",
        b"250",
        b"250",
        b"220",
    ]
    s.tls_started()
    assert s.mail is None and s.rcpts == []
    assert codes(s, b"EHLO c", b"DATA") == [b"250", b"503"]


def test_bad_sequences_get_503() -> None:
    s = session()
    assert run(s, b"MAIL FROM:<a@b.c>") == [b"503 5.5.1 Error: send HELO/EHLO first"]
    assert run(s, b"HELO c", b"RCPT TO:<x@y.z>") == [
        b"250 sink.test",
        b"503 5.5.1 Error: need MAIL command",
    ]
    assert run(s, b"DATA") == [b"503 5.5.1 Error: need MAIL command"]
    assert run(s, b"MAIL FROM:<a@b.c>", b"MAIL FROM:<a@b.c>", b"DATA") == [
        b"250 2.1.0 Ok",
        b"503 5.5.1 Error: nested MAIL command",
        b"503 5.5.1 Error: need RCPT command",
    ]


def test_other_commands() -> None:
    s = session()
    assert run(s, b"NOOP", b"noop anything", b"RSET", b"RSET x", b"VRFY someone", b"VRFY") == [
        b"250 2.0.0 Ok",
        b"250 2.0.0 Ok",
        b"250 2.0.0 Ok",
        b"501 5.5.4 Syntax: RSET (no parameters)",
        b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
        b"501 5.5.4 Syntax: VRFY address",
    ]
    assert run(s, b"EXPN list", b"HELP", b"FROB", b"") == [
        b"502 5.5.1 Error: command not implemented",
        b"502 5.5.1 Error: command not implemented",
        b"500 5.5.2 Error: command not recognized",
        b"500 5.5.2 Error: command not recognized",
    ]
    assert run(s, b"QUIT") == [b"221 2.0.0 Bye"]
    assert s.mode == CLOSED


def test_rset_and_ehlo_forget_the_transaction() -> None:
    s = session()
    assert codes(s, b"EHLO c", b"MAIL FROM:<a@b.c>", b"RCPT TO:<x@y.z>", b"RSET", b"DATA") == [
        b"250",
        b"250",
        b"250",
        b"250",
        b"503",
    ]
    assert codes(s, b"MAIL FROM:<a@b.c>", b"EHLO c", b"RCPT TO:<x@y.z>") == [
        b"250",
        b"250",
        b"503",
    ]


def test_recipient_limit() -> None:
    s = session()
    run(s, b"EHLO c", b"MAIL FROM:<a@b.c>")
    assert codes(s, *[b"RCPT TO:<r%d@y.z>" % i for i in range(5)]) == [
        b"250",
        b"250",
        b"250",
        b"452",
        b"452",
    ]
    assert s.rcpts == [b"r0@y.z", b"r1@y.z", b"r2@y.z"]
    assert s.command(b"DATA")[:3] == b"354"


def test_declared_size_over_the_limit_gets_552() -> None:
    s = session()
    assert run(s, b"EHLO c", b"MAIL FROM:<a@b.c> SIZE=1001", b"MAIL FROM:<a@b.c> SIZE=1000") == [
        b"250 ENHANCEDSTATUSCODES",
        b"552 5.3.4 Message size exceeds fixed limit of 1000 bytes",
        b"250 2.1.0 Ok",
    ]


def test_too_many_errors_close_the_session() -> None:
    s = session(error_limit=3)
    assert codes(s, b"BAD", b"BAD") == [b"500", b"500"]
    reply = s.command(b"BAD")
    assert (
        reply
        == b"500 5.5.2 Error: command not recognized\r\n421 4.7.0 sink.test Error: too many errors"
    )
    assert s.mode == CLOSED


def test_http_request_closes_at_once() -> None:
    s = session()
    assert (
        s.command(b"POST / HTTP/1.1") == b"554 5.7.0 Error: HTTP request on an SMTP port; closing"
    )
    assert s.mode == CLOSED


def test_message_is_accepted_then_the_transaction_forgotten() -> None:
    s = session()
    transaction(s)
    text, used = s.data([b"Subject: x", b"", b"..dot", b".", b"NOOP"])
    assert (text, used) == (b"Subject: x\r\n\r\n.dot\r\n", 4)
    assert s.mode == COMMAND
    assert s.end_of_data() is None
    assert s.delivered(b"ID1") == b"250 2.0.0 Ok: queued as ID1"
    assert s.mail is None and s.rcpts == [] and s.reader is None
    assert s.command(b"NOOP") == b"250 2.0.0 Ok"


def test_too_big_message_is_refused_at_the_end() -> None:
    s = session()
    transaction(s)
    assert s.data([b"x" * 500, b"y" * 496]) == (b"x" * 500 + b"\r\n" + b"y" * 496 + b"\r\n", 2)
    assert not s.refused  # 1000 bytes: the limit
    assert s.data([b""]) == (b"", 1)  # 1002 bytes: over the limit, kept nowhere
    assert s.refused
    assert s.data([b"more", b"."]) == (b"", 2)
    assert s.end_of_data() == b"552 5.3.4 Message size exceeds fixed limit of 1000 bytes"
    assert s.mail is None


def test_storage_failure_gives_451() -> None:
    s = session()
    transaction(s)
    s.data([b"."])
    assert s.end_of_data() is None
    assert s.not_delivered() == b"451 4.3.0 Error: the message could not be stored; try again later"


def test_line_too_long_inside_data_refuses_the_message_and_outside_answers_500() -> None:
    s = session()
    assert s.line_too_long() == b"500 5.5.2 Error: line too long"
    transaction(s)
    assert s.line_too_long() is None
    s.data([b"."])
    assert s.end_of_data() == b"554 5.6.0 Message refused: a line of its text is too long"


# -- the DATA reader -------------------------------------------------------------


def test_reader_ends_only_at_a_dot_alone() -> None:
    reader = DataReader(10_000)
    assert reader.feed([b".x", b" .", b".. ", b"x."]) == (b"x\r\n .\r\n. \r\nx.\r\n", 4)
    assert not reader.done
    assert reader.feed([b"", b".", b"after"], 0) == (b"\r\n", 2)
    assert reader.done
    with pytest.raises(ValueError):
        reader.feed([b"."])


def test_reader_start_index_and_empty_message() -> None:
    reader = DataReader(10)
    assert reader.feed([b"DATA", b"."], 1) == (b"", 2)
    assert reader.done and reader.refusal is None and reader.size == 0


@pytest.mark.parametrize(
    "smuggled",
    [
        [b"a\n.", b"MAIL FROM:<x@y.z>"],  # <LF>.<CR><LF>: the classic smuggling end
        [b"a", b".\n"],  # <CR><LF>.<LF>
        [b"a\r.\rMAIL FROM:<x@y.z>"],  # <CR>.<CR>
        [b"a\n.\nRCPT TO:<x@y.z>"],  # <LF>.<LF>
        [b"bare\rcr"],
        [b"bare\nlf"],
        [b"\n"],
    ],
)
def test_bare_cr_or_lf_refuses_the_message(smuggled: list[bytes]) -> None:
    reader = DataReader(10_000)
    assert reader.feed([b"Subject: x", *smuggled]) == (b"", len(smuggled) + 1)
    assert reader.refusal == BARE_LINE_END
    assert not reader.done
    assert reader.feed([b"still text", b"."]) == (b"", 2)
    assert reader.done


def test_size_limit_is_exact() -> None:
    exact = DataReader(13)
    assert exact.feed([b"1234", b"12345", b"."])[0] == b"1234\r\n12345\r\n"
    assert exact.refusal is None
    over = DataReader(12)
    assert over.feed([b"1234", b"12345", b"."]) == (b"", 3)
    assert over.refusal is not None and over.refusal.startswith(b"552 5.3.4 ")


# Message lines as a client holds them before dot-stuffing: any bytes but CR and LF.
message_lines = st.lists(
    st.one_of(
        st.sampled_from([b"", b".", b"..", b". x", b".\xff", b"x.", b"\x00"]),
        st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    ),
    max_size=30,
)


@given(lines=message_lines, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_message_in_any_chunks_comes_back_exactly(lines: list[bytes], cuts: list[int]) -> None:
    """Dot-stuff, frame with CRLF, cut anywhere: the reader gives back the original bytes."""
    wire = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    wire += b".\r\nQUIT\r\n"
    framer = LineFramer()
    reader = DataReader(1 << 20)
    stored = b""
    rest: list[bytes] = []
    pieces = [
        wire[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(wire)], strict=True)
    ]
    for piece in pieces:
        got = framer.feed(piece)
        if reader.done:
            rest += got
            continue
        text, used = reader.feed(got)
        stored += text
        rest += got[used:]
    assert reader.done and reader.refusal is None
    assert stored == b"".join(line + b"\r\n" for line in lines)
    assert rest == [b"QUIT"]
