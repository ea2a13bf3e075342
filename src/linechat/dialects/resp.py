"""Redis: inline commands out, RESP2 and RESP3 replies in (the RESP specification).

Each input line is sent as an inline command (Redis splits it into words and
honours quotes); an empty line is not sent (Redis would not answer it). A
reply is one RESP value: simple string, error, integer, bulk string (``$-1``
nil), array (nested, ``*-1`` nil), and RESP3's null, boolean, double, big
number, bulk error, verbatim string, map, set, push and attribute (which is
read and not shown). Errors (``-``, ``!``) are error replies. Values are
shown as ``redis-cli`` shows them on a terminal, or as ``redis-cli --raw``
does with ``raw``.
"""

from __future__ import annotations

from .base import MAX_COUNTED, Dialect, DialectError, Done, Event

__all__ = ["Resp", "Value", "format_value"]

#: Nesting deeper than this is refused (a bound on the parser's stack).
MAX_DEPTH = 128
_NIL, _ATTRIBUTE, _PLUS, _MINUS, _DOLLAR = b"_|+-$"
_SPECIAL = frozenset(b"_#|")
_OK, _ERROR = Done(), Done(error=True)
_AGGREGATES = frozenset(b"*%~>|")
_COUNTED = frozenset(b"$!=")
_LINES = frozenset(b"+-:_#,(")


