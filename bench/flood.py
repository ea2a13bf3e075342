"""A client that floods without reading: how much does the server grow?

    .venv/bin/python bench/flood.py [--seconds 30] [--layer protocol|stream]

Starts `linechat serve`, opens one connection that sends lines as fast as the
kernel takes them and never reads an answer, for ``--seconds``; samples the
server's RSS every 0.5 s, and checks meanwhile that a second client is still
answered. Prints the growth (the target: under 64 MiB over 30 s).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINECHAT = str(REPO / ".venv" / "bin" / "linechat")


def rss_kib(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def main() -> int:
    parser = argparse.ArgumentParser(description="server growth under a non-reading flood")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--layer", choices=["protocol", "stream"], default="protocol")
    opts = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [LINECHAT, "serve", "--host", "127.0.0.1", "--port", str(port), "--layer", opts.layer],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                probe(port)
                break
            except OSError:
                time.sleep(0.1)
        before = rss_kib(server.pid)
        stop, sent = threading.Event(), [0]
        thread = threading.Thread(target=flood, args=(port, stop, sent), daemon=True)
        thread.start()
        peak, probes = before, []
        end = time.monotonic() + opts.seconds
        while time.monotonic() < end:
            time.sleep(0.5)
            peak = max(peak, rss_kib(server.pid))
            probes.append(probe(port))
        stop.set()
        thread.join(5)
    finally:
        server.terminate()
        server.wait(15)
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
