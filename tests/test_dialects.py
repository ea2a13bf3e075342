"""The dialects without sockets: bytes in, lines and reply ends out, any chunking."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linechat.dialects import NAMES, load
from linechat.dialects.base import MAX_LINE, Dialect, DialectError, Done, Event, LineReader, Send
from linechat.dialects.imap import Imap
from linechat.dialects.irc import Irc, parse
from linechat.dialects.memcached import Memcached
from linechat.dialects.pop3 import Pop3
from linechat.dialects.resp import Resp
from linechat.dialects.smtp import Smtp


def feed_bytewise(dialect: Dialect, data: bytes) -> list[Event]:
    events: list[Event] = []
    for index in range(len(data)):
        events.extend(dialect.feed(data[index : index + 1]))
    return events


def both_ways(
    make: type[Dialect],
    data: bytes,
    *sent: bytes,
    greeting: bool | None = None,
    unstuff: bool = False,
    raw: bool = False,
) -> list[Event]:
    """Feed ``data`` whole and byte by byte (after submitting ``sent``): same events."""
    results = []
    for split in (False, True):
        dialect = make(greeting=greeting, unstuff=unstuff, raw=raw)
        for line in sent:
            dialect.submit(line)
        results.append(feed_bytewise(dialect, data) if split else dialect.feed(data))
    assert results[0] == results[1]
    return results[0]


def test_every_name_loads() -> None:
    for name in NAMES:
        assert load(name).name == name
    with pytest.raises(KeyError):
        load("gopher")


def test_line_has_no_rules() -> None:
    dialect = load("line")()
    assert dialect.submit(b"anything") == b"anything\r\n" and not dialect.waiting
    assert both_ways(load("line"), b"a\r\nb\nc") == [b"a", b"b"]  # c: not ended yet


# -- the line reader ---------------------------------------------------------------


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=20), max_size=20), st.integers(1, 7))
def test_line_reader_any_chunking(parts: list[bytes], step: int) -> None:
    data = b"".join(parts)
    reader = LineReader()
    lines = []
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
        while (line := reader.line()) is not None:
            lines.append(line)
    complete = data[: data.rfind(b"\n") + 1]
    expected = [line.removesuffix(b"\r") for line in complete.split(b"\n")[:-1]]
    assert lines == expected


def test_line_reader_bounds_a_line() -> None:
    reader = LineReader()
    reader.feed(b"x" * (MAX_LINE + 1))
    with pytest.raises(DialectError, match="longer than"):
        reader.line()


# -- SMTP ------------------------------------------------------------------------------


def test_smtp_greeting_then_multiline_reply() -> None:
    dialect = Smtp()
    assert dialect.waiting
    assert dialect.feed(b"220 mx ESMTP\r\n") == [b"220 mx ESMTP", Done()]
    assert dialect.submit(b"EHLO me") == b"EHLO me\r\n"
    assert dialect.waiting
    events = both_ways(Smtp, b"250-mx\r\n250-SIZE 10\r\n250 8BITMIME\r\n", greeting=False)
    assert events == [b"250-mx", b"250-SIZE 10", b"250 8BITMIME", Done()]


def test_smtp_mid_reply_and_errors() -> None:
    dialect = Smtp(greeting=False)
    dialect.submit(b"RCPT TO:<x>")
    assert dialect.feed(b"550-no\r\n") == [b"550-no"]
    assert dialect.mid_reply and dialect.waiting
    assert dialect.feed(b"550 such user\r\n") == [b"550 such user", Done(error=True)]
    assert not dialect.waiting
    dialect.submit(b"NOOP")
    assert dialect.feed(b"421 bye\n") == [b"421 bye", Done(error=True)]


def test_smtp_data_body_is_dot_stuffed_until_a_lone_dot() -> None:
    dialect = Smtp(greeting=False)
    dialect.submit(b"DATA")
    assert dialect.feed(b"354 go ahead\r\n") == [b"354 go ahead", Done(more=True)]
    assert dialect.needs_input and not dialect.waiting
    assert dialect.submit(b"Subject: hi") == b"Subject: hi\r\n"
    assert dialect.submit(b".hidden") == b"..hidden\r\n"
    assert not dialect.waiting
    assert dialect.submit(b".") == b".\r\n"
    assert dialect.waiting and not dialect.needs_input
    assert dialect.feed(b"250 queued\r\n")[-1] == Done()


def test_smtp_verbatim_does_not_stuff_again() -> None:
    dialect = Smtp(greeting=False, verbatim=True)
    dialect.submit(b"DATA")
    dialect.feed(b"354 go\r\n")
    assert dialect.submit(b"..hidden") == b"..hidden\r\n"


def test_smtp_garbage_is_a_clear_error() -> None:
    with pytest.raises(DialectError, match="not an SMTP reply"):
        Smtp().feed(b"HTTP/1.1 400 Bad Request\r\n")


# -- POP3 ------------------------------------------------------------------------------


def test_pop3_single_and_multi_line() -> None:
    dialect = Pop3()
    assert dialect.feed(b"+OK ready\r\n") == [b"+OK ready", Done()]
    dialect.submit(b"STAT")
    assert dialect.feed(b"+OK 2 320\r\n") == [b"+OK 2 320", Done()]
    body = b"+OK 1 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
    assert both_ways(Pop3, body, b"RETR 1", greeting=False) == [
        b"+OK 1 octets", b"Subject: x", b"", b"..dot", b".", Done()
    ]  # fmt: skip
    unstuffed = both_ways(Pop3, body, b"RETR 1", greeting=False, unstuff=True)
    assert unstuffed == [b"+OK 1 octets", b"Subject: x", b"", b".dot", Done()]


def test_pop3_list_with_argument_is_one_line_and_err_is_an_error() -> None:
    dialect = Pop3(greeting=False)
    dialect.submit(b"LIST 1")
    assert dialect.feed(b"+OK 1 120\r\n") == [b"+OK 1 120", Done()]
    dialect.submit(b"LIST")
    assert dialect.feed(b"+OK\r\n1 120\r\n.\r\n")[-1] == Done()
    dialect.submit(b"RETR 9")
    assert dialect.feed(b"-ERR no such message\r\n") == [b"-ERR no such message", Done(True)]
    dialect.submit(b"AUTH PLAIN")
    assert dialect.feed(b"+ \r\n") == [b"+ ", Done(more=True)]
    with pytest.raises(DialectError):
        dialect.feed(b"hello\r\n")


# -- IMAP ------------------------------------------------------------------------------


def test_imap_tags_commands_and_keeps_given_tags() -> None:
    dialect = Imap()
    assert dialect.feed(b"* OK IMAP ready\r\n") == [b"* OK IMAP ready", Done()]
    assert dialect.submit(b"CAPABILITY") == b"a1 CAPABILITY\r\n"
    events = dialect.feed(b"* CAPABILITY IMAP4rev1\r\na1 OK done\r\n")
    assert events == [b"* CAPABILITY IMAP4rev1", b"a1 OK done", Done()]
    assert dialect.submit(b"x7 login a b") == b"x7 login a b\r\n"
    assert dialect.feed(b"x7 NO [AUTHENTICATIONFAILED] no\r\n")[-1] == Done(error=True)
    assert dialect.submit(b"uid fetch 1 FLAGS") == b"a2 uid fetch 1 FLAGS\r\n"


def test_imap_literal_in_a_reply_is_counted() -> None:
    reply = b"* 1 FETCH (BODY[] {17}\r\na1 OK not a tag\r\n)\r\na1 OK done\r\n"
    events = both_ways(Imap, reply, b"FETCH 1 BODY[]", greeting=False)
    assert events == [b"* 1 FETCH (BODY[] {17}", b"a1 OK not a tag", b")", b"a1 OK done", Done()]


def test_imap_bye_greeting_is_an_error() -> None:
    assert Imap().feed(b"* BYE go away\r\n")[-1] == Done(error=True)
    with pytest.raises(DialectError, match="greeting"):
        Imap().feed(b"hello\r\n")


def test_imap_command_literal_waits_for_continuation() -> None:
    dialect = Imap(greeting=False)
    assert dialect.submit(b"LOGIN {5}") == b"a1 LOGIN {5}\r\n"
    assert dialect.waiting
    assert dialect.feed(b"+ go\r\n") == [b"+ go", Done(more=True)]
    assert dialect.needs_input and not dialect.waiting
    assert dialect.submit(b"alice {6+}") == b"alice {6+}\r\n"  # literal ends mid-line
    assert dialect.needs_input and not dialect.waiting  # LITERAL+: no wait
    assert dialect.submit(b"secret") == b"secret\r\n"  # 6 bytes; its CRLF ends the command
    assert dialect.waiting and not dialect.needs_input
    assert dialect.feed(b"a1 OK logged in\r\n")[-1] == Done()


def test_imap_literal_spanning_lines() -> None:
    dialect = Imap(greeting=False)
    dialect.submit(b"APPEND INBOX {8}")
    dialect.feed(b"+ Ready\r\n")
    dialect.submit(b"Hi:")
    dialect.submit(b"x")  # exactly 8 with the CRLFs: the next line goes on with the command
    assert dialect.needs_input and not dialect.waiting
    assert dialect.submit(b"") == b"\r\n"
    assert dialect.waiting


def test_imap_idle_continuation_then_done() -> None:
    dialect = Imap(greeting=False)
    dialect.submit(b"IDLE")
    assert dialect.feed(b"+ idling\r\n")[-1] == Done(more=True)
    assert dialect.submit(b"DONE") == b"DONE\r\n"
    assert dialect.waiting
    assert dialect.feed(b"a1 OK IDLE done\r\n")[-1] == Done()


def test_imap_refused_literal() -> None:
    dialect = Imap(greeting=False)
    dialect.submit(b"APPEND INBOX {99999999}")
    assert dialect.feed(b"a1 NO too big\r\n")[-1] == Done(error=True)
    assert not dialect.needs_input


# -- RESP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "shown", "raw", "error"),
    [
        (b"+OK\r\n", [b"OK"], [b"OK"], False),
        (b"-ERR wrong\r\n", [b"(error) ERR wrong"], [b"ERR wrong"], True),
        (b":42\r\n", [b"(integer) 42"], [b"42"], False),
        (b"$5\r\nhel\nl\r\n", [b'"hel\\nl"'], [b"hel", b"l"], False),
        (b"$-1\r\n", [b"(nil)"], [b""], False),
        (b"*-1\r\n", [b"(nil)"], [b""], False),
        (b"*0\r\n", [b"(empty array)"], [b""], False),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [b'1) "a"', b"2) 1) (integer) 1"], [b"a", b"1"], False),
        (b"_\r\n", [b"(nil)"], [b""], False),
        (b"#t\r\n", [b"(true)"], [b"1"], False),
        (b",3.5\r\n", [b"(double) 3.5"], [b"3.5"], False),
        (b"(123456789012345678901\r\n", [b"(big number) 123456789012345678901"], None, False),
        (b"!3\r\nERR\r\n", [b"(error) ERR"], [b"ERR"], True),
        (b"=7\r\ntxt:abc\r\n", [b"abc"], [b"abc"], False),
        (b"%1\r\n+k\r\n:1\r\n", [b"1# k => (integer) 1"], [b"k", b"1"], False),
        (b"~1\r\n+m\r\n", [b"1~ m"], [b"m"], False),
        (b"|1\r\n+ttl\r\n:3\r\n+OK\r\n", [b"OK"], [b"OK"], False),
        (b"*10\r\n" + b":1\r\n" * 10, [b" 1) (integer) 1"], None, False),
    ],
)
def test_resp_values(wire: bytes, shown: list[bytes], raw: list[bytes] | None, error: bool) -> None:
    events = both_ways(Resp, wire, b"CMD")
    assert events[-1] == Done(error=error)
    assert events[: len(shown)] == shown
    if raw is not None:
        assert both_ways(Resp, wire, b"CMD", raw=True)[:-1] == raw


def test_resp_empty_line_is_not_sent_and_garbage_is_refused() -> None:
    dialect = Resp()
    assert dialect.submit(b"  ") == b""
    assert not dialect.waiting
    with pytest.raises(DialectError, match="not a RESP value"):
        dialect.feed(b"hello\r\n")
    with pytest.raises(DialectError, match="length"):
        Resp().feed(b"$x\r\n")
    with pytest.raises(DialectError, match="nested"):
        Resp().feed(b"*1\r\n" * 200)


def test_resp_and_imap_bound_what_one_reply_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    import linechat.dialects.imap
    import linechat.dialects.resp

    monkeypatch.setattr(linechat.dialects.resp, "MAX_COUNTED", 1000)
    monkeypatch.setattr(linechat.dialects.imap, "MAX_COUNTED", 1000)
    dialect = Resp()
    dialect.submit(b"LRANGE l 0 -1")
    with pytest.raises(DialectError, match="more than 1000 bytes"):
        for _ in range(100):  # an array that never ends
            dialect.feed(b"*500\r\n" if _ == 0 else b"$10\r\n0123456789\r\n")
    imap = Imap(greeting=False)
    imap.submit(b"FETCH 1 BODY[]")
    with pytest.raises(DialectError, match="more than 1000 bytes"):
        imap.feed(b"* 1 FETCH (BODY[] {10}\r\n" + b"0123456789 {10}\r\n" * 100)


# -- memcached ---------------------------------------------------------------------------


def test_memcached_fills_the_length_and_counts_values() -> None:
    dialect = Memcached()
    assert not dialect.waiting
    assert dialect.submit(b"set k 0 0 -") == b""
    assert dialect.needs_input and not dialect.waiting
    assert dialect.submit(b"hello world") == b"set k 0 0 11\r\nhello world\r\n"
    assert dialect.waiting
    assert dialect.feed(b"STORED\r\n") == [b"STORED", Done()]
    value = b"VALUE k 0 7 1\r\nEND\r\nxx\r\nEND\r\n"
    assert both_ways(Memcached, value, b"gets k") == [
        b"VALUE k 0 7 1",
        b"END",
        b"xx",
        b"END",
        Done(),
    ]


def test_memcached_explicit_length_spans_lines_and_noreply() -> None:
    dialect = Memcached()
    assert dialect.submit(b"set k 0 0 7") == b"set k 0 0 7\r\n"
    assert dialect.submit(b"abc") == b"abc\r\n" and dialect.needs_input
    assert dialect.submit(b"de") == b"de\r\n" and dialect.waiting
    dialect.feed(b"STORED\r\n")
    dialect.submit(b"set q 0 0 1 noreply")
    dialect.submit(b"x")
    assert not dialect.waiting and not dialect.needs_input
    dialect.submit(b"quit")
    assert not dialect.waiting


def test_memcached_errors_meta_and_stats() -> None:
    dialect = Memcached()
    dialect.submit(b"bogus")
    assert dialect.feed(b"ERROR\r\n") == [b"ERROR", Done(error=True)]
    dialect.submit(b"get k")
    assert dialect.feed(b"SERVER_ERROR out of memory\r\n")[-1] == Done(error=True)
    dialect.submit(b"mg k v")
    assert dialect.feed(b"VA 2 f\r\nhi\r\n") == [b"VA 2 f", b"hi", Done()]
    dialect.submit(b"mg k v")
    assert dialect.feed(b"EN\r\n") == [b"EN", Done()]
    dialect.submit(b"stats")
    assert dialect.feed(b"STAT pid 1\r\nEND\r\n") == [b"STAT pid 1", b"END", Done()]
    dialect.submit(b"get k")
    with pytest.raises(DialectError):
        dialect.feed(b"VALUE k 0 x\r\n")
    dialect = Memcached()
    dialect.submit(b"get k")
    with pytest.raises(DialectError, match="CRLF"):
        dialect.feed(b"VALUE k 0 1\r\nabc\r\n")


# -- IRC -------------------------------------------------------------------------------


def test_irc_parse() -> None:
    assert parse(b"@t=1 :srv 001 me :Welcome home") == (b"001", [b"me", b"Welcome home"])
    assert parse(b"ping :x") == (b"PING", [b"x"])
    with pytest.raises(DialectError):
        parse(b":srv")


def test_irc_registration_waits_for_the_welcome_and_answers_ping() -> None:
    dialect = Irc()
    assert not dialect.waiting
    dialect.submit(b"NICK me")
    assert not dialect.waiting
    dialect.submit(b"USER me 0 * :Me")
    assert dialect.waiting
    events = dialect.feed(b"PING :abc\r\n:s 001 me :hi\r\n:s 375 me :motd\r\n")
    assert events == [b"PING :abc", Send(b"PONG :abc\r\n"), b":s 001 me :hi", b":s 375 me :motd"]
    assert dialect.waiting
    assert dialect.feed(b":s 376 me :end\r\n")[-1] == Done()
    dialect.submit(b"JOIN #c")
    assert dialect.feed(b":me!u@h JOIN #c\r\n:s 353 me = #c :me\r\n") == [
        b":me!u@h JOIN #c", b":s 353 me = #c :me"
    ]  # fmt: skip
    assert dialect.feed(b":s 366 me #c :End\r\n")[-1] == Done()
    dialect.submit(b"PRIVMSG #c :hello")
    assert dialect.silence_ends and dialect.waiting
    assert dialect.silence() == [Done()]
    dialect.submit(b"PRIVMSG nobody :hello")
    assert dialect.feed(b":s 401 me nobody :No such nick\r\n")[-1] == Done(error=True)
    dialect.submit(b"QUIT :bye")
    assert dialect.feed(b"ERROR :Closing link\r\n")[-1] == Done()


def test_irc_nick_in_use_and_no_motd() -> None:
    dialect = Irc()
    dialect.submit(b"NICK me")
    dialect.submit(b"USER me 0 * :Me")
    assert dialect.feed(b":s 433 * me :in use\r\n")[-1] == Done(error=True)
    dialect = Irc()
    dialect.submit(b"CAP LS 302")
    dialect.submit(b"NICK me")
    dialect.submit(b"USER me 0 * :Me")
    assert not dialect.waiting  # CAP negotiation still open
    dialect.submit(b"CAP END")
    assert dialect.waiting
    assert dialect.feed(b":s 001 me :hi\r\n:s 422 me :no MOTD\r\n")[-1] == Done()
