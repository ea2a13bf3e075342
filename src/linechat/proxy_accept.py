"""Accepting connections behind a load balancer that speaks the PROXY protocol.

The header is read straight from the accepted socket, before any transport
exists: peeked, then consumed exactly to its last byte. What follows it (a TLS
ClientHello, the first command) stays in the kernel for the transport, so TLS
behind the balancer works and no application byte is lost or reordered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from .proxy_protocol import ProxyHeader, ProxyHeaderParser

__all__ = ["ProxyPolicy", "read_proxy_header"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxyPolicy:
    """Who must send a PROXY header, and how long they get to send it.

    ``trusted``: the upstream networks that must send it (``None``: every
    peer). A peer outside them is a direct client: its bytes are not parsed
    for a header, and its own address is its address.
    """

    trusted: Sequence[Network] | None = None
    header_timeout: float = 10.0

    def expects_header(self, address: object) -> bool:
        if self.trusted is None:
            return True
        if not isinstance(address, tuple):
            return False
        try:
            ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.trusted)


async def read_proxy_header(sock: socket.socket, policy: ProxyPolicy) -> ProxyHeader:
    """Read the header from ``sock`` (non-blocking), leaving what follows unread.

    Raises ``ProxyProtocolError`` (malformed, truncated, over-long) or
    ``TimeoutError`` when the header does not come in time.
    """
    parser = ProxyHeaderParser()
    async with asyncio.timeout(policy.header_timeout):
        while True:
            await _readable(sock)
            try:
                data = sock.recv(parser.max_header_size - parser.buffered, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                parser.feed_eof()  # raises: the stream ended inside the header
            header = parser.feed(data)
            used = len(data) - len(parser.rest) if header is not None else len(data)
            _consume(sock, used)
            if header is not None:
                return header


def _consume(sock: socket.socket, size: int) -> None:
    """Take ``size`` bytes already peeked (hence queued) off the socket."""
    while size > 0:
        size -= len(sock.recv(size))


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
