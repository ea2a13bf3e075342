"""Who is on, and who is in which channel: the chat's state, without I/O.

Members are local connections (they have a send queue) or users of other
servers learnt from the Redis backplane (``local`` False: their own server
delivers to them). Names are keys after the rfc1459 case mapping.

Fan-out is the hot path: a line for a channel is formatted once and its
bytes object appended to each local member's queue (``outq``); a member put
in the ``dirty`` list the first time in a loop pass, and the owner of the
rooms writes each dirty member's queue with one transport write per pass.
"""

from __future__ import annotations

import time
from typing import Protocol

from .irc import casefold

__all__ = ["Channel", "Member", "RemoteMember", "Rooms"]


class Member(Protocol):
    """What the rooms need of a user, local or remote."""

    nick: bytes
    user: bytes
    host: bytes
    realname: bytes
    prefix: bytes
    #: The server the user is on (its name, for WHOIS and WHO).
    server_name: bytes
    #: Folded channel name -> channel, for the channels the user is in.
    channels: dict[bytes, Channel]
    #: Queued outgoing bytes (local members only; empty for remote ones).
    outq: list[bytes]

    @property
    def local(self) -> bool: ...


class RemoteMember:
    """A user on another server of the network (known from the backplane)."""

    __slots__ = ("channels", "host", "nick", "outq", "prefix", "realname", "server_name", "user")

    local = False

    def __init__(
        self, nick: bytes, user: bytes, host: bytes, realname: bytes, server_name: bytes
    ) -> None:
        self.nick = nick
        self.user = user
        self.host = host
        self.realname = realname
        self.server_name = server_name
        self.prefix = nick + b"!" + user + b"@" + host
        self.channels: dict[bytes, Channel] = {}
        self.outq: list[bytes] = []


class Channel:
    """A channel: its members (all of them, and the local ones apart for fan-out)."""

    __slots__ = ("created", "key", "local", "members", "name", "topic", "topic_at", "topic_by")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.key = casefold(name)
        self.created = int(time.time())
        self.topic = b""
        self.topic_by = b""
        self.topic_at = 0
        #: Every member, in joining order (a dict as an ordered set).
        self.members: dict[Member, None] = {}
        #: The local members only: what a line fans out to.
        self.local: dict[Member, None] = {}


class Rooms:
    """Users by nick and channels by name; every name compared after case mapping."""

    def __init__(self) -> None:
        self.users: dict[bytes, Member] = {}
        self.channels: dict[bytes, Channel] = {}
        #: Local members with queued output since the last flush.
        self.dirty: list[Member] = []

    # -- nicks ---------------------------------------------------------------

    def find(self, nick: bytes) -> Member | None:
        return self.users.get(casefold(nick))

    def nick_taken(self, nick: bytes, by: Member | None = None) -> bool:
        """Is ``nick`` someone else's (``by`` may change the case of its own)?"""
        owner = self.users.get(casefold(nick))
        return owner is not None and owner is not by

    def add_user(self, member: Member) -> None:
        self.users[casefold(member.nick)] = member

    def rename(self, member: Member, nick: bytes) -> None:
        """Change a member's nick (the caller checked it is free)."""
        key = casefold(member.nick)
        if self.users.get(key) is member:
            del self.users[key]
        member.nick = nick
        member.prefix = nick + b"!" + member.user + b"@" + member.host
        self.users[casefold(nick)] = member

    def remove_user(self, member: Member) -> list[Channel]:
        """Forget a member; returns the channels it was in (already left)."""
        key = casefold(member.nick)
        if self.users.get(key) is member:
            del self.users[key]
        channels = list(member.channels.values())
        for channel in channels:
            self.part(member, channel)
        return channels

    # -- channels --------------------------------------------------------------

    def channel(self, name: bytes) -> Channel | None:
        return self.channels.get(casefold(name))

    def join(self, member: Member, name: bytes) -> Channel | None:
        """Put ``member`` in channel ``name`` (created if new); None if already in."""
        key = casefold(name)
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = Channel(name)
        elif member in channel.members:
            return None
        channel.members[member] = None
        if member.local:
            channel.local[member] = None
        member.channels[key] = channel
        return channel

    def part(self, member: Member, channel: Channel) -> None:
        channel.members.pop(member, None)
        channel.local.pop(member, None)
        member.channels.pop(channel.key, None)
        if not channel.members:
            self.channels.pop(channel.key, None)

    def neighbours(self, member: Member) -> dict[Member, None]:
        """Everyone sharing a channel with ``member``, itself included once."""
        seen: dict[Member, None] = {member: None}
        for channel in member.channels.values():
            seen.update(channel.members)
        return seen

    # -- delivery --------------------------------------------------------------

    def to_channel(self, channel: Channel, line: bytes, skip: Member | None = None) -> None:
        """Queue ``line`` (CRLF included) for every local member but ``skip``."""
        dirty = self.dirty
        for member in channel.local:
            if member is not skip:
                queue = member.outq
                if not queue:
                    dirty.append(member)
                queue.append(line)

    def to_members(self, members: dict[Member, None], line: bytes) -> None:
        """Queue ``line`` for each local member of ``members``."""
        dirty = self.dirty
        for member in members:
            if member.local:
                queue = member.outq
                if not queue:
                    dirty.append(member)
                queue.append(line)

    def to_member(self, member: Member, line: bytes) -> None:
        if member.local:
            if not member.outq:
                self.dirty.append(member)
            member.outq.append(line)
