"""A minimal IRC fan-out server on LineProtocol: the floor of a Python chat.

Not the chat service (``linechat serve chat``): just enough IRC for the
fan-out benchmark (NICK/USER -> 001, JOIN -> JOIN/353/366, PRIVMSG to a
channel, PING/PONG, QUIT; everything else ignored) to learn what a delivery
costs in Python on asyncio or uvloop, and which design gets there.

The design measured (``--design batched``, the default): a PRIVMSG to a
channel is formatted once and appended to the channel's list of pending
lines; the first one of a loop pass schedules a flush with ``call_soon``.
The flush, once per loop pass, joins each channel's pending lines into one
bytes object and writes that same object to every member: one
``transport.write`` per member per pass, whatever the number of lines, and
no Python object per delivery. A member that sent some of the lines (who
must not get its own back) gets a join of the others. A member whose unsent
bytes pass ``--sendq`` is closed with ``ERROR :Closing Link: ... (Max SendQ
exceeded)``, so one reader that stops costs the others nothing.

``--design queue`` gathers per member instead: each line is appended to
each member's own list, and the flush joins each member's list and writes it
(one write per member per pass too, but a Python step per delivery).
``--design naive`` writes each line to each member at once (one
``transport.write`` per delivery). Both are there for comparison. ``--fault drop`` (every
tenth PRIVMSG reaches nobody) and ``--fault reorder`` (every tenth swaps
places with the next) exist to show that the load generator catches them.

    .venv/bin/python bench/chat/proto_server.py --port 6667 --loop uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from linechat import LineProtocol

SERVER = b"proto.linechat"


class Hub:
    """The server's shared state: nicks, channels, and the pending flush."""

    def __init__(self, sendq: int, design: str = "batched", fault: str | None = None) -> None:
        self.sendq = sendq
        self.design = design
        #: Members with lines in their own queue (``--design queue``).
        self.dirty_members: list[Client] = []
        self.fault = fault
        self._posted = 0
        self._held: tuple[Channel, Client, bytes] | None = None
        self.nicks: dict[bytes, Client] = {}
        self.channels: dict[bytes, Channel] = {}
        self.dirty: list[Channel] = []
        self._scheduled = False

    def channel(self, name: bytes) -> Channel:
        key = name.lower()
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = Channel(name)
        return channel

    def post(self, channel: Channel, sender: Client, line: bytes) -> None:
        """Queue one formatted line (CRLF included) for every member but ``sender``."""
        if self.fault is not None and b" PRIVMSG " in line and self._faulty(channel, sender, line):
            return
        if self.design == "naive":
            for member in channel.members:
                if member is not sender:
                    member.send(line)
            return
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        if self.design == "queue":
            dirty = self.dirty_members
            for member in channel.members:
                if member is not sender:
                    queue = member.outq
                    if not queue:
                        dirty.append(member)
                    queue.append(line)
            return
        if not channel.pending:
            self.dirty.append(channel)
        channel.pending.append(line)
        channel.senders.append(sender)

    def _faulty(self, channel: Channel, sender: Client, line: bytes) -> bool:
        """The deliberate faults: True if ``line`` is not to be posted now."""
        self._posted += 1
        if self._held is not None:
            held, self._held = self._held, None
            self.post(channel, sender, line)
            self.post(*held)  # after the line that followed it
            return True
        if self._posted % 10:
            return False
        if self.fault == "reorder":
            self._held = (channel, sender, line)
        return True

    def flush(self) -> None:
        """Once per loop pass: one write per member of every channel with lines."""
        self._scheduled = False
        members, self.dirty_members = self.dirty_members, []
        for member in members:
            queue = member.outq
            data = queue[0] if len(queue) == 1 else b"".join(queue)
            queue.clear()
            member.send(data)
        dirty, self.dirty = self.dirty, []
        for channel in dirty:
            lines, senders = channel.pending, channel.senders
            channel.pending, channel.senders = [], []
            blob = b"".join(lines)
            talkers = set(senders)
            for member in channel.members:
                if member in talkers:
                    own = [line for line, s in zip(lines, senders, strict=True) if s is not member]
                    if own:
                        member.send(b"".join(own))
                else:
                    member.send(blob)


class Channel:
    __slots__ = ("members", "name", "pending", "senders")

    def __init__(self, name: bytes) -> None:
        self.name = name
        #: A dict as an ordered set: members in join order, O(1) removal.
        self.members: dict[Client, None] = {}
        self.pending: list[bytes] = []
        self.senders: list[Client] = []


