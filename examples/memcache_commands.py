"""Sans-I/O parsing of memcached's text protocol: one command line in, a command or an error out.

No sockets, no asyncio: :func:`parse` turns a line (without its line end)
into one of the command classes below, or into an :class:`Error` holding the
exact line memcached 1.6 answers (``None`` when ``noreply`` silences it).
The rules follow what the real server does, quirks included:

- tokens are separated by spaces only (a tab is part of a token); a NUL byte
  ends the line; after 23 tokens the rest of the line is one more token, so
  any command but ``get``/``gets`` with more tokens is an ``ERROR``;
- numbers are read as C's ``strtoul``/``strtol``/``strtoull`` read them
  (leading whitespace and a sign allowed; flags are kept modulo 2**32;
  lengths and expiry times are 32-bit signed);
- a ``noreply`` last token silences the error lines of the storage,
  arithmetic, ``delete``, ``touch`` and ``flush_all`` commands too.

:func:`parse_counter` reads a stored value the way ``incr``/``decr`` do and
:func:`item_size` is memcached's size of an item, for the ``-I`` limit.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BAD_FORMAT",
    "ERROR",
    "KEY_MAX_LENGTH",
    "Arithmetic",
    "Command",
    "Delete",
    "Error",
    "FlushAll",
    "Quit",
    "Retrieve",
    "Storage",
    "Touch",
    "Version",
    "item_size",
    "parse",
    "parse_counter",
]

KEY_MAX_LENGTH = 250
#: memcached keeps 23 tokens; the rest of the line is one more token.
MAX_TOKENS = 23
INT_MAX = 2**31 - 1
U64 = 2**64

ERROR = b"ERROR"
BAD_FORMAT = b"CLIENT_ERROR bad command line format"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument"
BAD_DELETE = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
NOREPLY = b"noreply"
_SPACE = b" \t\n\v\f\r"  # C's isspace()
_DIGITS = b"0123456789"

STORAGE_VERBS = frozenset({b"set", b"add", b"replace", b"append", b"prepend", b"cas"})
_PLAIN_STORAGE = STORAGE_VERBS - {b"cas"}


@dataclass(slots=True)
class Error:
    """Answer ``line`` (None: nothing, noreply) and read the next command."""

    line: bytes | None


@dataclass(slots=True)
class Storage:
    """set/add/replace/append/prepend/cas: ``length`` + 2 bytes of data follow."""

    verb: bytes
    key: bytes
    flags: int
    exptime: int
    length: int
    cas: int
    noreply: bool


@dataclass(slots=True)
class Retrieve:
    """get/gets: ``with_cas`` for gets."""

    keys: list[bytes]
    with_cas: bool


@dataclass(slots=True)
class Delete:
    key: bytes
    noreply: bool


@dataclass(slots=True)
class Arithmetic:
    """incr (``incr`` True) or decr by ``delta``."""

    key: bytes
    delta: int
    incr: bool
    noreply: bool


@dataclass(slots=True)
class Touch:
    key: bytes
    exptime: int
    noreply: bool


@dataclass(slots=True)
class FlushAll:
    delay: int
    noreply: bool


@dataclass(slots=True)
class Version:
    pass


@dataclass(slots=True)
class Quit:
    pass


Command = Error | Storage | Retrieve | Delete | Arithmetic | Touch | FlushAll | Version | Quit


def item_size(key_length: int, value_length: int, flags: int) -> int:
    """memcached's size of an item: header, key, flags if not 0, value and its CRLF, CAS."""
    return 48 + key_length + 1 + (4 if flags else 0) + value_length + 2 + 8


# -- numbers as C reads them ----------------------------------------------------


def _c_integer(text: bytes) -> tuple[int, int] | None:
    """strtol-style prefix: (value, end) or None when no digits or junk follows."""
    if text.isdigit():  # the common case
        return int(text), len(text)
    n, i = len(text), 0
    while i < n and text[i] in _SPACE:
        i += 1
    negative = i < n and text[i] == 0x2D  # '-'
    if i < n and text[i] in b"+-":
        i += 1
    start = i
    while i < n and text[i] in _DIGITS:
        i += 1
    if i == start or (i < n and text[i] not in _SPACE and text[i] != 0):
        return None
    value = int(text[start:i])
    return (-value if negative else value), i


def strtoull(text: bytes) -> int | None:
    """memcached's safe_strtoull: None where it fails."""
    if text.isdigit() and len(text) < 19:  # the common case: plain digits, no overflow
        return int(text)
    parsed = _c_integer(text)
    if parsed is None:
        return None
    value, end = parsed
    if abs(value) >= U64:  # ERANGE
        return None
    value %= U64  # strtoull negates in unsigned arithmetic
    if value >= 2**63 and b"-" in text[:end]:
        return None
    return value


def strtoul32(text: bytes) -> int | None:
    """safe_strtoul into a uint32_t (flags): 64-bit strtoul, then truncated."""
    value = strtoull(text)
    return None if value is None else value & 0xFFFFFFFF


