"""The chat shared by several servers through Redis (``--redis URL``).

Each server keeps the whole network's rooms in memory (its own members and a
mirror of the others'), so NAMES, WHO, WHOIS and delivery never wait for
Redis. What changes goes out on one pub/sub channel, several events of one
loop pass in one PUBLISH; each server applies the others' events to its
mirror and delivers their lines to its own members.

Nicks are unique network-wide: a nick is a key claimed with ``SET NX`` and a
TTL that its server renews while alive, deleted when its user leaves; a
killed server's nicks are free once their TTL lapses, and the others drop
its users (a ``*.net *.split`` QUIT) when its heartbeats stop.

Losing Redis costs no client: local rooms go on (nicks then checked on this
server only), one warning is logged, and the server reconnects with back-off.
Back, it claims its nicks again, asks the others for their state and sends
its own (the mirror is rebuilt; users who left meanwhile vanish without QUIT).

Events, one per line of a PUBLISH (fields split by spaces, the last one free):
``KIND SERVER-ID field... [free text]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...errors import ServiceError
from .hub import ChatHub
from .irc import casefold
from .rooms import RemoteMember

__all__ = ["RedisBackplane", "decode_event", "encode_event"]

log = logging.getLogger("linechat.chat.redis")

#: How many space-separated fields each event has after its kind and server id.
FIELDS: dict[bytes, int] = {
    b"HELLO": 0,
    b"BEAT": 1,  # server name
    b"USER": 5,  # nick user host server realname
    b"SJOIN": 2,  # nick channel (a member already there: no JOIN line)
    b"STOPIC": 4,  # channel at setter topic
    b"JOIN": 2,  # nick channel
    b"PART": 3,  # nick channel reason
    b"QUIT": 2,  # nick reason
    b"NICK": 2,  # old new
    b"TOPIC": 3,  # nick channel topic
    b"MSG": 2,  # channel-key line
    b"PRIV": 2,  # nick-key line
}

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
RENEW = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('EXPIRE', key, ARGV[2]); n = n + 1
  end
end
return n
"""
#: Publishes waiting for Redis at most; past it new events are dropped (and logged).
MAX_IN_FLIGHT = 1000
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0


def encode_event(kind: bytes, server_id: bytes, *fields: bytes) -> bytes:
    """One event; no field may hold LF (lines never do), only the last a space."""
    return b" ".join((kind, server_id, *fields))


def decode_event(data: bytes) -> tuple[bytes, bytes, list[bytes]] | None:
    """``(kind, server_id, fields)``, or None for an event this version does not know."""
    kind, _, rest = data.partition(b" ")
    count = FIELDS.get(kind)
    if count is None:
        return None
    parts = rest.split(b" ", count)
    if len(parts) != count + 1 or not parts[0]:
        return None
    return kind, parts[0], parts[1:]


