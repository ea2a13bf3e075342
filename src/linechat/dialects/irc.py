"""IRC client protocol (RFC 2812 and the modern client protocol) reply rules.

Registration: ``PASS``, ``CAP``, ``NICK`` and ``USER`` are sent without
waiting; once both NICK and USER are sent (and any CAP negotiation is
ended), the client waits for the welcome: it starts at 001 and ends at the end
of the MOTD (376, or 422 "no MOTD"), or after ``--wait`` seconds of silence
after 001. Then each command waits for the numeric that ends its reply
(JOIN and NAMES: 366, WHOIS: 318, WHO: 315, LIST: 323...), or for the
server's echo of it (PART, NICK, KICK, PING's PONG...); a command without
either (PRIVMSG, NOTICE...) ends after ``--wait`` seconds of silence. A
numeric from 400 to 599 or an ``ERROR`` message ends a reply as an error
(``ERROR`` after ``QUIT`` is the expected goodbye). A server's ``PING`` is
shown and answered with ``PONG`` at once.
"""

from __future__ import annotations

from .base import Dialect, DialectError, Done, Event, Send

__all__ = ["Irc", "parse"]

_REGISTRATION = frozenset((b"PASS", b"CAP", b"NICK", b"USER"))
#: The numerics that end the reply to a command.
_ENDS: dict[bytes, frozenset[bytes]] = {
    b"JOIN": frozenset((b"366",)),
    b"NAMES": frozenset((b"366",)),
    b"WHO": frozenset((b"315",)),
    b"WHOIS": frozenset((b"318",)),
    b"WHOWAS": frozenset((b"369",)),
    b"LIST": frozenset((b"323",)),
    b"MOTD": frozenset((b"376", b"422")),
    b"VERSION": frozenset((b"351",)),
    b"TIME": frozenset((b"391",)),
    b"INFO": frozenset((b"374",)),
    b"ADMIN": frozenset((b"259",)),
    b"ISON": frozenset((b"303",)),
    b"USERHOST": frozenset((b"302",)),
    b"AWAY": frozenset((b"305", b"306")),
    b"OPER": frozenset((b"381",)),
    b"INVITE": frozenset((b"341",)),
    b"LINKS": frozenset((b"365",)),
    b"STATS": frozenset((b"219",)),
}
#: Commands whose reply is the server's echo of them.
_ECHOED = {b"PART": b"PART", b"NICK": b"NICK", b"KICK": b"KICK", b"PING": b"PONG"}
_WELCOME_END = frozenset((b"376", b"422"))


def parse(line: bytes) -> tuple[bytes, list[bytes]]:
    """An IRC message's command (upper-cased) and parameters; tags and source dropped."""
    if line[:1] == b"@":
        line = line.partition(b" ")[2].lstrip(b" ")
    if line[:1] == b":":
        line = line.partition(b" ")[2].lstrip(b" ")
    head, colon, trailing = line.partition(b" :")
    if line[:1] == b":":  # no command, only a trailing parameter
        raise DialectError(f"an IRC message without a command: {line[:80]!r}")
    words = head.split()
    if not words:
        raise DialectError("an empty IRC message")
    params = words[1:] + ([trailing] if colon else [])
    return words[0].upper(), params


class Irc(Dialect):
    name = "irc"
    quit = b"QUIT"
    commands = (
        "NICK", "USER", "PASS", "CAP", "JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC",
        "NAMES", "LIST", "WHO", "WHOIS", "WHOWAS", "MODE", "KICK", "INVITE", "QUIT",
        "PING", "MOTD", "VERSION", "TIME", "INFO", "ADMIN", "LUSERS", "ISON",
        "USERHOST", "AWAY", "OPER", "LINKS", "STATS",
    )  # fmt: skip

    def start(self) -> None:
        self.registered = False
        self._sent: set[bytes] = set()  # registration commands sent so far
        self._cap_open = False
        self._ends: frozenset[bytes] = frozenset()
        self._echo = b""
        self._quitting = False
        self._welcomed = False  # 001 seen, the MOTD may follow

    def submit(self, line: bytes) -> bytes:
        words = line.split()
        command = words[0].upper() if words else b""
        self._ends, self._echo, self.silence_ends = frozenset(), b"", False
        self._quitting = command == b"QUIT"
        if not self.registered and command in _REGISTRATION:
            self._sent.add(command)
            if command == b"CAP":
                sub = words[1].upper() if len(words) > 1 else b""
                self._cap_open = sub != b"END" and (self._cap_open or sub in (b"LS", b"REQ"))
            self.waiting = b"NICK" in self._sent and b"USER" in self._sent and not self._cap_open
            return line + self.newline
        self.waiting = True
        if command in _ENDS:
            self._ends = _ENDS[command]
        elif command in _ECHOED:
            self._echo = _ECHOED[command]
        elif command == b"MODE" and len(words) == 2:
            self._ends = frozenset((b"324", b"221"))
        elif command == b"TOPIC" and len(words) > 2:
            self._echo = b"TOPIC"
        elif not self._quitting:
            self.silence_ends = True
        return line + self.newline

    def feed(self, data: bytes) -> list[Event]:
        reader = self._reader
        reader.feed(data)
        events: list[Event] = []
        while (line := reader.line()) is not None:
            if not line.strip():
                continue
            command, params = parse(line)
            events.append(line)
            if command == b"PING":
                events.append(Send(b"PONG :" + (params[-1] if params else b"") + self.newline))
                continue
            done = self._outcome(command)
            if done is not None:
                self.waiting = self.silence_ends = False
                events.append(done)
        return events

    def _outcome(self, command: bytes) -> Done | None:
        if command == b"ERROR":
            return Done(error=not self._quitting)
        if command.isdigit() and b"400" <= command <= b"599" and self.waiting:
            if command == b"422" and self._welcomed:  # no MOTD: the welcome's normal end
                self._welcomed = False
                return Done()
            return Done(error=True)
        if not self.registered:
            if command == b"001":
                self.registered = self._welcomed = True
                self.silence_ends = True  # until the end of the MOTD, or a quiet moment
            return None
        if self._welcomed and command in _WELCOME_END:
            self._welcomed = False
            return Done()
        if not self.waiting:
            return None
        if command in self._ends or (self._echo and command == self._echo):
            return Done()
        return None

    def silence(self) -> list[Event]:
        self._welcomed = False
        return super().silence()
