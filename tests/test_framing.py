"""The framer's rules, one test each, then properties over any chunking."""

from __future__ import annotations

import re
import tracemalloc
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linechat import LineFramer, LineTooLong, ProtocolError


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out + framer.feed_eof()


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


def test_lines_in_order_delimiter_removed() -> None:
    assert LineFramer().feed(b"one\r\ntwo\r\nthree\r\n") == [b"one", b"two", b"three"]


def test_partial_line_waits_for_its_delimiter() -> None:
    framer = LineFramer()
    assert framer.feed(b"hel") == []
    assert framer.buffered == 3
    assert framer.feed(b"lo\r") == []
    assert framer.feed(b"\nworld\r\n") == [b"hello", b"world"]
    assert framer.buffered == 0


def test_empty_lines_are_lines() -> None:
    assert LineFramer().feed(b"\r\n\r\nx\r\n") == [b"", b"", b"x"]


def test_multibyte_delimiter_split_across_chunks() -> None:
    framer = LineFramer(b"<END>")
    out = [framer.feed(part) for part in (b"a<E", b"N", b"D>b<", b"END><END", b">")]
    assert out == [[], [], [b"a"], [b"b"], [b""]]


def test_crlf_split_between_chunks() -> None:
    framer = LineFramer()
    assert framer.feed(b"abc\r") == []
    assert framer.feed(b"\n") == [b"abc"]


def test_strict_mode_keeps_bare_lf_inside_the_line() -> None:
    assert LineFramer().feed(b"a\nb\r\n") == [b"a\nb"]


def test_lenient_ends_at_bare_lf_and_drops_cr() -> None:
    framer = LineFramer(lenient=True)
    assert framer.feed(b"a\nb\r\nc\rd\n") == [b"a", b"b", b"c\rd"]
    assert framer.feed(b"e\r") == []
    assert framer.feed(b"\n") == [b"e"]


def test_lenient_needs_crlf_or_lf() -> None:
    with pytest.raises(ValueError):
        LineFramer(b"|", lenient=True)


def test_bad_delimiter() -> None:
    with pytest.raises(ValueError):
        LineFramer(b"")
    # The type is checked first, as the compiled build checks it on entry.
    for delimiter in ("\r\n", bytearray(b"\r\n"), None):
        with pytest.raises(TypeError):
            LineFramer(delimiter)  # type: ignore[arg-type]


def test_bad_limit() -> None:
    with pytest.raises(ValueError):
        LineFramer(max_line_length=0)


def test_memcached_set_in_one_chunk() -> None:
    framer = LineFramer()
    lines = framer.feed(b"set k 0 0 5\r\nhello\r\nget k\r\n")
    assert lines[0] == b"set k 0 0 5"
    framer.rewind(1)
    assert framer.read_exactly(5) == b"hello"
    assert framer.next_line() == b""
    assert framer.next_line() == b"get k"
    assert framer.next_line() is None


def test_pull_reads_wait_for_enough_bytes() -> None:
    framer = LineFramer()
    framer.receive(b"set k 0 0 5\r\nhel")
    assert framer.next_line() == b"set k 0 0 5"
    assert framer.read_exactly(7) is None
    framer.receive(b"lo\r\nquit")
    assert framer.read_exactly(7) == b"hello\r\n"
    assert framer.next_line() is None
    assert framer.feed(b"\r\n") == [b"quit"]


def test_raw_bytes_may_hold_the_delimiter() -> None:
    framer = LineFramer()
    framer.receive(b"\r\n\r\nx\r\n")
    assert framer.read_exactly(4) == b"\r\n\r\n"
    assert framer.next_line() == b"x"


def test_rewind_keeps_the_buffered_tail() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\r\nb\r\nc") == [b"a", b"b"]
    framer.rewind(0)
    assert framer.read_exactly(6) == b"a\r\nb\r\n"
    assert framer.feed(b"d\r\n") == [b"cd"]


def test_rewind_in_lenient_mode_is_exact() -> None:
    framer = LineFramer(lenient=True)
    assert framer.feed(b"x\ny\r\nz\n") == [b"x", b"y", b"z"]
    framer.rewind(1)
    assert framer.read_exactly(5) == b"y\r\nz\n"