class RedisBackplane:
    """Shares one hub's chat with the other servers using the same Redis."""

    def __init__(self, hub: ChatHub, url: str, *, nick_ttl: float = 30.0) -> None:
        self.hub = hub
        self.url = url
        self.nick_ttl = max(1, round(nick_ttl))
        self.server_id = os.urandom(6).hex().encode()
        network = hub.config.network
        self.prefix = b"linechat:" + network + b":"
        self.channel = self.prefix + b"events"
        self.up = False
        self.redis: Any = None
        #: Other servers' members: server id -> nick key -> member.
        self.remote: dict[bytes, dict[bytes, RemoteMember]] = {}
        self.beats: dict[bytes, float] = {}
        self._pending: list[bytes] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        self._closed = False

    # -- life ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (or raise ServiceError), then keep the link up in the background."""
        try:
            # A pooled connection from before an outage fails once: try again on a new one.
            self.redis = aioredis.from_url(
                self.url,
                socket_timeout=5,
                socket_connect_timeout=5,
                decode_responses=False,
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[RedisConnectionError],
            )
            await self.redis.ping()
        except (RedisError, OSError, ValueError) as exc:
            raise ServiceError(f"--redis {self.url}: cannot use it: {exc}") from exc
        self._release_script = self.redis.register_script(RELEASE)
        self._renew_script = self.redis.register_script(RENEW)
        self._runner = asyncio.ensure_future(self._run())
        self._beater = asyncio.ensure_future(self._beat())
        for _ in range(100):  # until subscribed, so the first events are heard
            if self.up:
                break
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._closed = True
        for task in (self._runner, self._beater, *self._tasks):
            if task is not None:
                task.cancel()
        if self.up:
            try:
                for member in list(self.hub.rooms.users.values()):
                    if member.local:
                        await self._release_script(
                            keys=[self._key(casefold(member.nick))], args=[self.server_id]
                        )
            except (RedisError, OSError):
                pass
        if self.redis is not None:
            await self.redis.aclose()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _key(self, folded: bytes) -> bytes:
        return self.prefix + b"nick:" + folded

    def _lost(self, exc: BaseException) -> None:
        """The subscription broke: Redis is away until the listener is back."""
        if self.up:
            log.warning("Redis lost (%s): local rooms go on, reconnecting", exc)
        self.up = False

    def _failed(self, exc: BaseException) -> None:
        """A command failed. Only the listener decides that Redis is away: a
        pooled connection from before an outage fails once and is replaced."""
        log.debug("Redis command failed: %s", exc)

    # -- nicks -------------------------------------------------------------------------

    async def claim(self, nick: bytes) -> bool:
        """SET NX with the TTL; True when it is ours (or when Redis is away: local check only)."""
        key = self._key(casefold(nick))
        try:
            if await self.redis.set(key, self.server_id, nx=True, ex=self.nick_ttl):
                return True
            return bool(await self.redis.get(key) == self.server_id)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return True

    def release(self, nick: bytes) -> None:
        if self.up:
            self._spawn(self._release(nick))

    async def _release(self, nick: bytes) -> None:
        try:
            await self._release_script(keys=[self._key(casefold(nick))], args=[self.server_id])
        except (RedisError, OSError) as exc:
            self._failed(exc)

    # -- publishing -----------------------------------------------------------------------

    def publish(self, kind: bytes, *fields: bytes) -> None:
        if kind in (b"MSG", b"PRIV"):
            fields = (fields[0], fields[1].removesuffix(b"\r\n"))
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._send_pending)
        self._pending.append(encode_event(kind, self.server_id, *fields))

    def _send_pending(self) -> None:
        if self._pending:
            batch, self._pending = b"\n".join(self._pending), []
            if len(self._tasks) >= MAX_IN_FLIGHT:  # Redis is not keeping up: do not grow
                log.warning("Redis is slow: %d bytes of events dropped", len(batch))
                return
            self._spawn(self._publish(batch))

    async def _publish(self, batch: bytes) -> None:
        try:
            await self.redis.publish(self.channel, batch)
        except (RedisError, OSError) as exc:
            self._failed(exc)

    def _announce(self) -> None:
        """HELLO (the others answer with their state) and our own state."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._send_pending)
        self._pending.append(encode_event(b"HELLO", self.server_id))
        self._state()

    def _state(self) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._send_pending)
        pending, sid = self._pending, self.server_id
        pending.append(encode_event(b"BEAT", sid, self.hub.config.server_name))
        for member in list(self.hub.connections):
            if not member.registered or member.is_closing:
                continue
            pending.append(
                encode_event(
                    b"USER",
                    sid,
                    member.nick,
                    member.user,
                    member.host,
                    member.server_name,
                    member.realname,
                )
            )
            for channel in member.channels.values():
                pending.append(encode_event(b"SJOIN", sid, member.nick, channel.name))
        for channel in self.hub.rooms.channels.values():
            if channel.topic and channel.local:
                pending.append(
                    encode_event(
                        b"STOPIC",
                        sid,
                        channel.name,
                        b"%d" % channel.topic_at,
                        channel.topic_by,
                        channel.topic,
                    )
                )

    # -- the link ------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._closed:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._reclaim()
                self._forget_remote()
                if not self.up:
                    log.info(
                        "Redis connected at %s (server id %s)", self.url, self.server_id.decode()
                    )
                self.up = True
                backoff = BACKOFF_FIRST
                self._announce()
                while not self._closed:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] in ("message", b"message"):
                        self._apply(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._lost(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _reclaim(self) -> None:
        """Back after an outage: claim our nicks again (a clash is logged, both keep theirs)."""
        for member in list(self.hub.rooms.users.values()):
            if member.local and not await self.claim(member.nick):
                nick = member.nick.decode(errors="replace")
                log.warning("nick %r is also claimed on another server", nick)

    def _forget_remote(self) -> None:
        rooms = self.hub.rooms
        for members in self.remote.values():
            for member in members.values():
                key = casefold(member.nick)
                if rooms.users.get(key) is member:
                    del rooms.users[key]
                for channel in list(member.channels.values()):
                    rooms.part(member, channel)
        self.remote.clear()
        self.beats.clear()

    async def _beat(self) -> None:
        """Heartbeat, nick TTL renewal, and the split of servers gone silent."""
        step = max(0.3, self.nick_ttl / 3)
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(step)
            if not self.up:
                continue
            self.publish(b"BEAT", self.hub.config.server_name)
            keys = [self._key(key) for key, m in self.hub.rooms.users.items() if m.local]
            try:
                for start in range(0, len(keys), 500):
                    await self._renew_script(
                        keys=keys[start : start + 500], args=[self.server_id, self.nick_ttl]
                    )
            except (RedisError, OSError) as exc:
                self._failed(exc)
                continue
            now = loop.time()
            for sid, seen in list(self.beats.items()):
                if now - seen > self.nick_ttl:
                    self._split(sid)

    def _split(self, sid: bytes) -> None:
        log.warning("server %s went silent: its users leave", sid.decode(errors="replace"))
        self.beats.pop(sid, None)
        for member in list(self.remote.pop(sid, {}).values()):
            self.hub.quit(member, b"*.net *.split")
        self.hub.kick()

    # -- applying the others' events ----------------------------------------------------------

    def _apply(self, data: bytes) -> None:
        for raw in data.split(b"\n"):
            event = decode_event(raw)
            if event is None or event[1] == self.server_id:
                continue
            try:
                self._apply_one(*event)
            except (ValueError, KeyError, IndexError):  # another version's event: skip it
                log.debug("event not understood: %r", raw[:200])
            except Exception:  # a bug must not stop the listener (and the network)
                log.exception("event not applied: %r", raw[:200])
        self.hub.kick()

    def _apply_one(self, kind: bytes, sid: bytes, fields: list[bytes]) -> None:
        hub, rooms = self.hub, self.hub.rooms
        members = self.remote.setdefault(sid, {})
        self.beats[sid] = asyncio.get_running_loop().time()
        if kind == b"MSG":
            channel = rooms.channels.get(fields[0])
            if channel is not None:
                rooms.to_channel(channel, fields[1] + b"\r\n")
        elif kind == b"PRIV":
            target = rooms.users.get(fields[0])
            if target is not None and target.local:
                rooms.to_member(target, fields[1] + b"\r\n")
        elif kind == b"HELLO":
            self._state()
        elif kind == b"BEAT":
            pass
        elif kind == b"USER":
            nick, user, host, server, realname = fields
            key = casefold(nick)
            member = RemoteMember(nick, user, host, realname, server)
            old = members.get(key)
            if old is not None:
                hub.quit(old, b"*.net *.split")
            members[key] = member
            rooms.users.setdefault(key, member)
        elif kind == b"STOPIC":
            channel = rooms.channel(fields[0])
            if channel is not None and not channel.topic:
                channel.topic_at, channel.topic_by, channel.topic = (
                    int(fields[1]),
                    fields[2],
                    fields[3],
                )
        else:
            sender = members.get(casefold(fields[0]))
            if sender is None:
                return
            if kind in (b"JOIN", b"SJOIN"):
                if kind == b"JOIN":
                    hub.join(sender, fields[1])
                else:
                    rooms.join(sender, fields[1])
            elif kind == b"PART":
                channel = rooms.channel(fields[1])
                if channel is not None and sender in channel.members:
                    hub.part(sender, channel, fields[2])
            elif kind == b"QUIT":
                del members[casefold(sender.nick)]
                hub.quit(sender, fields[1])
            elif kind == b"NICK":
                del members[casefold(sender.nick)]
                hub.nick(sender, fields[1])
                members[casefold(fields[1])] = sender
            elif kind == b"TOPIC":
                channel = rooms.channel(fields[1])
                if channel is not None:
                    hub.topic(sender, channel, fields[2])
