"""Coverage-guided fuzzing of the line framer with atheris.

    make fuzz                                   # every harness, 5 minutes each
    .venv/bin/python tests/fuzz/fuzz_framing.py -max_total_time=60 tests/fuzz/corpus/framing

The input is a script: the first bytes pick the mode (strict CRLF, lenient
CRLF, lenient LF, a short custom delimiter) and the line limit, the rest a
sequence of operations mixed as a protocol would mix them: ``feed`` (then
perhaps ``rewind`` or ``read_after``, also after a ``LineTooLong`` that has
lines, as a protocol starting a counted read does), ``receive``, ``next_line``,
``read_exactly``, ``resync`` after ``LineTooLong``, and ``feed_eof`` at the end.

What must hold for any input:

- only :class:`~linechat.errors.ProtocolError` (``LineTooLong`` included) is
  ever raised, and only where the API says;
- no line holds its delimiter (in lenient mode: an LF) or exceeds the limit;
- until the first over-long line, what came out (lines with their
  delimiters, raw reads) followed by what is still buffered is exactly the
  stream fed in: nothing lost, duplicated or reordered;
- while only ``feed`` is used, the buffer stays within the limit plus a
  delimiter between feeds.

``one_input`` needs no atheris, so ``tests/test_fuzz_corpus.py`` replays
every corpus file under pytest: a crash saved into the corpus is a
regression test from then on.
"""

from __future__ import annotations

import importlib

from linechat.errors import LineTooLong, ProtocolError
from linechat.framing import LineFramer

# Most bytes map onto the ones that matter to framing.
ALPHABET = b"ab\r\n\r\n\x00z"
DELIMITERS = (b"\r\n", b"\n", b"\x00", b"ab", b"\r\n\r\n", b"aa")