@pytest.mark.parametrize(
    ("delimiter", "data", "lines", "tail"),
    [
        (b"aa", b"aaa", [b""], b"a"),  # found by tests/fuzz/fuzz_framing.py
        (b"\r\n\r\n", b"h\r\n\r\n\r\n", [b"h"], b"\r\n"),
    ],
)
def test_rewind_with_a_delimiter_that_overlaps_itself(
    delimiter: bytes, data: bytes, lines: list[bytes], tail: bytes
) -> None:
    framer = LineFramer(delimiter)
    assert framer.feed(data) == lines
    framer.rewind(0)
    assert framer.buffered == len(data)
    assert framer.read_exactly(len(data)) == data
    framer = LineFramer(delimiter)
    framer.feed(data)
    framer.rewind(len(lines))
    assert framer.read_exactly(framer.buffered) == tail


def test_rewind_must_follow_feed() -> None:
    framer = LineFramer()
    framer.feed(b"a\r\n")
    framer.next_line()
    with pytest.raises(ProtocolError):
        framer.rewind(0)


def test_unterminated_last_line_surfaces_at_eof() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\r\nb") == [b"a"]
    assert framer.feed_eof() == [b"b"]


def test_eof_with_nothing_left() -> None:
    framer = LineFramer()
    framer.feed(b"a\r\n")
    assert framer.feed_eof() == []
    with pytest.raises(ProtocolError):
        framer.feed(b"more")


def test_too_long_raises_before_any_delimiter() -> None:
    framer = LineFramer(max_line_length=10)
    assert framer.feed(b"0123456789") == []
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"X")
    assert info.value.lines == []
    assert framer.buffered == 0


def test_too_long_keeps_earlier_lines_of_the_same_chunk() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"ok\r\nfine\r\nwaytoolong")
    assert info.value.lines == [b"ok", b"fine"]


def test_too_long_terminated_line_in_a_chunk() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"ok\r\nwaytoolong\r\nnext\r\n")
    assert info.value.lines == [b"ok"]
    framer.resync()
    assert framer.feed(b"") == [b"next"]


def test_refuses_input_until_resync() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(LineTooLong):
        framer.feed(b"toolong")
    with pytest.raises(ProtocolError):
        framer.feed(b"x\r\n")


def test_resync_discards_through_next_delimiter() -> None:
    framer = LineFramer(b"<END>", max_line_length=4)
    with pytest.raises(LineTooLong):
        framer.feed(b"toolong")
    framer.resync()
    assert framer.feed(b"still going <E") == []
    assert framer.buffered <= 4
    assert framer.feed(b"ND>good<END>") == [b"good"]


def test_pull_line_too_long() -> None:
    framer = LineFramer(max_line_length=3)
    framer.receive(b"abcdef")
    with pytest.raises(LineTooLong):
        framer.next_line()
    framer.resync()
    framer.receive(b"gh\r\nok\r\n")
    assert framer.next_line() == b"ok"


def test_exactly_the_limit_is_fine() -> None:
    framer = LineFramer(max_line_length=5)
    assert framer.feed(b"12345") == []
    assert framer.feed(b"\r\n") == [b"12345"]


# -- properties ------------------------------------------------------------

delimiters = st.sampled_from([b"\r\n", b"\n", b"|", b"<END>", b"aa"])