class Client(LineProtocol):
    __slots__ = ("channels", "doomed", "hub", "nick", "outq", "prefix", "user")

    def __init__(self, hub: Hub) -> None:
        super().__init__(max_line_length=510, idle_timeout=None, write_high_water=1 << 30)
        self.hub = hub
        self.nick = b""
        self.user = b""
        self.prefix = b""
        self.channels: list[Channel] = []
        self.doomed = False
        self.outq: list[bytes] = []

    def send(self, data: bytes) -> None:
        """A pre-formatted batch, straight to the transport, within the send queue."""
        transport = self.transport
        if transport is None or self._closing:
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.hub.sendq and not self.doomed:
            # Not now: the flush is iterating over the channel's members.
            self.doomed = True
            asyncio.get_running_loop().call_soon(self.close_link, b"Max SendQ exceeded")

    def close_link(self, reason: bytes) -> None:
        self.part_all()
        # The error goes after what is queued; the transport is dropped if it
        # cannot drain (a reader that stopped).
        self.write_line(b"ERROR :Closing Link: " + self.nick + b" (" + reason + b")")
        self.close()
        loop = asyncio.get_running_loop()
        loop.call_later(5.0, self.abort)

    def reply(self, numeric: bytes, text: bytes) -> None:
        self.write_line(b":" + SERVER + b" " + numeric + b" " + (self.nick or b"*") + b" " + text)

    def line_received(self, line: bytes) -> None:
        command, _, rest = line.partition(b" ")
        command = command.upper()
        if command == b"PRIVMSG":
            target, _, text = rest.partition(b" ")
            channel = self.hub.channels.get(target.lower())
            if channel is not None and self.prefix:
                self.hub.post(
                    channel,
                    self,
                    b":" + self.prefix + b" PRIVMSG " + channel.name + b" " + text + b"\r\n",
                )
            elif self.prefix:
                self.reply(b"401", target + b" :No such nick/channel")
        elif command == b"PING":
            self.write_line(b":" + SERVER + b" PONG " + SERVER + b" " + rest)
        elif command == b"NICK":
            self.nick_command(rest.split(b" ", 1)[0].lstrip(b":"))
        elif command == b"USER":
            self.user = rest.split(b" ", 1)[0]
            self.try_register()
        elif command == b"JOIN" and self.prefix:
            for name in rest.split(b" ", 1)[0].split(b","):
                self.join(name)
        elif command == b"QUIT":
            self.part_all()
            self.write_line(b"ERROR :Closing Link: " + self.nick + b" (Quit)")
            self.close()

    def nick_command(self, nick: bytes) -> None:
        if not nick:
            self.reply(b"431", b":No nickname given")
        elif nick.lower() in self.hub.nicks:
            self.reply(b"433", nick + b" :Nickname is already in use")
        elif not self.prefix:
            self.nick = nick
            self.try_register()

    def try_register(self) -> None:
        if self.prefix or not self.nick or not self.user:
            return
        self.hub.nicks[self.nick.lower()] = self
        host = self.peer[0].encode() if isinstance(self.peer, tuple) else b"localhost"
        self.prefix = self.nick + b"!" + self.user + b"@" + host
        self.reply(b"001", b":Welcome to the fan-out prototype " + self.prefix)
        self.reply(b"422", b":MOTD File is missing")

    def join(self, name: bytes) -> None:
        if not name.startswith(b"#") or len(name) > 50:
            self.reply(b"403", name + b" :No such channel")
            return
        channel = self.hub.channel(name)
        if self in channel.members:
            return
        channel.members[self] = None
        self.channels.append(channel)
        line = b":" + self.prefix + b" JOIN " + channel.name
        self.hub.post(channel, self, line + b"\r\n")
        self.write_line(line)
        names = b" ".join(member.nick for member in channel.members)
        self.reply(b"353", b"= " + channel.name + b" :" + names)
        self.reply(b"366", channel.name + b" :End of /NAMES list.")

    def part_all(self) -> None:
        for channel in self.channels:
            channel.members.pop(self, None)
            if not channel.members:
                self.hub.channels.pop(channel.name.lower(), None)
        self.channels = []
        if self.nick and self.hub.nicks.get(self.nick.lower()) is self:
            del self.hub.nicks[self.nick.lower()]

    def connection_ended(self, exc: BaseException | None) -> None:
        self.part_all()


async def serve(host: str, port: int, hub: Hub) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(hub), host, port, backlog=4096)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with server:
        bound = server.sockets[0].getsockname()
        print(f"proto_server listening on {bound[0]}:{bound[1]}", flush=True)
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free one")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--sendq", type=int, default=256 * 1024, help="bytes (default 256 KiB)")
    parser.add_argument("--design", choices=["batched", "queue", "naive"], default="batched")
    parser.add_argument("--fault", choices=["drop", "reorder"], help="break delivery on purpose")
    args = parser.parse_args()
    coro = serve(args.host, args.port, Hub(args.sendq, args.design, args.fault))
    with contextlib.suppress(KeyboardInterrupt):
        if args.loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(coro)
        else:
            asyncio.run(coro)


if __name__ == "__main__":
    main()