def strtol32(text: bytes) -> int | None:
    """safe_strtol into an int32_t (exptime, length): 64-bit strtol, then truncated."""
    if text.isdigit() and len(text) < 10:  # the common case: fits as it is
        return int(text)
    parsed = _c_integer(text)
    if parsed is None or not -(2**63) <= parsed[0] < 2**63:
        return None
    return (parsed[0] + 2**31) % 2**32 - 2**31


def parse_counter(value: bytes) -> int | None:
    """A stored value as incr/decr read it (it is followed by CRLF in memcached)."""
    return strtoull(value.split(b"\0", 1)[0])


# -- commands -----------------------------------------------------------------


def parse(line: bytes) -> Command:
    """One command line (no line end) -> a command, or the error to answer."""
    if 0 in line:  # a NUL (int in bytes: a memchr, no TypeError tried first)
        line = line[: line.index(b"\0")]
    tokens = line.split(b" ")
    if b"" in tokens:
        tokens = [token for token in tokens if token]
    if not tokens or len(tokens[0]) < 2:
        return Error(ERROR)
    verb = tokens[0]
    if verb == b"get" or verb == b"gets":
        if len(tokens) < 2:
            return Error(ERROR)
        keys = tokens[1:]
        if max(map(len, keys)) > KEY_MAX_LENGTH:
            return Error(BAD_FORMAT)
        return Retrieve(keys, verb == b"gets")
    if len(tokens) == 5 and verb in _PLAIN_STORAGE:
        # The common storage line: small plain numbers, parsed without C's rules.
        key, flag_text, time_text, length_text = tokens[1:5]
        if (
            len(key) <= KEY_MAX_LENGTH
            and len(flag_text) < 10
            and len(time_text) < 10
            and len(length_text) < 10
            and flag_text.isdigit()
            and time_text.isdigit()
            and length_text.isdigit()
        ):
            flags, exptime, length = int(flag_text), int(time_text), int(length_text)
            return Storage(verb, key, flags, exptime, length, 0, False)
    # Every other command sees at most 23 tokens and one for the rest.
    count = len(tokens) if len(tokens) <= MAX_TOKENS else MAX_TOKENS + 1
    if verb in STORAGE_VERBS:
        return _storage(verb, tokens, count)
    if verb == b"incr" or verb == b"decr":
        if count not in (3, 4):
            return Error(ERROR)
        noreply = tokens[-1] == NOREPLY
        if len(tokens[1]) > KEY_MAX_LENGTH:
            return _error(BAD_FORMAT, noreply)
        delta = strtoull(tokens[2])
        if delta is None:
            return _error(BAD_DELTA, noreply)
        return Arithmetic(tokens[1], delta, verb == b"incr", noreply)
    if verb == b"delete":
        return _delete(tokens, count)
    if verb == b"touch":
        if count not in (3, 4):
            return Error(ERROR)
        noreply = tokens[-1] == NOREPLY
        if len(tokens[1]) > KEY_MAX_LENGTH:
            return _error(BAD_FORMAT, noreply)
        expiry = strtol32(tokens[2])
        if expiry is None:
            return _error(BAD_EXPTIME, noreply)
        return Touch(tokens[1], expiry, noreply)
    if verb == b"flush_all":
        if count > 3:
            return Error(ERROR)
        noreply = tokens[-1] == NOREPLY
        delay = 0
        if count != (2 if noreply else 1):
            parsed = strtol32(tokens[1])
            if parsed is None:
                return _error(BAD_EXPTIME, noreply)
            delay = parsed
        return FlushAll(delay, noreply)
    if verb == b"version":
        return Version()
    if verb == b"quit":
        return Quit()
    return Error(ERROR)


def _error(line: bytes, noreply: bool) -> Error:
    return Error(None if noreply else line)


def _storage(verb: bytes, tokens: list[bytes], count: int) -> Command:
    is_cas = verb == b"cas"
    if count not in ((6, 7) if is_cas else (5, 6)):
        return Error(ERROR)
    noreply = tokens[-1] == NOREPLY
    key = tokens[1]
    if len(key) > KEY_MAX_LENGTH:
        return _error(BAD_FORMAT, noreply)
    flags = strtoul32(tokens[2])
    exptime = strtol32(tokens[3])
    length = strtol32(tokens[4])
    if flags is None or exptime is None or length is None:
        return _error(BAD_FORMAT, noreply)
    cas = 0
    if is_cas:
        unique = strtoull(tokens[5])
        if unique is None:
            return _error(BAD_FORMAT, noreply)
        cas = unique
    if length < 0 or length > INT_MAX - 2:
        return _error(BAD_FORMAT, noreply)
    return Storage(verb, key, flags, exptime, length, cas, noreply)


def _delete(tokens: list[bytes], count: int) -> Command:
    if count not in (2, 3, 4):
        return Error(ERROR)
    noreply = False
    if count > 2:
        hold_is_zero = tokens[2] == b"0"
        noreply = tokens[-1] == NOREPLY
        valid = (count == 3 and (hold_is_zero or noreply)) or (
            count == 4 and hold_is_zero and noreply
        )
        if not valid:
            return _error(BAD_DELETE, noreply)
    if len(tokens[1]) > KEY_MAX_LENGTH:
        return _error(BAD_FORMAT, noreply)
    return Delete(tokens[1], noreply)
