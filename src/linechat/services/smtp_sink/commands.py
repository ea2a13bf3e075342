"""The SMTP command parser (RFC 5321 section 4.1, server side): sans-I/O.

A command line (CRLF removed) goes in; a verb with its argument, or a
``MAIL``/``RCPT`` path with its parameters, comes out. Anything malformed
raises :class:`SmtpError` carrying the exact reply to send (``500``,
``501``, ``553``, ``555``), so no caller ever builds an error reply by hand
and no input can produce anything but a well-formed reply.

The parser is strict where looseness would be unsafe (control bytes, bare CR
or LF, an address that could end up in a header) and lenient where real
clients differ harmlessly (case of verbs, a space after ``FROM:``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_COMMAND_LENGTH",
    "MAX_PATH_LENGTH",
    "Command",
    "MailFrom",
    "SmtpError",
    "parse_command",
    "parse_helo",
    "parse_mail",
    "parse_rcpt",
]

#: Longest command line taken (RFC 5321 4.5.3.1.4 says 512 with CRLF; extensions
#: and UTF-8 addresses need more, so allow what Postfix allows).
MAX_COMMAND_LENGTH = 2048
#: Longest path with its angle brackets (RFC 5321 4.5.3.1.3).
MAX_PATH_LENGTH = 256


class SmtpError(Exception):
    """A command that gets an error reply; ``reply`` is that reply, ready to send."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply.decode("ascii", "replace"))
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Command:
    """A command line split in two: ``verb`` upper-cased, ``arg`` as sent (trimmed)."""

    verb: bytes
    arg: bytes


@dataclass(frozen=True, slots=True)
class MailFrom:
    """``MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]``.

    ``address`` is empty for the null reverse path ``<>`` (bounces).
    """

    address: bytes
    size: int | None = None
    body: bytes | None = None
    smtputf8: bool = False


# C0 controls and DEL: never in a command (a bare CR or LF is how commands are smuggled).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# A HELO/EHLO argument: one token of printable ASCII or UTF-8 bytes.
_HELO = re.compile(rb"[\x21-\x7e\x80-\xff]{1,255}")
# esmtp-keyword ["=" esmtp-value] (RFC 5321 4.1.2); values are printable, not "=" or space.
_PARAM = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e\x80-\xff]+))?")
# The local part as a dot-string of atext (RFC 5321 4.1.2), UTF-8 allowed (RFC 6531).
_DOT_STRING = re.compile(rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\x80-\xff-]+")
# The local part as a quoted string: qtextSMTP or quoted pairs of printable characters.
_QUOTED = re.compile(rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\x20-\x7e])*"')
# A domain: labels of letters, digits and hyphens (or UTF-8 for SMTPUTF8), dot-separated.
_DOMAIN = re.compile(rb"[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]*[A-Za-z0-9\x80-\xff])?")
# An address literal: [1.2.3.4], [IPv6:...] or a general literal of dcontent.
_LITERAL = re.compile(rb"\[[\x21-\x5a\x5e-\x7e]+\]")
# A source route (@a,@b:) before the mailbox: obsolete, accepted and dropped.
_ROUTE = re.compile(rb"@[^,:]+(?:,@[^,:]+)*:")

# Replies for syntax errors (RFC 3463 enhanced codes).
LINE_TOO_LONG = b"500 5.5.2 Error: line too long"
CONTROL_CHARACTERS = b"500 5.5.2 Error: control characters in command"
BAD_SENDER = b"501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = b"501 5.1.3 Bad recipient address syntax"
NOT_ASCII = b"553 5.6.7 Non-ASCII address needs SMTPUTF8 (MAIL FROM:<...> SMTPUTF8)"


def parse_command(line: bytes) -> Command:
    """Split a command line into its verb and argument; refuse what no command can be."""
    if len(line) > MAX_COMMAND_LENGTH:
        raise SmtpError(LINE_TOO_LONG)
    if _CONTROL.search(line) is not None:
        raise SmtpError(CONTROL_CHARACTERS)
    verb, _, arg = line.partition(b" ")
    return Command(verb.upper(), arg.strip(b" "))


def parse_helo(arg: bytes, verb: bytes) -> bytes:
    """The client's name from ``HELO name`` / ``EHLO name``: one printable token."""
    if _HELO.fullmatch(arg) is None or not _is_utf8(arg):
        raise SmtpError(b"501 5.5.4 Syntax: " + verb + b" hostname")
    return arg


