"""Sans-I/O line framing: bytes go in, lines come out.

The framer knows nothing of sockets or asyncio. It owns every framing rule:
the delimiter, the lenient bare-LF mode, the line-length limit, counted raw
reads and what is left at end of stream.

Two ways to read, over one buffer, freely mixed:

* **Batch** (the fast path): ``feed(data)`` returns every line that ``data``
  completes. A chunk is split with one C-level ``bytes.split``; nothing is
  copied per line.
* **Pull**: ``receive(data)`` only buffers; ``next_line()`` and
  ``read_exactly(n)`` take one item at a time, for protocols that switch to
  counted payloads (memcached values, SMTP-like bodies).

A caller of ``feed`` that learns, while handling the returned lines, that raw
bytes follow the k-th line calls ``rewind(k)``: the lines after it become
unread bytes again, exactly as they arrived, and pull reads go on from there.
"""

from __future__ import annotations

from .errors import LineTooLong, ProtocolError

__all__ = ["DEFAULT_MAX_LINE_LENGTH", "LineFramer"]

DEFAULT_MAX_LINE_LENGTH = 65536


def _not_bytes(data: object) -> TypeError:
    """The error for input that is not ``bytes``: the same in the pure and the compiled build."""
    return TypeError(f"data must be bytes, not {type(data).__name__}")


