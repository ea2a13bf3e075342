"""smtp-sink against aiosmtpd's Maildir handler: messages accepted per server CPU-second.

    .venv/bin/pip install aiosmtpd        # or: pip install -e '.[bench]'
    .venv/bin/python bench/smtp.py [--clients 50] [--seconds 5] [--runs 3] [--pipelining]
    .venv/bin/python bench/smtp.py --stalls

Each server runs as its own process, storing into a fresh Maildir on the same
file system:

- ``smtp-sink``: ``linechat serve smtp-sink --maildir DIR`` (uvloop, its default);
- ``smtp-sink/asyncio``: the same with ``--loop asyncio``;
- ``smtp-sink/inline``: the same (uvloop) committing each message in the event
  loop instead of a worker thread (``SmtpSinkProtocol.commit_in_thread``);
- ``aiosmtpd``: ``python -m aiosmtpd -n -c aiosmtpd.handlers.Mailbox DIR`` (asyncio);
- ``aiosmtpd/uvloop``: the same handler and controller-less server on uvloop.

The load is ``--clients`` connections (default 50), each behaving as smtplib
does: EHLO once, then per 10 KB message MAIL, RCPT, DATA, the text, each
waiting for its reply (``--pipelining``: MAIL, RCPT and DATA in one write).
The load generator is this process, on uvloop with bare protocols (a few
microseconds per reply), so the server is the one that runs out of CPU.

``--stalls`` measures instead how long the sink's storage calls hold the
event loop (it writes in the loop, in small pieces: see
``linechat.services.smtp_sink.maildir``): each 64 KiB write of a 10 MiB
message, the commit (close and rename) that ends it, and the commit of a
10 KiB message (open, write, close, rename), in the ``--scratch`` directory.

A run lasts ``--seconds`` after every client has greeted; the server's CPU
time over it comes from /proc/PID/stat (utime + stime). Runs alternate
between the servers; the table shows medians and the ratio of medians to
aiosmtpd. Every accepted message is checked to be in the Maildir's new/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import cpu_seconds, free_port, stop_process, wait_ready

PYTHON = sys.executable

AIOSMTPD_UVLOOP = """
import sys, asyncio, uvloop
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP
async def main():
    loop = asyncio.get_running_loop()
    factory = lambda: SMTP(Mailbox(sys.argv[1]))
    server = await loop.create_server(factory, "127.0.0.1", int(sys.argv[2]))
    await server.serve_forever()
uvloop.run(main())
"""


def message(size: int = 10 * 1024) -> bytes:
    """A 10 KB message: a few header fields and lines of 76 characters, dot-stuffed."""
    head = (
        b"From: app@example.org\r\nTo: user@example.net\r\nSubject: benchmark\r\n"
        b"Message-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = (b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrst")[:76]
    body = head
    while len(body) + 78 <= size:
        body += line + b"\r\n"
    return body + b"x" * (size - len(body) - 2) + b"\r\n"


@dataclass
class Server:
    name: str
    command: list[str] = field(default_factory=list)

    def start(self, maildir: Path, port: int) -> subprocess.Popen[bytes]:
        argv = [part.format(maildir=maildir, port=port) for part in self.command]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SINK = [PYTHON, "-m", "linechat", "serve", "smtp-sink", "--maildir", "{maildir}"]
SINK += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
INLINE = """
import sys
from linechat.cli import entry_point
from linechat.services.smtp_sink.protocol import SmtpSinkProtocol
SmtpSinkProtocol.commit_in_thread = False
sys.argv[0] = "linechat"
sys.exit(entry_point())
"""
AIOSMTPD = [PYTHON, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:{port}"]
SERVERS = [
    Server("smtp-sink", SINK),
    Server("smtp-sink/asyncio", [*SINK, "--loop", "asyncio"]),
    Server("smtp-sink/inline", [PYTHON, "-c", INLINE, *SINK[3:]]),
    Server("aiosmtpd", [*AIOSMTPD, "-c", "aiosmtpd.handlers.Mailbox", "{maildir}"]),
    Server("aiosmtpd/uvloop", [PYTHON, "-c", AIOSMTPD_UVLOOP, "{maildir}", "{port}"]),
]


class Client(asyncio.Protocol):
    """One smtplib-like client: lockstep commands, counting accepted messages."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.buffer = b""
        self.state = "greeting"
        self.transport: asyncio.Transport | None = None
        self.greeted = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport) or hasattr(transport, "write")
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 2 :]
            if line[3:4] != b"-":
                self.reply(line)
        self.buffer = buffer

    def reply(self, line: bytes) -> None:
        load, transport = self.load, self.transport
        assert transport is not None
        code = line[:3]
        state = self.state
        if state == "greeting":
            self.state = "ehlo"
            transport.write(b"EHLO bench.example\r\n")
        elif state == "ehlo":
            self.expect(code, b"250")
            if not self.greeted.done():
                self.greeted.set_result(None)
            self.next_message()
        elif state == "mail":
            self.expect(code, b"250")
            self.state = "rcpt"
            if not load.pipelining:
                transport.write(b"RCPT TO:<user@example.net>\r\n")
        elif state == "rcpt":
            self.expect(code, b"250")
            self.state = "data"
            if not load.pipelining:
                transport.write(b"DATA\r\n")
        elif state == "data":
            self.expect(code, b"354")
            self.state = "text"
            transport.write(load.text)
        elif state == "text":
            self.expect(code, b"250")
            if load.counting:
                load.accepted += 1
            self.next_message()
        elif state == "quit":
            transport.close()
            if not self.done.done():
                self.done.set_result(None)

    def next_message(self) -> None:
        assert self.transport is not None
        if self.load.stopping:
            self.state = "quit"
            self.transport.write(b"QUIT\r\n")
            return
        self.state = "mail"
        if self.load.pipelining:
            self.transport.write(
                b"MAIL FROM:<app@example.org>\r\nRCPT TO:<user@example.net>\r\nDATA\r\n"
            )
        else:
            self.transport.write(b"MAIL FROM:<app@example.org>\r\n")

    def expect(self, code: bytes, wanted: bytes) -> None:
        if code != wanted:
            raise SystemExit(f"server answered {code!r} where {wanted!r} was expected")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class Load:
    text: bytes
    pipelining: bool
    accepted: int = 0
    counting: bool = False
    stopping: bool = False