@settings(max_examples=300, deadline=None)
@given(delimiters, st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=20))
def test_any_chunking_gives_the_split_stream(
    delimiter: bytes, stream: bytes, cuts: list[int]
) -> None:
    expected = stream.split(delimiter)
    if expected[-1] == b"":
        expected.pop()
    got = feed_all(LineFramer(delimiter), chunked(stream, cuts))
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), delimiters)
def test_one_byte_chunks(stream: bytes, delimiter: bytes) -> None:
    expected = stream.split(delimiter)
    if expected[-1] == b"":
        expected.pop()
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert feed_all(LineFramer(delimiter), chunks) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"xyz"]), max_size=60),
    st.lists(st.integers(0, 200), max_size=15),
)
def test_lenient_any_chunking(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    expected = re.split(rb"\r?\n", stream)
    if expected[-1] == b"":
        expected.pop()
    assert feed_all(LineFramer(lenient=True), chunked(stream, cuts)) == expected


# A script of reads: ("line",) or ("raw", n). Built from a list of items
# so the stream always matches the script.
items = st.lists(
    st.one_of(
        st.tuples(st.just("line"), st.binary(max_size=20).filter(lambda b: b"\r\n" not in b)),
        st.tuples(st.just("raw"), st.binary(max_size=20)),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(items, st.lists(st.integers(0, 600), max_size=20), st.booleans())
def test_line_raw_switches_match_one_shot_parse(
    script: list[tuple[str, bytes]], cuts: list[int], batch: bool
) -> None:
    """Whatever the chunking, mixed reads give what one parse of the whole gives."""
    stream = b"".join(p + b"\r\n" if kind == "line" else p for kind, p in script)
    expected = [p for _, p in script]
    framer = LineFramer()
    got: list[bytes] = []
    todo = list(script)
    for chunk in [*chunked(stream, cuts), b""]:
        if batch and todo and todo[0][0] == "line":
            lines = framer.feed(chunk)
            # Take lines while the script wants lines; give back the rest.
            used = 0
            while used < len(lines) and todo and todo[0][0] == "line":
                got.append(lines[used])
                todo.pop(0)
                used += 1
            framer.rewind(used)
        else:
            framer.receive(chunk)
        while todo:
            kind, payload = todo[0]
            item = framer.next_line() if kind == "line" else framer.read_exactly(len(payload))
            if item is None:
                break
            got.append(item)
            todo.pop(0)
    assert got == expected
    assert framer.feed_eof() == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=30), st.integers(1, 30))
def test_memory_stays_bounded(stream: bytes, sizes: list[int], limit: int) -> None:
    """Whatever arrives, the buffer holds at most the limit plus one chunk."""
    framer = LineFramer(max_line_length=limit)
    pos = 0
    for size in sizes or [len(stream)]:
        chunk = stream[pos : pos + size]
        pos += size
        try:
            lines = framer.feed(chunk)
        except LineTooLong as exc:
            lines = exc.lines
            framer.resync()
        assert all(len(line) <= limit for line in lines)
        assert framer.buffered <= limit + len(chunk)


def test_rewind_after_more_was_received() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\r\nb\r\nc") == [b"a", b"b"]
    framer.receive(b"d\r\ne\r\n")
    framer.rewind(1)
    assert framer.read_exactly(3) == b"b\r\n"
    assert framer.next_line() == b"cd"
    assert framer.next_line() == b"e"


def test_line_of_exactly_the_limit_with_split_delimiter() -> None:
    framer = LineFramer(max_line_length=5)
    assert framer.feed(b"12345\r") == []
    assert framer.feed(b"\n") == [b"12345"]


def test_too_long_complete_line_is_not_in_the_earlier_lines() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"ok\r\ntoolong\r\nalsotoolong")
    assert info.value.lines == [b"ok"]


def test_feed_after_resync_returns_buffered_lines() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(LineTooLong):
        framer.feed(b"waytoolong\r\na\r\nb\r\n")
    framer.resync()
    assert framer.feed(b"") == [b"a", b"b"]


# -- raw bytes that follow a command in the same chunk are not a line (issue 13) --


@pytest.mark.parametrize("lenient", [False, True])
def test_raw_bytes_after_a_command_are_not_held_to_the_line_limit(lenient: bool) -> None:
    """A value longer than the line limit, in the chunk of its command: read whole."""
    framer = LineFramer(max_line_length=16, lenient=lenient)
    value = b"v" * 40 + b"\r\n" + b"w" * 40
    with pytest.raises(LineTooLong) as caught:
        framer.feed(b"set k 0 0 82\r\n" + value + b"\r\nget k\r\n")
    assert caught.value.lines == [b"set k 0 0 82"]
    framer.rewind(1)  # the caller learnt from line 1 that 84 raw bytes follow
    assert framer.read_exactly(84) == value + b"\r\n"
    assert framer.next_line() == b"get k"
    assert framer.next_line() is None
    assert framer.feed(b"quit\r\n") == [b"quit"]


def test_raw_bytes_left_unterminated_past_the_limit_are_kept() -> None:
    """The value's start alone is over the limit (no line end yet): kept, not discarded."""
    framer = LineFramer(max_line_length=16)
    with pytest.raises(LineTooLong) as caught:
        framer.feed(b"a\r\nset k 0 0 50\r\n" + b"v" * 30)
    assert caught.value.lines == [b"a", b"set k 0 0 50"]
    framer.rewind(2)
    assert framer.read_exactly(52) is None
    framer.receive(b"v" * 20 + b"\r\n")
    assert framer.read_exactly(52) == b"v" * 50 + b"\r\n"
    assert framer.buffered == 0


def test_raw_bytes_after_a_command_with_a_line_buffered_before() -> None:
    """The command's start came in an earlier chunk (the head of the split)."""
    framer = LineFramer(max_line_length=16)
    assert framer.feed(b"set k 0") == []
    with pytest.raises(LineTooLong) as caught:
        framer.feed(b" 0 20\r\n" + b"x" * 20 + b"\r\n")
    assert caught.value.lines == [b"set k 0 0 20"]
    framer.rewind(1)
    assert framer.read_exactly(22) == b"x" * 20 + b"\r\n"


