"""Who is on, and who is in which channel: the chat's state, without I/O.

Members are local connections (they have a send queue) or users of other
servers learnt from the Redis backplane (``local`` False: their own server
delivers to them). Names are keys after the rfc1459 case mapping.

Fan-out is the hot path: a line for a channel is formatted once, and the
lines a channel gets in a row within one loop pass form a :class:`Run`,
joined once at the flush and shared by every member: a new run is put in
each local member's queue (``outq``), later lines of the same run cost one
append in all, not one per member. A run ends when anything else is queued
for anyone, when a membership changes, and at the flush, so every member
still gets its lines in the order they were sent. A member is put in the
``dirty`` list the first time in a loop pass, and the owner of the rooms
writes each dirty member's queue with one transport write per pass
(:meth:`Rooms.take`).
"""

from __future__ import annotations

import time
from typing import Protocol

from .irc import casefold

__all__ = ["Channel", "Member", "RemoteMember", "Rooms", "Run"]


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
    #: Queued outgoing lines and runs (local members only; empty for remote ones).
    outq: list[bytes | Run]

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
        self.outq: list[bytes | Run] = []


class Run:
    """Lines a channel got in a row within one loop pass, shared by its members.

    Joined once for all the members that sent none of them; a member that
    sent some gets the others (its own are not echoed back).
    """

    __slots__ = ("blob", "lines", "senders", "talkers")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.senders: list[Member | None] = []
        self.talkers: set[Member] = set()
        self.blob: bytes | None = None

    def add(self, line: bytes, sender: Member | None) -> None:
        self.lines.append(line)
        self.senders.append(sender)
        if sender is not None:
            self.talkers.add(sender)

    def bytes_for(self, member: Member) -> bytes:
        if member in self.talkers:
            lines = self.lines
            return b"".join(
                [x for x, s in zip(lines, self.senders, strict=True) if s is not member]
            )
        blob = self.blob
        if blob is None:
            blob = self.blob = b"".join(self.lines)
        return blob


class Channel:
    """A channel: its members (all of them, and the local ones apart for fan-out)."""

    __slots__ = (
        "created",
        "key",
        "local",
        "members",
        "name",
        "run",
        "run_stamp",
        "topic",
        "topic_at",
        "topic_by",
    )

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
        #: The run its next line may join, if ``run_stamp`` is still the rooms' stamp.
        self.run: Run | None = None
        self.run_stamp = -1


class Rooms:
    """Users by nick and channels by name; every name compared after case mapping."""

    def __init__(self) -> None:
        self.users: dict[bytes, Member] = {}
        self.channels: dict[bytes, Channel] = {}
        #: Local members with queued output since the last flush.
        self.dirty: list[Member] = []
        #: Bumped whenever a channel's run must end (see the module's docstring).
        self.stamp = 0
        #: Channels whose run is open, to let go of them at the flush.
        self._open: list[Channel] = []

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
            self.stamp += 1  # lines from now on reach it: a new run
        member.channels[key] = channel
        return channel

    def part(self, member: Member, channel: Channel) -> None:
        self.stamp += 1
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
        run = channel.run
        if run is not None and channel.run_stamp == self.stamp:
            run.add(line, skip)  # the members hold this run already
            return
        self.stamp += 1
        run = channel.run = Run()
        channel.run_stamp = self.stamp
        self._open.append(channel)
        run.add(line, skip)
        dirty = self.dirty
        for member in channel.local:
            queue = member.outq
            if not queue:
                dirty.append(member)
            queue.append(run)

    def take(self, member: Member) -> bytes:
        """Everything queued for ``member``, as one bytes object; its queue emptied."""
        queue = member.outq
        if len(queue) == 1:
            item = queue[0]
            data = item if isinstance(item, bytes) else item.bytes_for(member)
        else:
            data = b"".join([x if isinstance(x, bytes) else x.bytes_for(member) for x in queue])
        queue.clear()
        return data

    def end_runs(self) -> None:
        """At the flush: the open runs are closed; lines from now on start new ones."""
        self.stamp += 1
        for channel in self._open:
            channel.run = None
        self._open.clear()

    def to_members(self, members: dict[Member, None], line: bytes) -> None:
        """Queue ``line`` for each local member of ``members``."""
        self.stamp += 1
        dirty = self.dirty
        for member in members:
            if member.local:
                queue = member.outq
                if not queue:
                    dirty.append(member)
                queue.append(line)

    def to_member(self, member: Member, line: bytes) -> None:
        self.stamp += 1
        if member.local:
            if not member.outq:
                self.dirty.append(member)
            member.outq.append(line)