class LineFramer:
    """Split a byte stream into lines.

    ``delimiter`` is any non-empty ``bytes`` (CRLF by default; another type
    raises :class:`TypeError`, an empty one :class:`ValueError`). With
    ``lenient=True`` a line also ends at a bare LF, and a CR just before an LF
    is dropped; the delimiter must then be CRLF or LF.

    A line longer than ``max_line_length`` (delimiter excluded) raises
    :class:`LineTooLong` as soon as the limit is crossed. The exception's
    ``lines`` are the complete lines delivered before it. After it the framer
    refuses input until :meth:`resync` is called, which discards the rest of
    the over-long line (through its delimiter) and goes on.

    The buffer never holds more than ``max_line_length`` plus one chunk while
    reading lines (between feeds: the limit plus a delimiter's first bytes, so a
    line of exactly the limit whose delimiter arrives split is fine). A raw
    read of ``n`` bytes buffers up to ``n`` bytes: bound ``n`` in the protocol.
    """

    __slots__ = (
        "_buf",
        "_discarding",
        "_end",
        "_eof",
        "_failed",
        "_fast",
        "_head",
        "_heads",
        "_lenient",
        "_max",
        "_overlap",
        "_scan_from",
        "_sep",
        "_source",
    )

    def __init__(
        self,
        delimiter: bytes = b"\r\n",
        *,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        lenient: bool = False,
    ) -> None:
        # Checked before use, so the pure and the compiled build raise alike
        # (mypyc checks an argument's type on entry).
        if not isinstance(delimiter, bytes):
            raise TypeError(f"delimiter must be bytes, not {type(delimiter).__name__}")
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        if max_line_length < 1:
            raise ValueError("max_line_length must be at least 1")
        if lenient and delimiter not in (b"\r\n", b"\n"):
            raise ValueError("lenient mode needs the delimiter CRLF or LF")
        self._lenient = lenient
        # In lenient mode every line ends at an LF; the CR is stripped after.
        self._sep = b"\n" if lenient else delimiter
        self._overlap = len(self._sep) - 1
        self._end = self._sep[-1]  # a chunk without this byte completes no line
        # A buffer whose last byte is not in here ends with no delimiter's start.
        self._heads = self._sep[:-1]
        self._max = max_line_length
        self._buf = bytearray()
        self._scan_from = 0  # no delimiter starts before this offset of _buf
        self._source: bytes | None = None  # what the last feed() split...
        self._head = b""  # ...after these bytes, which were buffered before it
        self._failed = False
        self._discarding = False
        self._eof = False
        # True while feed() may take its fast path: strict mode, not failed,
        # discarding or closed, and the buffer known to hold no delimiter (the
        # unterminated tail of what feed() split). Only _feed_slow() sets it again.
        self._fast = True  # normal state: the buffer holds no complete line

    # -- what the caller can ask -------------------------------------------

    @property
    def delimiter(self) -> bytes:
        return b"\r\n" if self._lenient else self._sep

    @property
    def lenient(self) -> bool:
        return self._lenient

    @property
    def max_line_length(self) -> int:
        return self._max

    @property
    def failed(self) -> bool:
        """Stopped by :class:`LineTooLong`, until :meth:`resync` (or a :meth:`rewind` past it)."""
        return self._failed

    @property
    def buffered(self) -> int:
        """How many received bytes are held and not yet handed out."""
        return len(self._buf)

    # -- batch -------------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` (``bytes``); return the lines it completes, delimiters removed."""
        # Hot path: called once per chunk, often with tiny chunks, so the
        # common cases run inline with as few attribute reads as possible.
        if type(data) is not bytes and not isinstance(data, bytes):
            # bytearray would give bytearray lines (compiled: a TypeError on entry);
            # type() first: mypyc makes it a pointer compare.
            raise _not_bytes(data)
        if not self._fast:
            return self._feed_slow(data)
        buf = self._buf
        if not buf:
            # _split() then _lines(), inline for the usual chunk: whole lines.
            if self._lenient:
                if 13 not in data:  # no CR (a memchr): split on LF as it is
                    lines = data.split(b"\n")
                    size = len(data)
                else:
                    lines = data.split(b"\r\n")
                    n = len(lines)
                    # Bare LFs too? A chunk of one or two lines (two or three
                    # parts, a command and its data block) is asked with memchrs:
                    # bytes.count() parses its arguments the slow way.
                    if (
                        (10 in lines[0] or (lines[1] and 10 in lines[1]))
                        if n == 2
                        else (10 in lines[0] or 10 in lines[1] or (lines[2] and 10 in lines[2]))
                        if n == 3
                        else data.count(b"\n") != n - 1
                    ):
                        return self._split(data)
                    size = len(data) - n + 1
            else:
                lines = data.split(self._sep)
                size = len(data)
            tail = lines.pop()
            if size > self._max:
                self._check_limit(lines, tail, size, b"", data)
            if tail:
                buf += tail
                n, overlap = len(tail), self._overlap
                self._scan_from = n - overlap if n > overlap else 0
            else:
                self._scan_from = 0
            self._source = data
            self._head = b""
            return lines
        if self._lenient:  # a CR buffered may pair with an LF in ``data``
            return self._feed_slow(data)
        # The buffer holds no delimiter, so one can only end in ``data``: the
        # ``int in bytes`` test (a memchr) saves most searches.
        if self._end in data:
            if buf[-1] in self._heads:
                # A delimiter may straddle the chunks: search the joined bytes.
                buf += data
                if buf.find(self._sep, self._scan_from) >= 0:
                    data = bytes(buf)
                    buf.clear()
                    self._scan_from = 0
                    return self._split(data)
                return self._hold(buf)
            lines = data.split(self._sep)
            if len(lines) > 1:
                # No delimiter starts in the buffer: split ``data`` alone, so
                # the chunk is copied once, and prepend the buffer to line one.
                head = bytes(buf)
                buf.clear()
                lines[0] = head + lines[0]
                tail = lines.pop()
                size = len(head) + len(data)
                if size > self._max:
                    self._check_limit(lines, tail, size, head, data)
                buf += tail
                n = len(tail)
                overlap = self._overlap
                self._scan_from = n - overlap if n > overlap else 0
                self._source = data
                self._head = head
                return lines
        buf += data
        self._source = b""  # rewind() has nothing to give back
        n = len(buf)
        if n > self._max and self._over_limit(buf):
            self._overflow_unterminated([])
        overlap = self._overlap
        self._scan_from = n - overlap if n > overlap else 0
        return []

    def _hold(self, buf: bytearray) -> list[bytes]:
        """feed() completed no line: check the limit, note where to search next."""
        self._source = b""
        n = len(buf)
        if n > self._max and self._over_limit(buf):
            self._overflow_unterminated([])
        self._scan_from = max(0, n - self._overlap)
        return []

    def _feed_slow(self, data: bytes) -> list[bytes]:
        """feed() in any state: the buffer may hold lines (receive(), rewind())."""
        self._check_open()
        self._source = b""  # until lines are split, rewind() has nothing to give back
        buf = self._buf
        if self._discarding:
            if not self._discard(data):
                return []
            data = bytes(buf)
            buf.clear()
        elif buf:
            buf += data
            if buf.find(self._sep, self._scan_from) < 0:
                self._hold(buf)
                self._fast = True
                return []
            data = bytes(buf)
            buf.clear()
            self._scan_from = 0
        lines = self._split(data)
        self._fast = True
        return lines

    def commit(self) -> None:
        """Every line of the last ``feed()`` was used: ``rewind()`` is off.

        A caller that keeps the framer between chunks should call it: the
        chunk that ``rewind()`` would need stays referenced until then, and a
        chunk fresh from ``recv()`` can pin far more memory than its length.
        """
        # LineProtocol.data_received does the same inline: keep the two in step.
        self._source = None
        self._head = b""

    def shrink(self) -> None:
        """Free the buffer's spare room, for input that will wait a while.

        A bytearray keeps the room of what was taken from its front (until
        half of it is gone) and of its growth: after a big read, up to a
        read's worth more than it holds. Copies what is buffered (the same
        bytes: ``rewind()`` still works).
        """
        buf = self._buf
        if buf.__alloc__() - len(buf) > 4096:
            self._buf = bytearray(buf)

    def rewind(self, used: int) -> None:
        """Give back the lines of the last ``feed()`` after the first ``used``.

        Their bytes, delimiters included, become unread input again, ahead of
        anything buffered, exactly as the peer sent them. Call it before any
        other call on the framer but ``receive``.

        It may also follow a :class:`LineTooLong` raised by ``feed()`` whose
        ``lines`` are not empty, with ``used`` at most their number: a caller
        that learns from them that raw bytes follow (a counted read) gives
        back everything after line ``used``, the over-long "line" included,
        and the framer goes on as if it had not failed. The line limit is for
        lines, not for the raw bytes that follow a command in the same chunk.
        """
        source = self._source
        if source is None:
            raise ProtocolError("rewind() must follow feed() directly")
        self._source = None
        if not source:
            return
        self._fast = False  # the buffer holds lines again
        if self._head:
            source = self._head + source
        if self._failed:
            # feed() raised: nothing was added since (receive() refuses while
            # failed), so the buffer is exactly the input after line ``used``.
            self._buf[:] = source[self._offset_after(source, used) :]
            self._failed = self._discarding = False
            self._scan_from = 0
            return
        # The buffer holds the unterminated tail of ``source``, then whatever
        # receive() added since: put the given-back lines in front of it.
        sep = self._sep
        if any(sep[:k] == sep[-k:] for k in range(1, len(sep))):
            # A delimiter that can overlap itself (b"aa", CRLF CRLF): find the
            # last match where split() found it, scanning left to right.
            end = self._offset_after(source, source.count(sep))
        else:
            last = source.rfind(sep)
            end = last + len(sep) if last >= 0 else 0
        self._buf[:0] = source[self._offset_after(source, used) : end]
        self._scan_from = 0

    def fed_lines(self) -> int:
        """How many lines the last ``feed()`` returned, while ``rewind()`` can
        still give them back (0 after :meth:`commit` or a pull read)."""
        source = self._source
        if not source:
            return 0
        return (self._head + source if self._head else source).count(self._sep)

    def read_after(self, used: int, n: int) -> bytes | None:
        """``rewind(used)`` then ``read_exactly(n)``, cheap in the usual case.

        A command and its counted payload often arrive in one chunk, the
        payload ending it (a memcached ``set`` and its data block): then the
        ``n`` bytes are sliced off the chunk and nothing is buffered or split
        again. Otherwise it is exactly the two calls (``None`` until ``n``
        bytes are there, the rest unread), with ``rewind``'s rules. After
        :meth:`feed_eof` it is ``None``: no payload will come.
        """
        source = self._source
        if source and not self._buf and not self._head and not self._failed:
            # The chunk is all in ``source``, its tail was empty and nothing was
            # received since: the raw bytes end it if the lengths add up.
            if used == 1:  # the usual: the command was the chunk's first line
                # partition(): one C call that parses no arguments (index()
                # does, the slow way); what it copies is at most the chunk.
                rest = source.partition(self._sep)[2]
                if len(rest) == n:
                    self._source = None
                    return rest
            else:
                start = self._offset_after(source, used)
                if len(source) - start == n:
                    self._source = None
                    return source[start:]
        if self._eof:
            return None
        self.rewind(used)
        return self.read_exactly(n)

    def _split(self, data: bytes) -> list[bytes]:
        """Split ``data`` (the buffer is empty); keep its unterminated tail."""
        if self._lenient and 13 in data:  # a CR (int in bytes: a memchr)
            # Split on CRLF; only if bare LFs are left, pay for a copy.
            lines = data.split(b"\r\n")
            if data.count(b"\n") == len(lines) - 1:
                return self._lines(lines, len(data) - len(lines) + 1, b"", data)
            text = data.replace(b"\r\n", b"\n")
            return self._lines(text.split(b"\n"), len(text), b"", data)
        return self._lines(data.split(self._sep), len(data), b"", data)

    def _lines(self, lines: list[bytes], size: int, head: bytes, data: bytes) -> list[bytes]:
        """Finish a feed: ``lines`` were split from ``head + data`` (``size`` bytes)."""
        tail = lines.pop()
        if size > self._max:
            self._check_limit(lines, tail, size, head, data)
        if tail:
            self._buf += tail
            n, overlap = len(tail), self._overlap
            self._scan_from = n - overlap if n > overlap else 0
        else:
            self._scan_from = 0
        self._source = data
        self._head = head
        return lines

    def _check_limit(
        self, lines: list[bytes], tail: bytes, size: int, head: bytes, data: bytes
    ) -> None:
        """Raise :class:`LineTooLong` if a line split from ``head + data`` is over the limit."""
        # The lines and the tail hold ``size`` minus the delimiters' bytes: if
        # that is within the limit, no line can be over it (no per-line scan).
        if size - len(lines) * (self._overlap + 1) <= self._max:
            return
        # Kept for rewind(): the lines before the over-long one may start a raw read.
        self._source = data
        self._head = head
        # Terminated lines come first in the stream, so they are checked first.
        if lines and max(map(len, lines)) > self._max:
            self._overflow_terminated(head + data, lines, tail)
        if len(tail) > self._max and self._over_limit(tail):
            self._overflow_unterminated(lines)

    # -- pull --------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Add ``data`` to the buffer without splitting it (``rewind`` still works)."""
        if not isinstance(data, bytes):
            raise _not_bytes(data)
        self._check_open()
        if self._discarding:
            self._discard(data)
        elif data:
            self._buf += data
            self._fast = False  # the buffer may now hold lines

    def next_line(self) -> bytes | None:
        """Take one complete line from the buffer, or ``None`` if none is there."""
        self._check_open()
        self._source = None
        buf = self._buf
        end = buf.find(self._sep, self._scan_from)
        if end < 0:
            self._scan_from = max(0, len(buf) - self._overlap)
            if len(buf) > self._max and self._over_limit(buf):
                self._overflow_unterminated([])
            if not self._discarding:
                self._fast = True  # no line is buffered: feed() may take its fast path
            return None
        line = bytes(buf[:end])
        del buf[: end + len(self._sep)]
        self._scan_from = 0
        if self._lenient and line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self._max:
            self._failed = True
            self._fast = False
            raise LineTooLong(self._max)
        return line

    def split_buffered(self, size: int, count: int) -> list[bytes]:
        """Split the first lines of the buffer: those ending within ``size`` bytes
        (at least one), at most ``count``; the rest stays raw.

        A backlog handed out a batch at a time (a short line costs far more as a
        bytes object than as buffered bytes). Unlike :meth:`next_line`, the batch
        is split as :meth:`feed` splits, so :meth:`rewind` can follow it: a
        counted read among its lines gets the bytes after them as they came.
        """
        self._check_open()
        buf = self._buf
        if self._discarding and not self._discard(b""):
            return []
        sep = self._sep
        cut = buf.rfind(sep, 0, size)
        if cut < 0:
            cut = buf.find(sep)
            if cut < 0:
                return self.feed(b"")  # no complete line: check the limit, note the scan
        end = cut + len(sep)
        if buf.count(sep, 0, end) > count:
            end = 0
            for _ in range(count):
                end = buf.index(sep, end) + len(sep)
        head = bytes(buf[:end])
        del buf[:end]  # (cheap: a bytearray drops its front by moving its start)
        # feed() the head with the rest set aside (not copied), then put it back.
        self._buf = bytearray()
        try:
            lines = self.feed(head)
        except LineTooLong:
            # rewind() after a failed feed() gives back its source from line
            # ``used`` on: make that the head and the rest, as the buffer was.
            self._source = head + bytes(buf)
            buf[:0] = self._buf  # what follows the over-long line in the head
            self._buf = buf
            raise
        if self._buf:  # a tail (a delimiter that can overlap itself): it comes first
            buf[:0] = self._buf
        self._buf = buf
        if buf:
            self._fast = False  # the buffer may hold lines
        return lines

    def read_exactly(self, n: int) -> bytes | None:
        """Take exactly ``n`` raw bytes, or ``None`` until that many are buffered."""
        self._check_open()
        self._source = None
        if n < 0:
            raise ValueError("n must be >= 0")
        buf = self._buf
        if len(buf) < n:
            return None
        out = bytes(buf[:n])
        del buf[:n]
        self._scan_from = 0
        return out

    # -- end of stream and errors ------------------------------------------

    def feed_eof(self) -> list[bytes]:
        """End of stream: return the unterminated last line, if any bytes are left.

        After this the framer takes no more input. In discard mode the rest of
        the over-long line is dropped. A last line over the limit raises
        :class:`LineTooLong`.
        """
        self._source = b""  # its line ends the stream: rewind() has nothing to give back
        self._eof = True
        self._fast = False
        if self._failed or self._discarding or not self._buf:
            self._buf.clear()
            return []
        last = bytes(self._buf)
        self._buf.clear()
        if len(last) > self._max:
            # Only possible when its last bytes looked like a delimiter's start.
            self._failed = True
            raise LineTooLong(self._max)
        return [last]

    def resync(self) -> None:
        """After :class:`LineTooLong`: drop the rest of that line and go on."""
        self._failed = False
        self._source = None  # the over-long line is dropped: no rewind() past it
        self._head = b""

    def _check_open(self) -> None:
        if self._failed:
            raise ProtocolError("framer stopped after LineTooLong; call resync() to go on")
        if self._eof:
            raise ProtocolError("framer is closed: feed_eof() was called")

    def _over_limit(self, pending: bytes | bytearray) -> bool:
        """Is the unterminated line in ``pending`` (longer than the limit) over it?

        Its last bytes may be the start of a delimiter (a CR whose LF is still
        on the way): they are not line bytes, so a line of exactly the limit
        is not refused because its delimiter arrives split.
        """
        excess = len(pending) - self._max
        delimiter = self.delimiter  # lenient: a CR before the LF is not line bytes either
        return not any(pending.endswith(delimiter[:k]) for k in range(excess, len(delimiter)))

    def _overflow_unterminated(self, lines: list[bytes]) -> None:
        self._buf.clear()
        self._scan_from = 0
        self._failed = True
        self._discarding = True
        self._fast = False
        raise LineTooLong(self._max, lines)

    def _overflow_terminated(self, data: bytes, lines: list[bytes], tail: bytes) -> None:
        bad = next(i for i, line in enumerate(lines) if len(line) > self._max)
        self._buf.clear()
        self._buf += data[self._offset_after(data, bad + 1) :]
        self._scan_from = 0
        self._failed = True
        self._fast = False
        raise LineTooLong(self._max, lines[:bad])

    def _discard(self, data: bytes) -> bool:
        """Drop bytes through the next delimiter; True once it is found."""
        buf = self._buf
        buf += data
        end = buf.find(self._sep)
        if end < 0:
            # Keep just enough to recognise a delimiter split across chunks.
            del buf[: len(buf) - self._overlap]
            return False
        del buf[: end + len(self._sep)]
        self._discarding = False
        self._scan_from = 0
        return True

    def _offset_after(self, data: bytes, lines: int) -> int:
        """Where the input after the first ``lines`` line ends of ``data`` starts."""
        pos = 0
        sep, step = self._sep, len(self._sep)
        for _ in range(lines):
            pos = data.index(sep, pos) + step
        return pos
