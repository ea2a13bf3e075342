"""IMAP4rev1/rev2 (RFC 3501, RFC 9051) reply rules.

The client tags each command ``a1``, ``a2``... unless the line already starts
with a tag (its first word is not an IMAP command); the reply is complete at
the line with that tag, ``OK`` or ``NO``/``BAD`` (errors). The server greets
first (``* OK``, ``* PREAUTH``; ``* BYE`` is an error).

Literals: a reply line ending in ``{n}`` is followed by ``n`` counted bytes
(which may hold anything, tags included) and then the rest of the line. A
command ending in ``{n}`` waits for the server's ``+`` go-ahead; the next
input lines are then its ``n`` bytes (each line with its CRLF counts), and
the input line after them continues the command. ``{n+}`` (LITERAL+) does
not wait. A ``+`` that is not for a literal (AUTHENTICATE, IDLE) makes the
next input line the answer to it, untagged.
"""

from __future__ import annotations

import re

from .base import MAX_COUNTED, Dialect, DialectError, Done, Event

__all__ = ["Imap"]

COMMANDS = (
    "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE",
    "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
    "LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE", "CHECK", "CLOSE",
    "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID", "ID",
    "GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "GETACL", "SETACL", "MYRIGHTS", "COMPRESS",
    "GETMETADATA", "SETMETADATA", "SORT", "THREAD", "ESEARCH", "XLIST",
)  # fmt: skip
_KNOWN = frozenset(name.encode() for name in COMMANDS)
_LITERAL = re.compile(rb"~?\{(\d{1,10})(\+?)\}$")


class Imap(Dialect):
    name = "imap"
    greeting = True
    quit = b"LOGOUT"
    commands = COMMANDS

    def start(self) -> None:
        self.next_tag = 1
        self._tag: bytes | None = None  # of the command in progress
        self._greeted = not self.waiting
        self._literal_out = 0  # bytes of a literal still to come from the input
        self._sync_literal = 0  # a literal waiting for the server's "+"
        self._answer = False  # the next input line answers a "+" (untagged)
        self._more = False  # the next input line continues the command
        self._need = -1  # counted bytes of a reply literal still to read
        self._logical: list[bytes] = []  # a reply line with its literals, in parts
        self._held = 0  # bytes in _logical

    @property
    def needs_input(self) -> bool:
        return bool(self._literal_out or self._answer or self._more)

    @property
    def mid_reply(self) -> bool:
        return bool(self._logical)

    # -- sending -----------------------------------------------------------

    def submit(self, line: bytes) -> bytes:
        if self._literal_out:
            size = len(line) + len(self.newline)
            if size <= self._literal_out:
                self._literal_out -= size
                self._more = self._literal_out == 0
                return line + self.newline
            rest = line[self._literal_out :]
            self._literal_out = 0
            self._after_part(rest)
            return line + self.newline
        if self._answer or self._more:
            self._answer = self._more = False
            self._after_part(line)
            return line + self.newline
        word = line.split(b" ", 1)[0]
        if word.upper() in _KNOWN and not self.verbatim:
            line = b"a%d %s" % (self.next_tag, line)
            self.next_tag += 1
        self._tag = line.split(b" ", 1)[0]
        if self._tag[:1] == b"a" and self._tag[1:].isdigit():  # the user's own "a7": go past it
            self.next_tag = max(self.next_tag, int(self._tag[1:]) + 1)
        self._after_part(line)
        return line + self.newline

    def _after_part(self, text: bytes) -> None:
        """After sending ``text``, the end of a command or of a part before a literal."""
        match = _LITERAL.search(text)
        if match is None:
            self.waiting = True
            return
        size = int(match.group(1))
        if match.group(2):  # LITERAL+: the bytes follow at once
            self._literal_out = size
            self._more = size == 0
            self.waiting = False
        else:
            self._sync_literal = size
            self.waiting = True

    # -- receiving -----------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        reader = self._reader
        reader.feed(data)
        events: list[Event] = []
        while True:
            if self._need >= 0:
                counted = reader.exactly(self._need)
                if counted is None:
                    return events
                self._logical.append(counted)
                self._need = -1
            line = reader.line()
            if line is None:
                return events
            self._logical.append(line)
            match = _LITERAL.search(line)
            if match is not None:
                size = int(match.group(1))
                self._held += len(line) + size
                if self._held > MAX_COUNTED:
                    raise DialectError(
                        f"a reply line with literals of more than {MAX_COUNTED} bytes"
                    )
                self._logical.append(b"\r\n")
                self._need = size
                continue
            parts, self._logical, self._held = self._logical, [], 0
            first = parts[0]
            events.extend(_lines(b"".join(parts)) if len(parts) > 1 else parts)
            done = self._outcome(first)
            if done is not None:
                self.waiting = False
                events.append(done)

    def _outcome(self, first: bytes) -> Done | None:
        if not self._greeted:
            if first[:2] != b"* ":
                raise DialectError(f"not an IMAP greeting: {first[:80]!r}")
            self._greeted = True
            state = first[2:].split(b" ", 1)[0].upper()
            return Done(error=state not in (b"OK", b"PREAUTH"))
        if first[:1] == b"+" and self._tag is not None:
            if self._sync_literal:
                self._literal_out, self._sync_literal = self._sync_literal, 0
            else:
                self._answer = True
            return Done(more=True)
        tag, _, rest = first.partition(b" ")
        if self._tag is not None and tag == self._tag:
            self._tag = None
            self._sync_literal = self._literal_out = 0
            self._answer = self._more = False
            state = rest.split(b" ", 1)[0].upper()
            return Done(error=state != b"OK")
        return None


def _lines(text: bytes) -> list[bytes]:
    """A reply line and its literals, shown as lines (CRLF or LF)."""
    return [line[:-1] if line.endswith(b"\r") else line for line in text.split(b"\n")]