class Script:
    """Reads small integers and byte strings off the fuzzer's input, never failing."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def chunk(self) -> bytes:
        """A chunk of 0-31 bytes, mostly framing-relevant ones."""
        size = self.byte() % 32
        raw = self.data[self.pos : self.pos + size]
        self.pos += size
        flags = self.byte()
        if flags & 1:
            return raw  # sometimes any byte at all
        return bytes(ALPHABET[b % len(ALPHABET)] for b in raw)


class Model:
    """What came out of the framer, checked against the stream that went in."""

    def __init__(self, framer: LineFramer) -> None:
        self.framer = framer
        self.stream = bytearray()
        self.cursor = 0  # bytes of ``stream`` accounted for by what came out
        self.synced = True  # False after LineTooLong: the rest of that line is skipped
        self.only_feed = True

    def took_line(self, line: bytes) -> None:
        framer = self.framer
        if len(line) > framer.max_line_length:
            raise AssertionError(f"line of {len(line)} bytes over the limit")
        ends = (b"\n",) if framer.lenient else (framer.delimiter,)
        if any(end in line for end in ends):
            raise AssertionError(f"delimiter inside a line: {line!r}")
        if not self.synced:
            return
        start, stream = self.cursor, self.stream
        if stream[start : start + len(line)] != line:
            raise AssertionError(f"line {line!r} is not the stream's next bytes")
        after = start + len(line)
        if framer.lenient and stream[after : after + 2] == b"\r\n":
            self.cursor = after + 2
        elif framer.lenient and stream[after : after + 1] == b"\n":
            self.cursor = after + 1
        elif stream[after : after + len(framer.delimiter)] == framer.delimiter:
            self.cursor = after + len(framer.delimiter)
        else:
            raise AssertionError(f"line {line!r} does not end at a delimiter")

    def took_last_line(self, line: bytes) -> None:
        if self.synced and bytes(self.stream[self.cursor :]) != line:
            raise AssertionError(f"last line {line!r} is not the rest of the stream")
        self.cursor = len(self.stream)

    def took_raw(self, data: bytes) -> None:
        if self.synced:
            if self.stream[self.cursor : self.cursor + len(data)] != data:
                raise AssertionError("raw read is not the stream's next bytes")
            self.cursor += len(data)

    def check_accounts(self) -> None:
        if self.synced and self.cursor + self.framer.buffered != len(self.stream):
            raise AssertionError(
                f"{self.cursor} bytes out + {self.framer.buffered} buffered "
                f"!= {len(self.stream)} fed"
            )

    def check_bound(self) -> None:
        framer = self.framer
        bound = framer.max_line_length + len(framer.delimiter)
        if self.only_feed and framer.buffered > bound:
            raise AssertionError(f"{framer.buffered} bytes buffered between feeds (bound {bound})")


def give_back(script: Script, model: Model, lines: list[bytes]) -> None:
    """Use some of ``lines``; the rest was raw bytes: ``rewind`` or ``read_after``."""
    framer = model.framer
    used = script.byte() % (len(lines) + 1)
    model.only_feed = False
    for line in lines[:used]:
        model.took_line(line)
    how = script.byte() % 3
    if how == 0:
        framer.rewind(used)
        return
    # read_after(): the rest of what came (its fast path), or any count.
    n = len(model.stream) - model.cursor if how == 1 else script.byte() % 40
    raw = framer.read_after(used, n)
    if raw is not None:
        if len(raw) != n:
            raise AssertionError(f"read_after({used}, {n}) gave {len(raw)} bytes")
        model.took_raw(raw)


def one_input(data: bytes) -> None:
    script = Script(data)
    mode = script.byte() % 4
    limit = script.byte() % 48 + 1
    if mode == 3:
        delimiter, lenient = DELIMITERS[script.byte() % len(DELIMITERS)], False
    else:
        delimiter, lenient = (b"\r\n", mode == 1) if mode < 2 else (b"\n", True)
    framer = LineFramer(delimiter, max_line_length=limit, lenient=lenient)
    model = Model(framer)
    failed = False
    for _ in range(64):
        if not script.more():
            break
        op = script.byte() % 6
        if failed:
            framer.resync()  # what a protocol that answers an error and goes on does
            failed = False
            model.synced = False
        try:
            if op in (0, 1):
                chunk = script.chunk()
                model.stream += chunk
                try:
                    lines = framer.feed(chunk)
                except LineTooLong as exc:
                    if not exc.lines or script.byte() % 2:
                        raise
                    # A raw read follows one of the lines before the long
                    # one: the rest is given back, and nothing has failed.
                    give_back(script, model, exc.lines)
                    model.check_accounts()
                    continue
                if lines and script.byte() % 4 == 0:
                    give_back(script, model, lines)
                else:
                    framer.commit()
                    for line in lines:
                        model.took_line(line)
                model.check_bound()
            elif op == 2:
                chunk = script.chunk()
                model.stream += chunk
                framer.receive(chunk)
                model.only_feed = False
            elif op == 3:
                pulled = framer.next_line()
                if pulled is not None:
                    model.took_line(pulled)
            elif op == 4:
                n = script.byte() % 16
                raw = framer.read_exactly(n)
                if raw is not None:
                    if len(raw) != n:
                        raise AssertionError(f"read_exactly({n}) gave {len(raw)} bytes")
                    model.took_raw(raw)
            else:
                continue
            model.check_accounts()
        except LineTooLong as exc:
            for line in exc.lines:
                model.took_line(line)
            failed = True
            model.synced = False
    if failed:
        return
    try:
        last = framer.feed_eof()
    except LineTooLong:
        return
    if len(last) > 1:
        raise AssertionError(f"feed_eof gave {len(last)} lines")
    for line in last:
        model.took_last_line(line)
    if framer.buffered:
        raise AssertionError("bytes left in the buffer after feed_eof")
    try:
        framer.feed(b"x")
    except ProtocolError:
        pass
    else:
        raise AssertionError("feed after feed_eof was accepted")


def main() -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(one_input)


if __name__ == "__main__":
    main()
