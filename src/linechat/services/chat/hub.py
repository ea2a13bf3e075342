"""The chat of one serving process: settings, rooms, the flush, the ping sweep.

Every line a connection is sent goes through its ``outq`` (see
:mod:`.rooms`); the hub writes each dirty connection's queue with one
transport write per loop pass, and drops a connection whose bytes queued in
the transport pass the send-queue limit. A backplane (Redis) shares the
events with the other servers of the network; without it the hub is the
whole network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .irc import casefold, format_message
from .rooms import Channel, Member, Rooms

if TYPE_CHECKING:
    from .server import ChatConnection

__all__ = ["Backplane", "ChatConfig", "ChatHub"]

log = logging.getLogger("linechat.chat")

CRLF = b"\r\n"
#: How long a connection dropped for its send queue may keep its last bytes
#: (the ERROR line) waiting for a reader before it is aborted.
DROP_GRACE = 10.0


@dataclass
class ChatConfig:
    """The service's settings (its options, once parsed)."""

    server_name: bytes = b"linechat.local"
    network: bytes = b"linechat"
    password: bytes | None = None
    motd_path: str | None = None
    motd: list[bytes] | None = None
    ping_timeout: float = 120.0
    sendq: int = 256 * 1024
    flood_rate: float = 2.0
    flood_burst: int = 25
    max_channels: int = 50
    created: str = field(
        default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    )


def load_motd(path: str) -> list[bytes]:
    """The MOTD file's lines (bytes as they are, each cut to 400 bytes); raises OSError."""
    with open(path, "rb") as file:
        text = file.read(64 * 1024)
    text = text.rstrip(b"\r\n")
    return [line.rstrip(b"\r")[:400] for line in text.split(b"\n")] if text else []


class Backplane(Protocol):
    """What the hub asks of the scale-out layer (see :mod:`.redis_backplane`)."""

    @property
    def up(self) -> bool:
        """True while the shared store answers (else the hub works alone)."""

    def claim(self, nick: bytes) -> Awaitable[bool]:
        """Claim ``nick`` network-wide; False if another server holds it."""

    def release(self, nick: bytes) -> None:
        """Free a nick this server held."""

    def publish(self, *fields: bytes) -> None:
        """Send one event to the other servers."""