class Value:
    """One RESP value: its type byte and its content (bytes, or a list of values).

    A plain class, not a dataclass: importing dataclasses costs start-up time.
    """

    __slots__ = ("data", "items", "kind", "size")

    def __init__(
        self, kind: int, data: bytes = b"", items: list[Value] | None = None, size: int = 0
    ) -> None:
        self.kind = kind
        self.data = data
        self.items: list[Value] = [] if items is None else items
        self.size = size  # items expected (an aggregate; a map counts keys and values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Value):
            return NotImplemented
        return (self.kind, self.data, self.items, self.size) == (
            other.kind,
            other.data,
            other.items,
            other.size,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return (
            f"Value(kind={self.kind}, data={self.data!r}, items={self.items!r}, size={self.size})"
        )


class Resp(Dialect):
    name = "redis"
    quit = b"QUIT"
    commands = (
        "PING", "ECHO", "GET", "SET", "DEL", "EXISTS", "EXPIRE", "TTL", "INCR", "DECR",
        "INCRBY", "MGET", "MSET", "KEYS", "SCAN", "TYPE", "HGET", "HSET", "HGETALL", "HDEL",
        "LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE", "LLEN", "SADD", "SREM", "SMEMBERS",
        "ZADD", "ZRANGE", "ZSCORE", "PUBLISH", "SUBSCRIBE", "INFO", "DBSIZE", "FLUSHDB",
        "FLUSHALL", "SELECT", "AUTH", "HELLO", "CLIENT", "CONFIG", "MULTI", "EXEC",
        "DISCARD", "WATCH", "QUIT", "XADD", "XRANGE", "OBJECT", "MEMORY", "COMMAND",
    )  # fmt: skip

    def start(self) -> None:
        self._stack: list[Value] = []
        self._bulk: Value | None = None  # a counted string whose bytes are awaited
        self._held = 0  # bytes (and a little per value) of the reply being read

    @property
    def mid_reply(self) -> bool:
        return bool(self._stack) or self._bulk is not None

    def submit(self, line: bytes) -> bytes:
        if not line.strip():
            return b""
        self.waiting = True
        return line + self.newline

    def feed(self, data: bytes) -> list[Event]:
        reader = self._reader
        if not self._stack and self._bulk is None and not reader.buffered:
            fast = self._fast(data)
            if fast is not None:
                return fast
        reader.feed(data)
        events: list[Event] = []
        while True:
            if self._bulk is not None:
                body = reader.exactly(self._bulk.size + 2)
                if body is None:
                    return events
                value, self._bulk = self._bulk, None
                value.data = body[:-2]
            else:
                line = reader.line()
                if line is None:
                    return events
                parsed = self._header(line)
                if parsed is None:
                    continue
                value = parsed
            self._complete(value, events)

    def _fast(self, data: bytes) -> list[Event] | None:
        """One whole simple reply or bulk string in ``data`` (the usual case), else None."""
        end = data.find(b"\n")
        if end < 2 or data[end - 1] != 13:
            return None
        kind = data[0]
        if kind in _LINES and end == len(data) - 1:
            payload = data[1 : end - 1]
        elif kind == _DOLLAR and data[1 : end - 1].isdigit():
            size = int(data[1 : end - 1])
            if len(data) != end + size + 3 or data[-2:] != b"\r\n":
                return None
            payload = data[end + 1 : -2]
        else:
            return None
        if kind in _SPECIAL:
            return None  # attributes, nil lengths...: the general path
        if kind == _PLUS or (self.raw and kind in _SIMPLE):  # shown as it came (format_value)
            text = payload
        else:
            text = format_value(Value(kind, payload), raw=self.raw)
        self.waiting = False
        if b"\n" in text:
            events: list[Event] = list(text.split(b"\n"))
            events.append(_ERROR if kind == _MINUS else _OK)
            return events
        return [text, _ERROR if kind == _MINUS else _OK]

    def _header(self, line: bytes) -> Value | None:
        """The value a header line starts; None when more is to come for it."""
        if not line:
            raise DialectError("an empty line where a RESP value was expected")
        kind, rest = line[0], line[1:]
        if kind in _LINES:
            return Value(kind, rest)
        if kind not in _AGGREGATES and kind not in _COUNTED:
            raise DialectError(f"not a RESP value: {line[:80]!r}")
        try:
            size = int(rest)
        except ValueError:
            raise DialectError(f"a bad RESP length: {line[:80]!r}") from None
        if size < 0:
            return Value(_NIL)  # $-1 and *-1: nil
        if size > MAX_COUNTED:
            raise DialectError(f"a RESP length of {size}")
        if kind in _COUNTED:
            self._bulk = Value(kind, size=size)
            return None
        value = Value(kind, size=size * 2 if kind in b"%|" else size)
        if value.size == 0:
            return value
        if len(self._stack) >= MAX_DEPTH:
            raise DialectError(f"RESP values nested more than {MAX_DEPTH} deep")
        self._stack.append(value)
        return None

    def _complete(self, value: Value, events: list[Event]) -> None:
        stack = self._stack
        if stack:  # a part of an aggregate: held until the whole reply is shown
            self._held += len(value.data) + 64
            if self._held > MAX_COUNTED:
                raise DialectError(f"a RESP reply holding more than {MAX_COUNTED} bytes")
        while stack:
            parent = stack[-1]
            parent.items.append(value)
            if len(parent.items) < parent.size:
                return
            value = stack.pop()
        self._held = 0
        if value.kind == _ATTRIBUTE:  # an attribute: the reply follows it
            return
        text = format_value(value, raw=self.raw)
        events.extend(text.split(b"\n"))
        self.waiting = False
        events.append(Done(error=value.kind in b"-!"))


# -- showing values, as redis-cli does ----------------------------------------------


def _repr(data: bytes) -> bytes:
    """A quoted string, escaped like redis-cli's (sdscatrepr)."""
    if data.isascii() and data.isalnum():
        return b'"' + data + b'"'
    out = bytearray(b'"')
    for byte in data:
        if byte in b'\\"':
            out += b"\\" + bytes((byte,))
        elif byte in _NAMED:
            out += _NAMED[byte]
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\x%02x" % byte
    return bytes(out + b'"')


_SIMPLE = frozenset(b"+-:,($")
_NAMED = {10: b"\\n", 13: b"\\r", 9: b"\\t", 7: b"\\a", 8: b"\\b"}
_EMPTY = {ord("*"): b"(empty array)", ord("%"): b"(empty hash)", ord("~"): b"(empty set)"}


def format_value(value: Value, *, raw: bool = False, indent: int = 0) -> bytes:
    """``value`` as redis-cli prints it (lines joined with LF, no final LF)."""
    kind = value.kind
    if kind == _PLUS or (raw and kind in _SIMPLE):  # the commonest first
        return value.data
    if kind == _DOLLAR and not raw:
        return _repr(value.data)
    if raw:
        if kind in _AGGREGATES:
            return b"\n".join(format_value(item, raw=True) for item in value.items)
        if kind == ord("_"):
            return b""
        if kind == ord("#"):
            return b"1" if value.data == b"t" else b"0"
        if kind == ord("="):
            return value.data[4:]
        return value.data
    if kind == ord("+"):
        return value.data
    if kind in b"-!":
        return b"(error) " + value.data
    if kind == ord(":"):
        return b"(integer) " + value.data
    if kind == ord(","):
        return b"(double) " + value.data
    if kind == ord("("):
        return b"(big number) " + value.data
    if kind == ord("#"):
        return b"(true)" if value.data == b"t" else b"(false)"
    if kind == ord("_"):
        return b"(nil)"
    if kind == ord("="):
        return value.data[4:]
    if kind == ord("$"):
        return _repr(value.data)
    if not value.items:
        return _EMPTY.get(kind, b"(empty array)")
    pairs = kind in b"%|"
    count = len(value.items) // 2 if pairs else len(value.items)
    width = len(str(count))
    mark = b"#" if pairs else b"~" if kind == ord("~") else b")"
    inner = indent + width + 2
    lines: list[bytes] = []
    for index in range(count):
        head = b" " * (indent if index else 0) + b"%*d%s " % (width, index + 1, mark)
        if pairs:
            key = format_value(value.items[2 * index], indent=inner)
            item = format_value(value.items[2 * index + 1], indent=inner)
            lines.append(head + key + b" => " + item)
        else:
            lines.append(head + format_value(value.items[index], indent=inner))
    return b"\n".join(lines)
