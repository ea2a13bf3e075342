"""One IRC client's connection: registration, commands, flood control.

A :class:`~linechat.LineProtocol` subclass. Everything it sends goes
through its ``outq`` and the hub's once-per-pass flush (:mod:`.hub`), so a
reply and a channel line for the same client keep their order and leave in
one write.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ... import __version__
from ...errors import LineTooLong
from ...protocol import LineProtocol
from .hub import CRLF, ChatHub
from .irc import (
    CHANNELLEN,
    MAX_LINE,
    NICKLEN,
    IRCParseError,
    casefold,
    fit_text,
    format_message,
    parse,
    valid_channel,
    valid_nick,
)
from .rooms import Channel, Member, Run

__all__ = ["TOPICLEN", "ChatConnection"]

TOPICLEN = 390
VERSION = b"linechat-" + __version__.encode()
#: Commands a client may send before it is registered.
BEFORE_REGISTRATION = frozenset({b"CAP", b"NICK", b"USER", b"PASS", b"PING", b"PONG", b"QUIT"})

Handler = Callable[["ChatConnection", list[bytes]], None]


def _host_of(peer: Any) -> bytes:
    """The peer's address as a host name; a leading ``:`` (IPv6) would end a parameter."""
    host = str(peer[0]).encode() if isinstance(peer, tuple) and peer else b"localhost"
    return b"0" + host if host.startswith(b":") else host