def test_an_over_long_line_after_the_raw_bytes_still_fails() -> None:
    framer = LineFramer(max_line_length=8)
    with pytest.raises(LineTooLong):
        framer.feed(b"set 2\r\nab\r\n" + b"z" * 20 + b"\r\nok\r\n")
    framer.rewind(1)
    assert framer.read_exactly(4) == b"ab\r\n"
    with pytest.raises(LineTooLong):
        framer.next_line()
    framer.resync()
    assert framer.next_line() == b"ok"


def test_no_rewind_after_resync() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(LineTooLong):
        framer.feed(b"a\r\nlong line\r\nb\r\n")
    framer.resync()
    with pytest.raises(ProtocolError):
        framer.rewind(1)
    assert framer.feed(b"") == [b"b"]


def test_a_counted_read_after_the_end_of_stream_never_completes() -> None:
    """The last, unterminated line asked for a payload: none will come, and that is no error."""
    framer = LineFramer()
    assert framer.feed(b"set k 0 0 5") == []
    assert framer.feed_eof() == [b"set k 0 0 5"]
    assert framer.read_after(1, 7) is None
    framer.rewind(1)  # nothing to give back
    assert framer.buffered == 0


def test_split_buffered_takes_a_batch_that_rewind_can_give_back() -> None:
    framer = LineFramer()
    framer.receive(b"a\r\nbb\r\nccc\r\nrest")
    assert framer.split_buffered(6, 256) == [b"a"]  # the lines ending within 6 bytes
    framer.rewind(0)
    assert framer.split_buffered(100, 2) == [b"a", b"bb"]  # at most 2
    framer.rewind(1)
    assert framer.read_exactly(9) == b"bb\r\nccc\r\n"
    assert framer.split_buffered(100, 256) == []
    assert framer.feed(b"\r\n") == [b"rest"]


def test_shrink_frees_the_room_of_a_big_read_and_keeps_every_byte() -> None:
    """What a batch took from the buffer's front stays allocated until half is
    gone; shrink() (for input that will wait) frees it, and rewind() still works."""
    framer = LineFramer()
    tracemalloc.start()  # before the buffer grows: its memory is traced
    try:
        framer.receive(b"x\r\n" * 87_000 + b"tail")  # one big read, split a batch at a time
        batches = [framer.split_buffered(4096, 256) for _ in range(100)]
        assert batches[-1] == [b"x"] * 256
        del batches
        before = tracemalloc.get_traced_memory()[0]
        framer.shrink()
        freed = before - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert freed >= 100 * 256 * 3 - 1024  # the room of the lines split
    framer.rewind(200)  # the last batch's last 56 lines given back
    assert framer.buffered == (87_000 - 99 * 256 - 200) * 3 + 4
    assert framer.read_exactly(6) == b"x\r\nx\r\n"
    framer.shrink()  # nothing to free: the same bytes
    assert framer.split_buffered(1 << 20, 1 << 20) == [b"x"] * (87_000 - 99 * 256 - 202)
    assert framer.feed_eof() == [b"tail"]


def test_split_buffered_over_long_line_can_be_taken_back_as_raw_bytes() -> None:
    framer = LineFramer(max_line_length=5)
    framer.receive(b"set 7\r\n" + b"x" * 7 + b"\r\nget\r\n")
    with pytest.raises(LineTooLong) as caught:
        framer.split_buffered(1024, 256)
    assert caught.value.lines == [b"set 7"]
    framer.rewind(1)  # a counted read: the over-long "line" is raw bytes
    assert not framer.failed
    assert framer.read_exactly(9) == b"x" * 7 + b"\r\n"
    assert framer.split_buffered(1024, 256) == [b"get"]


def test_split_buffered_lenient_and_overlapping_delimiters() -> None:
    framer = LineFramer(lenient=True)
    framer.receive(b"a\r\nb\nc")
    assert framer.split_buffered(1024, 256) == [b"a", b"b"]
    framer.rewind(1)
    assert framer.read_exactly(2) == b"b\n"
    odd = LineFramer(b"aa")
    odd.receive(b"xaaay")
    assert odd.split_buffered(4, 256) == [b"x"]
    assert odd.feed(b"aa") == [b"ay"]


def test_fed_lines_counts_the_last_batch_while_it_can_be_rewound() -> None:
    framer = LineFramer()
    assert framer.fed_lines() == 0
    framer.feed(b"a\r\nb")
    assert framer.fed_lines() == 1
    framer.feed(b"\r\nc\r\nd\r\n")  # b (its start was buffered), c, d
    assert framer.fed_lines() == 3
    framer.commit()
    assert framer.fed_lines() == 0
