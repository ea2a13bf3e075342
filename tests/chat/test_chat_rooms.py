"""The rooms: membership, case mapping and the fan-out queues, without I/O."""

from __future__ import annotations

from linechat.services.chat.rooms import RemoteMember, Rooms


class Local(RemoteMember):
    """A stand-in for a local connection: the rooms only need these attributes."""

    __slots__ = ()
    local = True


def member(nick: bytes, cls: type[RemoteMember] = Local) -> RemoteMember:
    return cls(nick, b"~u", b"host", b"Real", b"srv")


def test_join_part_and_channel_lifetime() -> None:
    rooms = Rooms()
    a, b = member(b"Alice"), member(b"bob", RemoteMember)
    rooms.add_user(a)
    rooms.add_user(b)
    channel = rooms.join(a, b"#Room")
    assert channel is not None and channel.name == b"#Room"
    assert rooms.join(a, b"#ROOM") is None  # already in, whatever the case
    assert rooms.join(b, b"#room") is channel
    assert list(channel.members) == [a, b]
    assert list(channel.local) == [a]  # only local members are fanned out to
    rooms.part(a, channel)
    assert rooms.channel(b"#room") is channel
    rooms.part(b, channel)
    assert rooms.channel(b"#room") is None  # the last one out closes it


def test_nicks_fold_with_rfc1459() -> None:
    rooms = Rooms()
    a = member(b"Nick[x]")
    rooms.add_user(a)
    assert rooms.find(b"nick{X}") is a
    assert rooms.nick_taken(b"NICK{x}")
    assert not rooms.nick_taken(b"nick[X]", by=a)  # a case change of its own nick
    rooms.rename(a, b"other")
    assert rooms.find(b"Nick[x]") is None
    assert a.prefix == b"other!~u@host"


def test_fan_out_queues_one_shared_line_per_member_and_marks_dirty_once() -> None:
    rooms = Rooms()
    members = [member(b"m%d" % i) for i in range(5)]
    for m in members:
        rooms.add_user(m)
        rooms.join(m, b"#c")
    channel = rooms.channel(b"#c")
    assert channel is not None
    line = b":m0!~u@host PRIVMSG #c :hi\r\n"
    rooms.to_channel(channel, line, skip=members[0])
    rooms.to_channel(channel, line, skip=members[0])
    assert members[0].outq == []
    assert all(m.outq == [line, line] and m.outq[0] is line for m in members[1:])
    assert rooms.dirty == members[1:]  # once each, however many lines


def test_remove_user_leaves_every_channel_and_neighbours() -> None:
    rooms = Rooms()
    a, b, c = member(b"a"), member(b"b"), member(b"c")
    for m in (a, b, c):
        rooms.add_user(m)
    rooms.join(a, b"#one")
    rooms.join(b, b"#one")
    rooms.join(a, b"#two")
    rooms.join(c, b"#two")
    assert list(rooms.neighbours(a)) == [a, b, c]
    left = rooms.remove_user(a)
    assert sorted(ch.name for ch in left) == [b"#one", b"#two"]
    assert a.channels == {}
    assert rooms.find(b"a") is None