async def drive(
    port: int, pid: int, clients: int, seconds: float, pipelining: bool
) -> tuple[int, float]:
    """Run the load for ``seconds``; messages accepted and the server's CPU seconds meanwhile."""
    loop = asyncio.get_running_loop()
    load = Load(message() + b".\r\n", pipelining)
    conns: list[Client] = []
    for _ in range(clients):
        _, client = await loop.create_connection(lambda: Client(load), "127.0.0.1", port)
        conns.append(client)
    await asyncio.gather(*(client.greeted for client in conns))
    await asyncio.sleep(0.5)  # warm up
    cpu0, load.counting = cpu_seconds(pid), True
    await asyncio.sleep(seconds)
    cpu1, load.counting = cpu_seconds(pid), False
    accepted = load.accepted
    load.stopping = True
    await asyncio.wait_for(asyncio.gather(*(client.done for client in conns)), 60)
    return accepted, cpu1 - cpu0


def greet(port: int) -> None:
    """Read the greeting and say QUIT: the server is ready (OSError until it is)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.recv(100)
        sock.sendall(b"QUIT\r\n")


def one_run(server: Server, opts: argparse.Namespace, scratch: Path) -> tuple[float, int, float]:
    import uvloop

    maildir = scratch / server.name.replace("/", "-")
    shutil.rmtree(maildir, ignore_errors=True)
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    port = free_port()
    process = server.start(maildir, port)
    try:
        wait_ready(lambda: greet(port), process, timeout=20, interval=0.1)
        accepted, cpu = uvloop.run(
            drive(port, process.pid, opts.clients, opts.seconds, opts.pipelining)
        )
    finally:
        stop_process(process, 10)
    stored = len(os.listdir(maildir / "new"))
    if stored < accepted:
        raise SystemExit(f"{server.name}: {accepted} accepted but only {stored} stored")
    shutil.rmtree(maildir, ignore_errors=True)
    return accepted / cpu if cpu else 0.0, accepted, cpu


def stalls(scratch: Path) -> None:
    """How long each storage call of the sink takes: the time it holds the event loop."""
    from linechat.services.smtp_sink.maildir import Maildir

    folder = Maildir(scratch / "stalls")
    chunk = b"x" * 65536
    writes: list[float] = []
    big: list[float] = []
    small: list[float] = []
    clock = time.perf_counter
    for _ in range(5):
        delivery = folder.begin(folder.unique_id(), b"Return-Path: <>\r\n")
        for _ in range(160):  # 10 MiB
            start = clock()
            delivery.write(chunk)
            writes.append(clock() - start)
        start = clock()
        delivery.commit()
        big.append(clock() - start)
    for _ in range(500):
        delivery = folder.begin(folder.unique_id(), b"Return-Path: <>\r\n")
        delivery.write(b"y" * 10240)
        start = clock()
        delivery.commit()
        small.append(clock() - start)
    shutil.rmtree(scratch / "stalls", ignore_errors=True)
    print("| storage call | median | p99 | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in [
        ("64 KiB write of a 10 MiB message", writes),
        ("commit of a 10 MiB message", big),
        ("commit of a 10 KiB message", small),
    ]:
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"| {name} | {statistics.median(times) * 1e6:.0f} us "
            f"| {p99 * 1e6:.0f} us | {times[-1] * 1e6:.0f} us |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="server names (default: all)")
    parser.add_argument("--scratch", type=Path, default=None, help="where the Maildirs go")
    parser.add_argument("--stalls", action="store_true", help="time the storage calls instead")
    opts = parser.parse_args()
    if opts.stalls:
        folder = opts.scratch or Path(tempfile.mkdtemp(prefix="bench-smtp-"))
        stalls(folder)
        if opts.scratch is None:
            shutil.rmtree(folder, ignore_errors=True)
        return 0
    servers = [s for s in SERVERS if opts.only is None or s.name in opts.only]
    scratch = opts.scratch or Path(tempfile.mkdtemp(prefix="bench-smtp-"))
    results: dict[str, list[float]] = {server.name: [] for server in servers}
    for run in range(opts.runs):
        for server in servers if run % 2 == 0 else list(reversed(servers)):
            rate, accepted, cpu = one_run(server, opts, scratch)
            results[server.name].append(rate)
            print(
                f"run {run + 1} {server.name:18} {accepted:6d} messages, "
                f"{cpu:5.2f} server CPU-s, {rate:7.0f} msg/CPU-s",
                flush=True,
            )
    if opts.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    base = statistics.median(results["aiosmtpd"]) if "aiosmtpd" in results else None
    mode = "pipelining" if opts.pipelining else "lockstep (smtplib-style)"
    print(f"\n{opts.clients} clients, 10 KB messages, {mode}, median of {opts.runs} runs")
    print("| server | messages per server CPU-second | vs aiosmtpd |")
    print("| --- | ---: | ---: |")
    for name, rates in results.items():
        median = statistics.median(rates)
        ratio = f"{median / base:.2f}x" if base else "-"
        print(f"| {name} | {median:.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
