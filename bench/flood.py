"""Clients that send but never read: how much does the server grow?

    .venv/bin/python bench/flood.py [--seconds 30] [--layer protocol|stream]
    .venv/bin/python bench/flood.py --peers 50 [--rounds 3]

One flooder (the default): starts `linechat serve`, opens one connection that
sends lines as fast as the kernel takes them and never reads an answer, for
``--seconds``; samples the server's RSS every 0.5 s, and checks meanwhile that
a second client is still answered. Prints the growth (the target: under 64 MiB
over 30 s).

``--peers N``: the memory a peer that never reads costs. For each server (both
linechat layers on both loops, and asyncio streams with ``drain()`` per line,
the alternative), N connections send short lines until the kernel takes no
more, never reading; once the server's RSS is steady, (RSS - RSS before) / N
is the cost of one such peer, compared with the documented bound (2 x the
write high-water mark plus one read). Rounds alternate across servers; the
median is reported.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time

from benchlib import BENCH, LINECHAT, PYTHON, free_port, stop_process, vmrss_kib, wait_ready

STREAMS_SERVER = str(BENCH / "echo" / "servers" / "streams_server.py")
KIB = 1024
HIGH_WATER = 64 * KIB  # linechat's default write_high_water
#: The most one read brings: asyncio's transport asks for 64 KiB (linechat's
#: READ_SIZE), uvloop reads into a 256 KiB buffer of its own.
ONE_READ = {"asyncio": 64 * KIB, "uvloop": 256 * KIB}


def flood(port: int, stop: threading.Event, sent: list[int]) -> None:
    block = b"flood flood flood flood flood flood\r\n" * 4096
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                sent[0] += sock.send(block)
            except TimeoutError:
                continue


def probe(port: int) -> float:
    """Seconds for one round trip on a fresh connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"probe\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            data += sock.recv(100)
    return time.monotonic() - started


def stuff(sock: socket.socket, block: bytes, seconds: float) -> int:
    """Send until the kernel takes nothing for ``seconds`` (the server stopped reading)."""
    sock.setblocking(False)
    sent, last = 0, time.monotonic()
    while time.monotonic() - last < seconds:
        try:
            n = sock.send(block)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        except OSError:  # closed by the server
            break
        sent += n
        last = time.monotonic()
    return sent


def steady_rss(pid: int, seconds: float = 1.0, limit: float = 20.0) -> int:
    """RSS once it stopped changing for ``seconds`` (or after ``limit`` s)."""
    value, since, end = vmrss_kib(pid), time.monotonic(), time.monotonic() + limit
    while time.monotonic() < end and time.monotonic() - since < seconds:
        time.sleep(0.2)
        now = vmrss_kib(pid)
        if now != value:
            value, since = now, time.monotonic()
    return value


PEER_SERVERS = {
    "linechat-protocol-asyncio": ["--layer", "protocol", "--loop", "asyncio"],
    "linechat-protocol-uvloop": ["--layer", "protocol", "--loop", "uvloop"],
    "linechat-stream-asyncio": ["--layer", "stream", "--loop", "asyncio"],
    "linechat-stream-uvloop": ["--layer", "stream", "--loop", "uvloop"],
    "asyncio-streams": [],
    "asyncio-streams-uvloop": [],
}


def peers_round(name: str, peers: int) -> tuple[float, float]:
    """KiB of server RSS per non-reading peer, and MiB the peers sent in all."""
    port = free_port()
    if name.startswith("asyncio-streams"):
        loop = "uvloop" if name.endswith("uvloop") else "asyncio"
        argv = [PYTHON, STREAMS_SERVER, "--port", str(port), "--loop", loop]
    else:
        argv = [LINECHAT, "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += [*PEER_SERVERS[name], "--idle-timeout", "0"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks: list[socket.socket] = []
    try:
        wait_ready(lambda: probe(port), server, interval=0.1)
        before = steady_rss(server.pid)
        block = b"x\r\n" * 16384  # the shortest lines: the largest replies per byte read
        sent = 0
        for _ in range(peers):
            sock = socket.socket()
            socks.append(sock)
            # A small receive buffer: the replies pile up in the server, not in our kernel.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
        for sock in socks:
            sent += stuff(sock, block, 0.3)
        for sock in socks:  # once more: whatever the server read meanwhile
            sent += stuff(sock, block, 0.3)
        after = steady_rss(server.pid)
        return (after - before) / peers, sent / 2**20
    finally:
        for sock in socks:
            sock.close()
        if not stop_process(server, 30):
            raise SystemExit(f"{name}: the server did not stop within 30 s of SIGTERM")


def peers_main(peers: int, rounds: int, only: list[str]) -> int:
    names = [n for n in PEER_SERVERS if not only or n in only]
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            results[name].append(peers_round(name, peers))
    print(f"{peers} peers that send 'x' lines and never read; median of {rounds} rounds\n")
    print("| server | KiB RSS per peer | bound KiB (2 x 64 KiB + one read) | MiB sent by all |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for name in names:
        per_peer = statistics.median(r[0] for r in results[name])
        sent = statistics.median(r[1] for r in results[name])
        if name.startswith("linechat"):
            bound = 2 * HIGH_WATER + ONE_READ[name.rsplit("-", 1)[1]]
            worst = max(worst, per_peer / (bound / KIB))
            shown = f"{bound // KIB}"
        else:
            shown = "-"
        print(f"| {name} | {per_peer:.0f} | {shown} | {sent:.1f} |")
    return 0 if worst <= 1.0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="server growth under a non-reading flood")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--layer", choices=["protocol", "stream"], default="protocol")
    parser.add_argument(
        "--peers", type=int, default=0, help="N non-reading peers: RSS per peer (see above)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --peers: rounds per server")
    parser.add_argument("--only", default="", help="with --peers: comma-separated servers")
    opts = parser.parse_args()
    if opts.peers:
        return peers_main(opts.peers, opts.rounds, [n for n in opts.only.split(",") if n])
    port = free_port()
    server = subprocess.Popen(
        [LINECHAT, "serve", "--host", "127.0.0.1", "--port", str(port), "--layer", opts.layer],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(lambda: probe(port), server, interval=0.1)
        before = vmrss_kib(server.pid)
        stop, sent = threading.Event(), [0]
        thread = threading.Thread(target=flood, args=(port, stop, sent), daemon=True)
        thread.start()
        peak, probes = before, []
        end = time.monotonic() + opts.seconds
        while time.monotonic() < end:
            time.sleep(0.5)
            peak = max(peak, vmrss_kib(server.pid))
            probes.append(probe(port))
        stop.set()
        thread.join(5)
    finally:
        stop_process(server, 15)
    grown = (peak - before) / 1024
    print(
        f"{opts.layer} layer, {opts.seconds:g} s of flood without reading: server RSS "
        f"{before / 1024:.1f} MiB -> peak {peak / 1024:.1f} MiB (+{grown:.1f} MiB; target < 64); "
        f"the flooder got {sent[0] / 2**20:.1f} MiB in; a second client's round trip: "
        f"median {sorted(probes)[len(probes) // 2] * 1000:.1f} ms, max {max(probes) * 1000:.1f} ms"
    )
    return 0 if grown < 64 else 1


if __name__ == "__main__":
    sys.exit(main())