def parse_mail(arg: bytes) -> MailFrom:
    """``FROM:<address> params`` (the argument of ``MAIL``)."""
    address, params = _path_and_params(arg, b"FROM:", b"501 5.5.4 Syntax: MAIL FROM:<address>")
    if address and not _is_mailbox(address):
        raise SmtpError(BAD_SENDER)
    size: int | None = None
    body: bytes | None = None
    smtputf8 = False
    for keyword, value in params:
        if keyword == b"SIZE":
            if value is None or not value.isdigit() or len(value) > 20:
                raise SmtpError(b"501 5.5.4 Bad SIZE parameter (SIZE=<bytes>)")
            size = int(value)
        elif keyword == b"BODY":
            if value is None or value.upper() not in (b"7BIT", b"8BITMIME"):
                raise SmtpError(b"501 5.5.4 Bad BODY parameter (BODY=7BIT or BODY=8BITMIME)")
            body = value.upper()
        elif keyword == b"SMTPUTF8":
            if value is not None:
                raise SmtpError(b"501 5.5.4 SMTPUTF8 takes no value")
            smtputf8 = True
        else:
            raise SmtpError(b"555 5.5.4 Unsupported MAIL parameter " + keyword)
    if not smtputf8 and not address.isascii():
        raise SmtpError(NOT_ASCII)
    return MailFrom(address, size, body, smtputf8)


def parse_rcpt(arg: bytes, smtputf8: bool) -> bytes:
    """``TO:<address>`` (the argument of ``RCPT``); no parameters are supported."""
    address, params = _path_and_params(arg, b"TO:", b"501 5.5.4 Syntax: RCPT TO:<address>")
    if params:
        raise SmtpError(b"555 5.5.4 Unsupported RCPT parameter " + params[0][0])
    if not address or not (_is_mailbox(address) or address.lower() == b"postmaster"):
        raise SmtpError(BAD_RECIPIENT)
    if not smtputf8 and not address.isascii():
        raise SmtpError(NOT_ASCII)
    return address


def _path_and_params(
    arg: bytes, keyword: bytes, usage: bytes
) -> tuple[bytes, list[tuple[bytes, bytes | None]]]:
    """Split ``FROM:<path> KEY=value ...``: the address inside the brackets, the parameters."""
    if arg[: len(keyword)].upper() != keyword:
        raise SmtpError(usage)
    rest = arg[len(keyword) :].lstrip(b" ")
    if rest[:1] != b"<":
        raise SmtpError(usage)
    end = _closing_bracket(rest)
    if end < 0:
        raise SmtpError(usage)
    if end + 1 > MAX_PATH_LENGTH:
        raise SmtpError(b"501 5.1.0 Address too long")
    address = rest[1:end]
    tail = rest[end + 1 :]
    if tail and tail[:1] != b" ":
        raise SmtpError(usage)
    route = _ROUTE.match(address)
    if route is not None:
        address = address[route.end() :]
    params: list[tuple[bytes, bytes | None]] = []
    seen: set[bytes] = set()
    for word in tail.split():
        match = _PARAM.fullmatch(word)
        if match is None:
            raise SmtpError(b"501 5.5.4 Bad parameter syntax (KEYWORD or KEYWORD=value)")
        name = match.group(1).upper()
        if name in seen:
            raise SmtpError(b"501 5.5.4 Parameter given twice: " + name)
        seen.add(name)
        params.append((name, match.group(2)))
    return address, params


def _closing_bracket(text: bytes) -> int:
    """Where the ``>`` closing the path that starts ``text`` is, quotes honoured; -1 if none."""
    if 0x22 not in text:  # no quoted local part: the first ">" ends the path
        end = text.find(b">")
        return end if text.find(b"<", 1, end) < 0 else -1
    quoted = escaped = False
    for index in range(1, len(text)):
        byte = text[index]
        if escaped:
            escaped = False
        elif byte == 0x5C and quoted:  # backslash
            escaped = True
        elif byte == 0x22:  # double quote
            quoted = not quoted
        elif byte == 0x3E and not quoted:  # ">"
            return index
        elif byte == 0x3C and not quoted:  # a second "<"
            return -1
    return -1


def _is_mailbox(address: bytes) -> bool:
    """``local-part@domain`` with a dot-string or quoted local part (RFC 5321 4.1.2)."""
    at = address.rfind(b"@")
    if at <= 0:
        return False
    local, domain = address[:at], address[at + 1 :]
    if _DOT_STRING.fullmatch(local) is None and _QUOTED.fullmatch(local) is None:
        return False
    if _LITERAL.fullmatch(domain) is None:
        labels = domain.split(b".")
        if not all(_DOMAIN.fullmatch(label) for label in labels):
            return False
    return _is_utf8(address)


def _is_utf8(text: bytes) -> bool:
    if text.isascii():
        return True
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