class ChatHub:
    """State shared by the connections of one process."""

    def __init__(self, config: ChatConfig) -> None:
        self.config = config
        self.rooms = Rooms()
        self.connections: dict[ChatConnection, None] = {}
        self.backplane: Backplane | None = None
        self._flush_scheduled = False
        self._sweep: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def reload(self) -> None:
        """Read the MOTD file again (SIGHUP); keep the old text if it cannot be read."""
        if self.config.motd_path is None:
            return
        try:
            self.config.motd = load_motd(self.config.motd_path)
        except OSError as exc:
            log.warning("MOTD not reloaded: %s", exc)
        else:
            log.info("MOTD reloaded from %s", self.config.motd_path)

    # -- life ------------------------------------------------------------------

    def start(self) -> None:
        """Start the ping sweep (with the loop running)."""
        self._loop = asyncio.get_running_loop()
        self._sweep = self._loop.call_later(self.sweep_step, self._look)

    def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def sweep_step(self) -> float:
        return max(0.1, self.config.ping_timeout / 8)

    # -- output ----------------------------------------------------------------

    def kick(self) -> None:
        """Make sure queued lines are written at the loop's next turn (once per pass)."""
        if self.rooms.dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write each dirty connection's queue in one transport write; police send queues."""
        self._flush_scheduled = False
        rooms = self.rooms
        dirty, rooms.dirty = rooms.dirty, []
        rooms.end_runs()
        limit = self.config.sendq
        for member in dirty:
            if not member.outq:
                continue
            data = rooms.take(member)
            connection: ChatConnection = member  # type: ignore[assignment]
            transport = connection.transport
            if not data or transport is None or connection.is_closing:
                continue
            connection.bytes_out += len(data)
            transport.write(data)
            if transport.get_write_buffer_size() > limit:
                self.drop(connection, "Max SendQ exceeded", discard=True)
        if rooms.dirty:  # a drop queued QUIT lines for others
            self.kick()

    def drop(self, connection: ChatConnection, reason: str, *, discard: bool = False) -> None:
        """Close ``connection`` with ``ERROR`` for a server-side ``reason``; tell the others.

        ``discard``: drop the lines still queued for it (it is not reading them).
        """
        if connection.is_closing:
            return
        self.quit(connection, reason.encode())
        if discard:
            connection.outq.clear()
        connection.send(b"ERROR :Closing Link: " + connection.host + b" (" + reason.encode() + b")")
        connection.close_now()
        self.loop.call_later(DROP_GRACE, connection.abort_if_open)
        log.info("%s dropped: %s", connection.describe(), reason)

    # -- the ping sweep ----------------------------------------------------------

    def _look(self) -> None:
        """Ping connections silent half the timeout; drop those silent all of it.

        A connection still not registered after the timeout is dropped too,
        talking or not.
        """
        self._sweep = None
        now = self.loop.time()
        timeout = self.config.ping_timeout
        ping = b"PING :" + self.config.server_name
        wall = time.time()
        for connection in list(self.connections):
            if connection.is_closing:
                continue
            if not connection.registered and wall - connection.signon >= timeout:
                self.drop(connection, "Registration timeout")
                continue
            if connection.bytes_in != connection.seen_bytes:
                connection.seen_bytes = connection.bytes_in
                connection.silent_since = now
                connection.pinged = False
                continue
            silent = now - connection.silent_since
            if silent >= timeout:
                self.drop(connection, f"Ping timeout: {timeout:g} seconds")
            elif silent >= timeout / 2 and not connection.pinged:
                connection.pinged = True
                connection.send(ping)
        self.kick()
        self._sweep = self.loop.call_later(self.sweep_step, self._look)

    # -- events: local and remote members alike ------------------------------------

    def publish(self, *fields: bytes) -> None:
        backplane = self.backplane
        if backplane is not None and backplane.up:
            backplane.publish(*fields)

    def join(self, member: Member, name: bytes) -> Channel | None:
        """``member`` joins ``name``; the JOIN goes to every local member (itself included)."""
        channel = self.rooms.join(member, name)
        if channel is not None:
            self.rooms.to_channel(channel, b":" + member.prefix + b" JOIN " + channel.name + CRLF)
            if member.local:
                self.publish(b"JOIN", member.nick, channel.name)
        return channel

    def part(self, member: Member, channel: Channel, reason: bytes) -> None:
        line = format_message(member.prefix, b"PART", channel.name, reason) + CRLF
        self.rooms.to_channel(channel, line)
        self.rooms.part(member, channel)
        if member.local:
            self.publish(b"PART", member.nick, channel.name, reason)

    def quit(self, member: Member, reason: bytes) -> None:
        """``member`` leaves the network; those sharing a channel see its QUIT."""
        rooms = self.rooms
        if member.local and rooms.users.get(_key(member)) is not member:
            return  # already gone
        others = rooms.neighbours(member)
        del others[member]
        rooms.remove_user(member)
        if others:
            rooms.to_members(others, format_message(member.prefix, b"QUIT", reason) + CRLF)
        if member.local:
            self.publish(b"QUIT", member.nick, reason)
            if self.backplane is not None:
                self.backplane.release(member.nick)

    def nick(self, member: Member, new: bytes) -> None:
        """A nick change, seen by the member and everyone sharing a channel with it."""
        line = b":" + member.prefix + b" NICK :" + new + CRLF
        old = member.nick
        audience = self.rooms.neighbours(member)
        self.rooms.rename(member, new)
        self.rooms.to_members(audience, line)
        if member.local:
            self.publish(b"NICK", old, new)

    def topic(self, member: Member, channel: Channel, text: bytes) -> None:
        channel.topic = text
        channel.topic_by = member.prefix
        channel.topic_at = int(time.time())
        self.rooms.to_channel(
            channel, format_message(member.prefix, b"TOPIC", channel.name, text) + CRLF
        )
        if member.local:
            self.publish(b"TOPIC", member.nick, channel.name, text)

    def to_channel(self, member: Member, channel: Channel, line: bytes) -> None:
        """A PRIVMSG/NOTICE ``line`` (CRLF included) to a channel, not echoed to its sender."""
        self.rooms.to_channel(channel, line, member)
        if member.local:
            self.publish(b"MSG", channel.key, line)

    def to_user(self, target: Member, line: bytes) -> None:
        """A PRIVMSG/NOTICE ``line`` (CRLF included) to one user, here or elsewhere."""
        if target.local:
            self.rooms.to_member(target, line)
        else:
            self.publish(b"PRIV", _key(target), line)


def _key(member: Member) -> bytes:
    return casefold(member.nick)
