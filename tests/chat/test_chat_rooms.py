"""The rooms: membership, case mapping and the fan-out queues, without I/O."""

from __future__ import annotations

from linechat.services.chat.rooms import Channel, RemoteMember, Rooms


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


def in_channel(n: int) -> tuple[Rooms, list[RemoteMember], Channel]:
    rooms = Rooms()
    members = [member(b"m%d" % i) for i in range(n)]
    for m in members:
        rooms.add_user(m)
        rooms.join(m, b"#c")
    channel = rooms.channel(b"#c")
    assert channel is not None
    return rooms, members, channel


def test_fan_out_shares_one_run_per_channel_and_marks_dirty_once() -> None:
    rooms, members, channel = in_channel(5)
    one = b":m0!~u@host PRIVMSG #c :one\r\n"
    two = b":m1!~u@host PRIVMSG #c :two\r\n"
    rooms.to_channel(channel, one, skip=members[0])
    rooms.to_channel(channel, two, skip=members[1])
    run = members[2].outq[0]
    assert all(m.outq == [run] for m in members)  # one shared object, not a line each
    assert rooms.dirty == members  # once each, however many lines
    rooms.end_runs()
    assert rooms.take(members[0]) == two  # its own line is not sent back
    assert rooms.take(members[1]) == one
    blob = rooms.take(members[2])
    assert blob == one + two
    assert rooms.take(members[3]) is blob  # joined once for everyone
    assert rooms.take(members[4]) is blob
    assert all(m.outq == [] for m in members)


def test_a_line_queued_between_two_channel_lines_keeps_its_place() -> None:
    rooms, members, channel = in_channel(4)
    one, two = b"one\r\n", b"two\r\n"
    direct, other = b"direct\r\n", b"other\r\n"
    rooms.to_channel(channel, one)
    rooms.to_member(members[2], direct)
    rooms.to_channel(channel, two)
    newcomer = member(b"late")
    rooms.add_user(newcomer)
    rooms.join(newcomer, b"#c")
    rooms.to_channel(channel, other)
    rooms.end_runs()
    assert rooms.take(members[2]) == one + direct + two + other
    assert rooms.take(members[3]) == one + two + other
    assert rooms.take(newcomer) == other  # nothing from before it joined
    rooms.to_channel(channel, one)  # after the flush: a new run
    assert rooms.take(members[3]) == one


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
