"""IRC messages, sans-I/O: a line in, prefix/command/params out (or a clear error).

Client-to-server messages of RFC 1459/2812 as the modern IRC client protocol
document describes them: ``[':' prefix ' '] command [params] [' :' trailing]``.
Everything stays bytes, so UTF-8 (or anything else a client sends in a
message) passes through untouched. IRCv3 message tags are not supported: a
leading ``@tags`` word is skipped.

Also here: the rfc1459 case mapping, the nick and channel name rules, and
the formatter every reply goes through.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CHANNELLEN",
    "MAX_LINE",
    "MAX_PARAMS",
    "NICKLEN",
    "IRCParseError",
    "Message",
    "casefold",
    "fit_text",
    "format_message",
    "parse",
    "valid_channel",
    "valid_nick",
]

#: The longest line on the wire, CRLF included.
MAX_LINE = 512
#: The most parameters a message has (RFC 2812).
MAX_PARAMS = 15
NICKLEN = 30
CHANNELLEN = 50

_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~"
_LOWER = b"abcdefghijklmnopqrstuvwxyz{}|^"
_CASEMAP = bytes.maketrans(_UPPER, _LOWER)
_COMMAND_UPPER = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")

_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset(b"0123456789")
_SPECIAL = frozenset(b"[]\\`_^{|}")
_NICK_FIRST = _LETTERS | _SPECIAL
_NICK_REST = _NICK_FIRST | _DIGITS | frozenset(b"-")
# Bytes a channel name may not hold: NUL, BEL, CR, LF, space, comma, colon.
_CHANNEL_BAD = frozenset(b"\x00\x07\r\n ,:")


class IRCParseError(ValueError):
    """A line that is not an IRC message; ``command`` is what could be read of it."""

    def __init__(self, reason: str, command: bytes = b"*") -> None:
        super().__init__(reason)
        self.reason = reason
        self.command = command


class Message(NamedTuple):
    """One parsed message. ``command`` is upper-cased; ``params`` the trailing one included."""

    prefix: bytes | None
    command: bytes
    params: list[bytes]


def casefold(name: bytes) -> bytes:
    """The rfc1459 case mapping: A-Z and ``[]\\~`` fold to a-z and ``{}|^``."""
    return name.translate(_CASEMAP)


def parse(line: bytes) -> Message | None:
    """Parse one line (without its CRLF). ``None`` for an empty line (to be ignored).

    Raises :class:`IRCParseError` for a line with no usable command: a prefix
    alone, a command that is neither letters nor a three-digit numeric.
    """
    rest = line.lstrip(b" ")
    if rest[:1] == b"@":  # IRCv3 tags: not supported, skipped
        _, _, rest = rest.partition(b" ")
        rest = rest.lstrip(b" ")
    prefix: bytes | None = None
    if rest[:1] == b":":
        prefix, _, rest = rest.partition(b" ")
        prefix = prefix[1:]
        rest = rest.lstrip(b" ")
        if not rest:
            raise IRCParseError("a prefix and no command")
    if not rest:
        return None
    head, colon, trailing = rest.partition(b" :")
    words = [word for word in head.split(b" ") if word]  # spaces only: a tab is a byte
    if not words:
        raise IRCParseError("no command")
    command = words[0]
    if command.isalpha() and command.isascii():
        command = command.translate(_COMMAND_UPPER)
    elif not (len(command) == 3 and command.isdigit()):
        raise IRCParseError("not a command", command[:32])
    params = words[1:]
    if colon:
        params.append(trailing)
    if len(params) > MAX_PARAMS:
        # RFC 2812: the 15th parameter takes the rest of the line.
        params[MAX_PARAMS - 1 :] = [b" ".join(params[MAX_PARAMS - 1 :])]
    return Message(prefix, command, params)


def valid_nick(nick: bytes) -> bool:
    """RFC 2812 nicks: a letter or ``[]\\`_^{|}`` first, then those, digits and ``-``."""
    return (
        0 < len(nick) <= NICKLEN
        and nick[0] in _NICK_FIRST
        and all(byte in _NICK_REST for byte in nick)
    )


def valid_channel(name: bytes) -> bool:
    """``#`` and 1 to CHANNELLEN-1 bytes with no space, comma, colon, BEL, NUL, CR, LF."""
    return (
        1 < len(name) <= CHANNELLEN
        and name[0] == 0x23
        and not any(byte in _CHANNEL_BAD for byte in name)
    )


def format_message(
    prefix: bytes | None, command: bytes, *params: bytes, trailing: bool = True
) -> bytes:
    """One message, CRLF excluded. The last parameter is sent as trailing (``:``),
    unless ``trailing`` is False (then it must be a plain word too).

    Middle parameters must be non-empty and hold no space; the caller's
    values come from parsed input or from this server, so they do.
    """
    parts = [b":" + prefix, command] if prefix is not None else [command]
    if params:
        parts.extend(params[:-1])
        parts.append(b":" + params[-1] if trailing else params[-1])
    return b" ".join(parts)


def fit_text(text: bytes, room: int) -> bytes:
    """``text`` cut to at most ``room`` bytes without splitting a UTF-8 character."""
    if len(text) <= room:
        return text
    if room <= 0:
        return b""
    cut = room
    # Step back over continuation bytes (10xxxxxx) to a character's first byte.
    while cut > 0 and text[cut] & 0xC0 == 0x80:
        cut -= 1
    return text[:cut]