class ChatConnection(LineProtocol):
    """An IRC client. ``hub`` is set on the subclass the service builds."""

    __slots__ = (
        "cap_pending",
        "channels",
        "holds",
        "host",
        "invisible",
        "nick",
        "outq",
        "password_ok",
        "pinged",
        "prefix",
        "realname",
        "registered",
        "seen_bytes",
        "server_name",
        "signon",
        "silent_since",
        "tokens",
        "tokens_at",
        "user",
    )

    hub: ClassVar[ChatHub]
    local = True

    @classmethod
    def reload(cls) -> None:
        """SIGHUP: read the MOTD file again."""
        cls.hub.reload()

    commands: ClassVar[dict[bytes, Handler]] = {}

    def __init__(self, **framing: Any) -> None:
        framing.setdefault("max_line_length", MAX_LINE - 2)
        framing.setdefault("lenient", True)
        framing["idle_timeout"] = None  # the ping sweep does it, with PING first
        super().__init__(**framing)
        hub = self.hub
        self.nick = b"*"
        self.user = b""
        self.host = b""
        self.realname = b""
        self.prefix = b""
        self.server_name = hub.config.server_name
        self.channels: dict[bytes, Channel] = {}
        self.outq: list[bytes | Run] = []
        self.registered = False
        self.cap_pending = False
        self.password_ok = hub.config.password is None
        self.invisible = False
        self.holds = 0
        self.tokens = float(hub.config.flood_burst)
        self.tokens_at = 0.0
        self.seen_bytes = 0
        self.silent_since = 0.0
        self.pinged = False
        self.signon = int(time.time())

    # -- output ------------------------------------------------------------------

    def send(self, line: bytes) -> None:
        """Queue one line (CRLF added) for this client's next write."""
        queue = self.outq
        rooms = self.hub.rooms
        rooms.stamp += 1  # a channel's run queued before this line ends with it
        if not queue:
            rooms.dirty.append(self)
        queue.append(line + CRLF)

    def reply(self, code: bytes, *params: bytes) -> None:
        """A numeric reply: ``:server CODE nick params...`` (the last one trailing)."""
        self.send(format_message(self.server_name, code, self.nick, *params))

    def close_now(self) -> None:
        """Write what is queued, then close (after the transport has sent it)."""
        data = self.hub.rooms.take(self) if self.outq else b""
        if data and self.transport is not None and not self.is_closing:
            self.bytes_out += len(data)
            self.transport.write(data)
        self.close()

    def abort_if_open(self) -> None:
        if self.is_connected:
            self.abort()

    def describe(self) -> str:
        nick = self.nick.decode(errors="replace")
        return f"{nick} ({self.host.decode(errors='replace')})"

    # -- connection ----------------------------------------------------------------

    def connection_started(self) -> None:
        hub = self.hub
        self.host = _host_of(self.peer)
        now = hub.loop.time()
        self.tokens_at = self.silent_since = now
        hub.connections[self] = None

    def connection_ended(self, exc: BaseException | None) -> None:
        hub = self.hub
        hub.connections.pop(self, None)
        reason = b"Connection closed" if exc is None else b"Connection reset"
        hub.quit(self, reason)
        self.outq.clear()
        hub.kick()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Lines wait while the client is over its flood budget: bounded.
        if (
            self.holds
            and not self.is_closing
            and self.framer.buffered > self.hub.config.flood_burst * MAX_LINE
        ):
            self.hub.drop(self, "Excess Flood")
        self.hub.kick()

    def line_too_long(self, exc: LineTooLong) -> None:
        self.reply(b"417", b"Input line was too long")
        self.framer.resync()

    def line_received(self, line: bytes) -> None:
        config = self.hub.config
        rate = config.flood_rate
        if rate:
            now = self.hub.loop.time()
            tokens = self.tokens + (now - self.tokens_at) * rate
            if tokens > config.flood_burst:
                tokens = config.flood_burst
            self.tokens = tokens = tokens - 1
            self.tokens_at = now
            if tokens < 1:
                self._hold()
                self.hub.loop.call_later((1 - tokens) / rate, self._release)
        try:
            message = parse(line)
        except IRCParseError as exc:
            self.reply(b"421", exc.command, f"Unknown command ({exc.reason})".encode())
            return
        if message is None:
            return
        command = message.command
        if not self.registered and command not in BEFORE_REGISTRATION:
            self.reply(b"451", b"You have not registered")
            return
        handler = self.commands.get(command)
        if handler is None:
            self.reply(b"421", command, b"Unknown command")
        else:
            handler(self, message.params)

    # -- holding input (flood control, a nick claim in flight) ----------------------

    def _hold(self) -> None:
        if not self.holds:
            self.hold()
        self.holds += 1

    def _release(self) -> None:
        self.holds -= 1
        if not self.holds and not self.is_closing:
            self.release()
            self.hub.kick()

    # -- registration ------------------------------------------------------------------

    def cmd_cap(self, params: list[bytes]) -> None:
        sub = params[0].upper() if params else b""
        if sub == b"LS":
            if not self.registered:
                self.cap_pending = True
            self.send(format_message(self.server_name, b"CAP", self.nick, b"LS", b""))
        elif sub == b"LIST":
            self.send(format_message(self.server_name, b"CAP", self.nick, b"LIST", b""))
        elif sub == b"REQ":
            if not self.registered:
                self.cap_pending = True
            asked = params[1] if len(params) > 1 else b""
            self.send(format_message(self.server_name, b"CAP", self.nick, b"NAK", asked))
        elif sub == b"END":
            self.cap_pending = False
            self._try_register()
        elif not params:
            self.reply(b"461", b"CAP", b"Not enough parameters")
        else:
            self.reply(b"410", sub[:32], b"Invalid CAP command")

    def cmd_pass(self, params: list[bytes]) -> None:
        if self.registered:
            self.reply(b"462", b"You may not reregister")
            return
        if not params:
            self.reply(b"461", b"PASS", b"Not enough parameters")
            return
        expected = self.hub.config.password
        if expected is not None:
            self.password_ok = hmac.compare_digest(params[0], expected)

    def cmd_user(self, params: list[bytes]) -> None:
        if self.registered:
            self.reply(b"462", b"You may not reregister")
            return
        if len(params) < 4 or not params[0]:
            self.reply(b"461", b"USER", b"Not enough parameters")
            return
        user = params[0][:10]
        self.user = user if user.startswith(b"~") else b"~" + user[:9]
        self.realname = params[3][:100] or self.user
        self._try_register()

    def cmd_nick(self, params: list[bytes]) -> None:
        if not params or not params[0]:
            self.reply(b"431", b"No nickname given")
            return
        new = params[0]
        if not valid_nick(new):
            self.reply(b"432", new[: NICKLEN + 10], b"Erroneous nickname")
            return
        if new == self.nick:
            return
        rooms = self.hub.rooms
        if rooms.nick_taken(new, self):
            self.reply(b"433", new, b"Nickname is already in use")
            return
        same = casefold(new) == casefold(self.nick)
        backplane = self.hub.backplane
        if backplane is not None and backplane.up and not same:
            self._hold()
            claim = asyncio.ensure_future(backplane.claim(new))
            claim.add_done_callback(lambda done: self._claimed(new, done))
        else:
            self._set_nick(new)

    def _claimed(self, new: bytes, done: asyncio.Future[bool]) -> None:
        ok = not done.cancelled() and done.exception() is None and done.result()
        if self.is_closing:
            if ok and self.hub.backplane is not None:
                self.hub.backplane.release(new)
        elif ok and not self.hub.rooms.nick_taken(new, self):
            self._set_nick(new)
        else:
            if ok and self.hub.backplane is not None:
                self.hub.backplane.release(new)
            self.reply(b"433", new, b"Nickname is already in use")
        self._release()

    def _set_nick(self, new: bytes) -> None:
        hub = self.hub
        if self.registered:
            old = self.nick
            hub.nick(self, new)
            if hub.backplane is not None and casefold(old) != casefold(new):
                hub.backplane.release(old)
            return
        if self.nick != b"*":
            old_key = casefold(self.nick)
            if hub.rooms.users.get(old_key) is self:
                del hub.rooms.users[old_key]
            if hub.backplane is not None and old_key != casefold(new):
                hub.backplane.release(self.nick)
        self.nick = new
        hub.rooms.users[casefold(new)] = self
        self._try_register()

    def _try_register(self) -> None:
        if self.registered or self.cap_pending or self.nick == b"*" or not self.user:
            return
        if not self.password_ok:
            self.reply(b"464", b"Password incorrect")
            self.hub.drop(self, "Bad password")
            return
        self.registered = True
        self.prefix = self.nick + b"!" + self.user + b"@" + self.host
        config = self.hub.config
        network, server = config.network, config.server_name
        self.reply(b"001", b"Welcome to the " + network + b" IRC Network " + self.prefix)
        self.reply(b"002", b"Your host is " + server + b", running version " + VERSION)
        self.reply(b"003", b"This server was created " + config.created.encode())
        self.send(
            format_message(server, b"004", self.nick, server, VERSION, b"i", b"n", trailing=False)
        )
        self.reply(
            b"005",
            b"CASEMAPPING=rfc1459",
            b"CHANTYPES=#",
            b"NICKLEN=%d" % NICKLEN,
            b"CHANNELLEN=%d" % CHANNELLEN,
            b"TOPICLEN=%d" % TOPICLEN,
            b"CHANLIMIT=#:%d" % config.max_channels,
            b"NETWORK=" + network,
            b"PREFIX=()",
            b"CHANMODES=,,,n",
            b"are supported by this server",
        )
        self._motd()
        self.hub.publish(b"USER", self.nick, self.user, self.host, self.server_name, self.realname)

    def _motd(self) -> None:
        motd = self.hub.config.motd
        if motd is None:
            self.reply(b"422", b"MOTD File is missing")
            return
        self.reply(b"375", b"- " + self.server_name + b" Message of the day - ")
        for text in motd:
            self.reply(b"372", b"- " + text)
        self.reply(b"376", b"End of /MOTD command.")

    def cmd_motd(self, params: list[bytes]) -> None:
        self._motd()

    # -- liveness -----------------------------------------------------------------------

    def cmd_ping(self, params: list[bytes]) -> None:
        if not params or not params[0]:
            self.reply(b"409", b"No origin specified")
            return
        self.send(format_message(self.server_name, b"PONG", self.server_name, params[0]))

    def cmd_pong(self, params: list[bytes]) -> None:
        pass  # any input counts as life; the sweep saw the bytes

    def cmd_quit(self, params: list[bytes]) -> None:
        reason = b"Quit: " + params[0][:300] if params and params[0] else b"Client Quit"
        self.hub.quit(self, reason)
        self.send(b"ERROR :Closing Link: " + self.host + b" (" + reason + b")")
        self.close_now()

    # -- channels ---------------------------------------------------------------------

    def cmd_join(self, params: list[bytes]) -> None:
        if not params or not params[0]:
            self.reply(b"461", b"JOIN", b"Not enough parameters")
            return
        if params[0] == b"0":
            for channel in list(self.channels.values()):
                self.hub.part(self, channel, self.nick)
            return
        hub = self.hub
        for name in params[0].split(b","):
            if not valid_channel(name):
                self.reply(b"403", name[: CHANNELLEN + 10] or b"*", b"No such channel")
                continue
            if casefold(name) in self.channels:
                continue
            if len(self.channels) >= hub.config.max_channels:
                self.reply(b"405", name, b"You have joined too many channels")
                continue
            joined = hub.join(self, name)
            if joined is None:
                continue
            if joined.topic:
                self.reply(b"332", joined.name, joined.topic)
                self.reply(b"333", joined.name, joined.topic_by, b"%d" % joined.topic_at)
            self._names(joined)

    def cmd_part(self, params: list[bytes]) -> None:
        if not params or not params[0]:
            self.reply(b"461", b"PART", b"Not enough parameters")
            return
        reason = params[1][:300] if len(params) > 1 else self.nick
        for name in params[0].split(b","):
            channel = self.hub.rooms.channel(name)
            if channel is None:
                self.reply(b"403", name[: CHANNELLEN + 10] or b"*", b"No such channel")
            elif self not in channel.members:
                self.reply(b"442", channel.name, b"You're not on that channel")
            else:
                self.hub.part(self, channel, reason)

    def cmd_topic(self, params: list[bytes]) -> None:
        if not params:
            self.reply(b"461", b"TOPIC", b"Not enough parameters")
            return
        channel = self.hub.rooms.channel(params[0])
        if channel is None:
            self.reply(b"403", params[0][: CHANNELLEN + 10] or b"*", b"No such channel")
        elif self not in channel.members:
            self.reply(b"442", channel.name, b"You're not on that channel")
        elif len(params) > 1:
            self.hub.topic(self, channel, fit_text(params[1], TOPICLEN))
        elif channel.topic:
            self.reply(b"332", channel.name, channel.topic)
            self.reply(b"333", channel.name, channel.topic_by, b"%d" % channel.topic_at)
        else:
            self.reply(b"331", channel.name, b"No topic is set")

    def _names(self, channel: Channel) -> None:
        head = format_message(self.server_name, b"353", self.nick, b"=", channel.name, b"")
        room = MAX_LINE - 2 - len(head)
        batch: list[bytes] = []
        size = 0
        for member in channel.members:
            if batch and size + 1 + len(member.nick) > room:
                self.send(head + b" ".join(batch))
                batch, size = [], 0
            batch.append(member.nick)
            size += len(member.nick) + (1 if size else 0)
        if batch:
            self.send(head + b" ".join(batch))
        self.reply(b"366", channel.name, b"End of /NAMES list.")

    def cmd_names(self, params: list[bytes]) -> None:
        if not params or not params[0]:
            self.reply(b"366", b"*", b"End of /NAMES list.")
            return
        for name in params[0].split(b","):
            channel = self.hub.rooms.channel(name)
            if channel is None:
                self.reply(b"366", name[: CHANNELLEN + 10] or b"*", b"End of /NAMES list.")
            else:
                self._names(channel)

    def cmd_list(self, params: list[bytes]) -> None:
        rooms = self.hub.rooms
        if params and params[0]:
            found = [rooms.channel(name) for name in params[0].split(b",")]
            channels = [channel for channel in found if channel is not None]
        else:
            channels = list(rooms.channels.values())
        self.reply(b"321", b"Channel", b"Users  Name")
        for channel in channels:
            self.reply(b"322", channel.name, b"%d" % len(channel.members), channel.topic)
        self.reply(b"323", b"End of /LIST")

    def cmd_who(self, params: list[bytes]) -> None:
        mask = params[0] if params and params[0] else b"*"
        rooms = self.hub.rooms
        if mask[:1] == b"#":
            channel = rooms.channel(mask)
            if channel is not None:
                for member in channel.members:
                    self._who_line(channel.name, member)
        else:
            found = rooms.find(mask)
            if found is not None:
                channel_name = next(iter(found.channels.values())).name if found.channels else b"*"
                self._who_line(channel_name, found)
        self.reply(b"315", mask[: CHANNELLEN + 10], b"End of /WHO list.")

    def _who_line(self, channel: bytes, member: Member) -> None:
        self.reply(
            b"352",
            channel,
            member.user,
            member.host,
            member.server_name,
            member.nick,
            b"H",
            b"0 " + member.realname,
        )

    def cmd_whois(self, params: list[bytes]) -> None:
        if not params or not params[0]:
            self.reply(b"431", b"No nickname given")
            return
        nicks = params[-1]  # WHOIS [server] nick
        for nick in nicks.split(b",")[:5]:
            member = self.hub.rooms.find(nick)
            if member is None:
                self.reply(b"401", nick[: NICKLEN + 10] or b"*", b"No such nick/channel")
            else:
                self.reply(b"311", member.nick, member.user, member.host, b"*", member.realname)
                if member.channels:
                    names = b" ".join(channel.name for channel in member.channels.values())
                    self.reply(b"319", member.nick, fit_text(names, 400))
                self.reply(b"312", member.nick, member.server_name, self.hub.config.network)
            self.reply(b"318", nick[: NICKLEN + 10] or b"*", b"End of /WHOIS list.")

    def cmd_mode(self, params: list[bytes]) -> None:
        if not params or not params[0]:
            self.reply(b"461", b"MODE", b"Not enough parameters")
            return
        target = params[0]
        rooms = self.hub.rooms
        if target[:1] == b"#":
            channel = rooms.channel(target)
            if channel is None:
                self.reply(b"403", target[: CHANNELLEN + 10], b"No such channel")
            elif len(params) == 1:
                self.reply(b"324", channel.name, b"+n")
                self.reply(b"329", channel.name, b"%d" % channel.created)
            elif params[1].lstrip(b"+") == b"b" and len(params) == 2:
                self.reply(b"368", channel.name, b"End of channel ban list")
            else:
                self.reply(b"482", channel.name, b"You're not channel operator")
            return
        member = rooms.find(target)
        if member is None:
            self.reply(b"401", target[: NICKLEN + 10], b"No such nick/channel")
        elif member is not self:
            self.reply(b"502", b"Can't change mode for other users")
        elif len(params) == 1:
            self.reply(b"221", b"+i" if self.invisible else b"+")
        else:
            self._set_user_modes(params[1])

    def _set_user_modes(self, changes: bytes) -> None:
        adding = True
        for flag in changes:
            if flag == 0x2B:  # +
                adding = True
            elif flag == 0x2D:  # -
                adding = False
            elif flag == 0x69 and self.invisible != adding:  # i
                self.invisible = adding
                change = b"+i" if adding else b"-i"
                self.send(format_message(self.nick, b"MODE", self.nick, change))
            elif flag != 0x69:
                self.reply(b"501", b"Unknown MODE flag")
                return

    # -- messages ---------------------------------------------------------------------

    def cmd_privmsg(self, params: list[bytes]) -> None:
        self._message(b"PRIVMSG", params)

    def cmd_notice(self, params: list[bytes]) -> None:
        self._message(b"NOTICE", params)

    def _message(self, command: bytes, params: list[bytes]) -> None:
        notice = command == b"NOTICE"
        if not params or not params[0]:
            if not notice:
                self.reply(b"411", b"No recipient given (" + command + b")")
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                self.reply(b"412", b"No text to send")
            return
        text = params[1]
        hub = self.hub
        rooms = hub.rooms
        for target in params[0].split(b",")[:4]:
            if target[:1] == b"#":
                channel = rooms.channel(target)
                if channel is None:
                    if not notice:
                        self.reply(b"403", target[: CHANNELLEN + 10], b"No such channel")
                    continue
                if self not in channel.members:
                    if not notice:
                        self.reply(b"404", channel.name, b"Cannot send to channel")
                    continue
                head = b":" + self.prefix + b" " + command + b" " + channel.name + b" :"
                body = fit_text(text, MAX_LINE - 2 - len(head))
                hub.to_channel(self, channel, head + body + CRLF)
            else:
                member = rooms.find(target)
                if member is None:
                    if not notice:
                        self.reply(b"401", target[: NICKLEN + 10] or b"*", b"No such nick/channel")
                    continue
                head = b":" + self.prefix + b" " + command + b" " + member.nick + b" :"
                body = fit_text(text, MAX_LINE - 2 - len(head))
                hub.to_user(member, head + body + CRLF)

    # -- small extras clients send ---------------------------------------------------------

    def cmd_ison(self, params: list[bytes]) -> None:
        rooms = self.hub.rooms
        words = b" ".join(params).split()
        online = [m.nick for nick in words[:50] if (m := rooms.find(nick)) is not None]
        self.reply(b"303", b" ".join(online))

    def cmd_userhost(self, params: list[bytes]) -> None:
        rooms = self.hub.rooms
        found = [m for nick in params[:5] if (m := rooms.find(nick)) is not None]
        self.reply(b"302", b" ".join(m.nick + b"=+" + m.user + b"@" + m.host for m in found))

    def cmd_away(self, params: list[bytes]) -> None:
        if params and params[0]:
            self.reply(b"306", b"You have been marked as being away")
        else:
            self.reply(b"305", b"You are no longer marked as being away")


ChatConnection.commands = {
    b"CAP": ChatConnection.cmd_cap,
    b"PASS": ChatConnection.cmd_pass,
    b"NICK": ChatConnection.cmd_nick,
    b"USER": ChatConnection.cmd_user,
    b"PING": ChatConnection.cmd_ping,
    b"PONG": ChatConnection.cmd_pong,
    b"QUIT": ChatConnection.cmd_quit,
    b"MOTD": ChatConnection.cmd_motd,
    b"JOIN": ChatConnection.cmd_join,
    b"PART": ChatConnection.cmd_part,
    b"TOPIC": ChatConnection.cmd_topic,
    b"NAMES": ChatConnection.cmd_names,
    b"LIST": ChatConnection.cmd_list,
    b"WHO": ChatConnection.cmd_who,
    b"WHOIS": ChatConnection.cmd_whois,
    b"MODE": ChatConnection.cmd_mode,
    b"PRIVMSG": ChatConnection.cmd_privmsg,
    b"NOTICE": ChatConnection.cmd_notice,
    b"ISON": ChatConnection.cmd_ison,
    b"USERHOST": ChatConnection.cmd_userhost,
    b"AWAY": ChatConnection.cmd_away,
}
