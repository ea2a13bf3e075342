"""The client's connection: a :class:`LineProtocol` for the client side, TLS, STARTTLS.

The library part of ``linechat connect``. It never prints or exits: lines go
to a ``receiver`` callable, remarks for people to ``on_notice``, and failures
are raised as :class:`ConnectError`, whose message is one line for people.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConnectionClosed, LineTooLong, ProtocolError
from ..protocol import LineProtocol
from .basics import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    STARTTLS_PROTOCOLS,
    ConnectError,
    describe_error,
    format_address,
)
from .display import escape_text

if TYPE_CHECKING:
    from .transcript import Transcript

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "STARTTLS_PROTOCOLS",
    "ClientProtocol",
    "ConnectError",
    "ConnectOptions",
    "client_tls_context",
    "connect",
    "describe_error",
]

#: A client keeps what a server sends; past this a line is dropped (memory bound).
CLIENT_MAX_LINE_LENGTH = 16 * 1024 * 1024
SEND_HIGH_WATER = 1024 * 1024


@dataclass
class ConnectOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix: str | None = None
    #: TLS from the first byte, or (with ``starttls``) after the upgrade.
    tls_context: ssl.SSLContext | None = None
    starttls: str | None = None
    server_hostname: str | None = None
    connect_timeout: float | None = 10.0
    #: What ends a line we send: CRLF, or LF with ``--lf``.
    newline: bytes = b"\r\n"
    ehlo_name: str = "localhost"
    verbose: bool = False
    #: Send a PROXY protocol header first (1 or 2), as a load balancer would;
    #: its source is ``proxy_source`` or, by default, our own address.
    send_proxy: int | None = None
    proxy_source: tuple[str, int] | None = None

    @property
    def address(self) -> str:
        return format_address(self.host, self.port, self.unix)


def client_tls_context(
    *,
    cafile: str | None = None,
    insecure: bool = False,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> ssl.SSLContext:
    """A client context: system CAs (or ``cafile``), optional client certificate.

    Raises OSError or ssl.SSLError for unreadable files.
    """
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


class ClientProtocol(LineProtocol):
    """The client side of a line connection.

    Received lines (any of CRLF or bare LF ends a line) go to :attr:`receiver`
    a chunk at a time; until one is set they are kept and handed over by
    :meth:`set_receiver`. Sending never stops the reading: a server that
    stops reading while its answers pile up would otherwise deadlock with a
    client doing the same. A sender waits for :meth:`wait_sendable` (or
    watches :attr:`on_send_pause`) instead.
    """

    def __init__(self, options: ConnectOptions, transcript: Transcript | None = None) -> None:
        super().__init__(
            lenient=True,
            max_line_length=CLIENT_MAX_LINE_LENGTH,
            write_high_water=SEND_HIGH_WATER,
        )
        self.options = options
        self.newline = options.newline
        self.transcript = transcript
        self.receiver: Callable[[list[bytes]], None] = self._backlog_lines
        self.on_notice: Callable[[str], None] = lambda text: None
        self.on_send_pause: Callable[[bool], None] | None = None
        self.eof_seen = False
        self.last_received = time.monotonic()
        self._backlog: list[bytes] = []
        self._raw: Callable[[bytes], None] | None = None
        self._send_paused = False
        self._send_waiters: list[asyncio.Future[None]] = []
        self._receive_paused = False
        # STARTTLS: until the upgrade, every line is read one at a time.
        self._negotiating = options.starttls is not None
        self._negotiation: deque[bytes] = deque()
        self._negotiation_waiter: asyncio.Future[None] | None = None

    # -- receiving ---------------------------------------------------------

    def _backlog_lines(self, lines: list[bytes]) -> None:
        self._backlog.extend(lines)

    def set_receiver(self, receiver: Callable[[list[bytes]], None]) -> None:
        """Send lines to ``receiver`` from now on, starting with those kept."""
        self.receiver = receiver
        backlog, self._backlog = self._backlog, []
        if backlog:
            receiver(backlog)

    def set_raw_receiver(
        self, lines: Callable[[list[bytes]], None], raw: Callable[[bytes], None]
    ) -> None:
        """From now on hand over received bytes as they come, unsplit (the bulk path).

        Lines already split go to ``lines`` first, then the bytes the framer
        holds (an unfinished line) to ``raw``, then everything that arrives.
        """
        self.set_receiver(lines)
        self._raw = raw
        if self.framer.buffered:
            rest = self.framer.read_exactly(self.framer.buffered)
            if rest:
                raw(rest)

    def lines_received(self, lines: list[bytes]) -> None:
        if self._negotiating:
            super().lines_received(lines)  # one by one, so hold() can stop anywhere
            return
        if self.transcript is not None:
            self.transcript.received(lines)
        self.receiver(lines)

    def line_received(self, line: bytes) -> None:
        # Only while negotiating STARTTLS: hand over one line, read no further.
        if self.transcript is not None:
            self.transcript.received([line])
        if self.options.verbose:
            self.on_notice(f"< {escape_text(line)}")
        self._negotiation.append(line)
        self.hold()
        self._wake_negotiation()

    def line_too_long(self, exc: LineTooLong) -> None:
        self.on_notice(f"a line longer than {exc.limit} bytes from the server was dropped")
        self.framer.resync()

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        raw = self._raw
        if raw is not None and not self.is_closing:
            self.bytes_in += len(data)
            raw(data)
            return
        super().data_received(data)

    def eof_received(self) -> bool:
        self.eof_seen = True
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake_senders()
        self._wake_negotiation()

    def pause_receiving(self) -> None:
        """Stop reading the socket (whoever shows the lines is behind)."""
        self._receive_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    @property
    def receive_paused(self) -> bool:
        """True while whoever shows the lines is behind (the server is not idle then)."""
        return self._receive_paused

    def resume_receiving(self) -> None:
        self._receive_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- sending -----------------------------------------------------------

    def send_line(self, line: bytes) -> None:
        """Send one line, ended by the client's newline (CRLF or LF)."""
        if self.transcript is not None:
            self.transcript.sent([line])
        self.lines_out += 1
        self.write_raw(line + self.newline)

    def send_data(self, data: bytes) -> None:
        """Send bytes already ended the client's way (pipe mode's bulk path, lockstep).

        Straight to the transport when nothing is queued before it: lockstep
        sends once per reply, and each call saved is on the round trip.
        """
        transport = self.transport
        if self._out or self._in_chunk or self._closing or transport is None or not data:
            self.write_raw(data)
            return
        self.bytes_out += len(data)
        transport.write(data)

    def finish_sending(self) -> None:
        """Half-close: tell the server we are done, keep reading its answers.

        A TLS connection cannot half-close; it stays open for the server to end.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self.is_closing:
            return
        if transport.can_write_eof():
            transport.write_eof()

    @property
    def send_paused(self) -> bool:
        return self._send_paused

    async def wait_sendable(self) -> None:
        if self._send_paused and not self.closed.done():
            waiter = asyncio.get_running_loop().create_future()
            self._send_waiters.append(waiter)
            await waiter

    def pause_writing(self) -> None:
        # Deliberately not LineProtocol's (which stops reading the peer).
        self._send_paused = True
        if self.on_send_pause is not None:
            self.on_send_pause(True)

    def resume_writing(self) -> None:
        self._send_paused = False
        if self.on_send_pause is not None:
            self.on_send_pause(False)
        self._wake_senders()

    def _wake_senders(self) -> None:
        waiters, self._send_waiters = self._send_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- STARTTLS ------------------------------------------------------------

    def _wake_negotiation(self) -> None:
        waiter = self._negotiation_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _read_line(self) -> bytes:
        """The next line during STARTTLS negotiation (nothing after it is read)."""
        for _ in range(2):
            if self._negotiation:
                return self._negotiation.popleft()
            if self.closed.done():
                break
            self.release()  # hands over the next buffered line, if any
            if self._negotiation:
                return self._negotiation.popleft()
            if self.closed.done():
                break
            self._negotiation_waiter = asyncio.get_running_loop().create_future()
            await self._negotiation_waiter
        raise ConnectionClosed("the server closed the connection during STARTTLS")

    async def _reply(self) -> bytes:
        """A possibly multi-line SMTP reply (``250-...`` lines, then ``250 ...``)."""
        for _ in range(1000):
            line = await self._read_line()
            if line[3:4] != b"-":
                return line
        raise ProtocolError("SMTP reply of more than 1000 lines")

    async def negotiate_starttls(self) -> None:
        """Speak the protocol's greeting and STARTTLS command, then upgrade.

        Each line is handed over only when asked for: the server's go-ahead is
        the last line read as plaintext, and anything sent after it before the
        handshake is refused (:meth:`LineProtocol.start_tls`).
        """
        kind = self.options.starttls
        context = self.options.tls_context
        if kind is None or context is None:
            raise ValueError("STARTTLS needs options.starttls and options.tls_context")
        if kind == "smtp":
            await self._expect(await self._reply(), b"220", "greeting")
            self._negotiation_send(b"EHLO " + self.options.ehlo_name.encode())
            await self._expect(await self._reply(), b"250", "EHLO")
            self._negotiation_send(b"STARTTLS")
            await self._expect(await self._reply(), b"220", "STARTTLS")
        elif kind == "pop3":
            await self._expect(await self._read_line(), b"+OK", "greeting")
            self._negotiation_send(b"STLS")
            await self._expect(await self._read_line(), b"+OK", "STLS")
        elif kind == "imap":
            greeting = await self._read_line()
            if not greeting.upper().startswith((b"* OK", b"* PREAUTH")):
                raise ConnectError(f"STARTTLS: unexpected IMAP greeting {escape_text(greeting)!r}")
            self._negotiation_send(b"a1 STARTTLS")
            for _ in range(1000):
                line = await self._read_line()
                if line.startswith(b"a1 "):
                    await self._expect(line, b"a1 OK", "STARTTLS")
                    break
            else:
                raise ProtocolError("no tagged answer to STARTTLS")
        elif kind == "plain":
            self._negotiation_send(b"STARTTLS")
            line = await self._read_line()
            if line.upper().lstrip().startswith((b"-", b"ERR", b"NO", b"BAD", b"4", b"5")):
                raise ConnectError(f"STARTTLS refused: the server answered {escape_text(line)!r}")
        else:
            raise ValueError(f"unknown STARTTLS protocol {kind!r}")
        await self.start_tls(context, server_hostname=self.options.server_hostname)
        self._negotiating = False
        if self.transcript is not None:
            self.transcript.note("TLS established")
        self.release()

    def _negotiation_send(self, line: bytes) -> None:
        if self.options.verbose:
            self.on_notice(f"> {escape_text(line)}")
        self.send_line(line)

    @staticmethod
    async def _expect(line: bytes, start: bytes, step: str) -> None:
        if not line.upper().startswith(start.upper()):
            raise ConnectError(f"STARTTLS: unexpected answer to {step}: {escape_text(line)!r}")


def _one_family(
    source: tuple[str, int], destination: tuple[str, int]
) -> tuple[tuple[str, int], tuple[str, int]]:
    """A header has one family: an IPv4 address beside an IPv6 one goes IPv4-mapped."""
    import ipaddress

    addresses = [ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])]
    if addresses[0].version == addresses[1].version:
        return source, destination
    host = [f"::ffff:{a}" if a.version == 4 else str(a) for a in addresses]
    return (host[0], source[1]), (host[1], destination[1])


async def _proxied_socket(options: ConnectOptions) -> socket.socket:
    """A connected socket that has sent a PROXY header and nothing else yet.

    The header goes before anything else, TLS included, as from HAProxy.
    """
    from ..proxy_protocol import build_v1, build_v2  # only here: start-up stays light

    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(options.host, options.port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        try:
            peer = sock.getpeername()[:2]
            source = options.proxy_source or sock.getsockname()[:2]
            source, peer = _one_family(source, peer)
            build = build_v1 if options.send_proxy == 1 else build_v2
            try:
                header = build(source, peer)
            except ValueError as exc:
                raise ConnectError(f"cannot build the PROXY header: {exc}") from None
            await loop.sock_sendall(sock, header)
        except BaseException:
            sock.close()
            raise
        return sock
    raise error or OSError(f"no address for {options.host}")


async def connect(
    options: ConnectOptions,
    *,
    transcript: Transcript | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> ClientProtocol:
    """Connect (and do TLS or STARTTLS); raise :class:`ConnectError` on failure."""
    loop = asyncio.get_running_loop()
    protocol: ClientProtocol | None = None

    def factory() -> ClientProtocol:
        nonlocal protocol
        protocol = ClientProtocol(options, transcript)
        if on_notice is not None:
            protocol.on_notice = on_notice
        return protocol

    direct = options.tls_context if options.starttls is None else None
    context = options.tls_context
    hostname = options.server_hostname
    if context is not None and hostname is None and not options.unix:
        hostname = options.host
    if context is not None and hostname is None and context.check_hostname:
        raise ConnectError("TLS over a Unix socket needs --sni NAME (or --insecure)")
    options = dataclasses.replace(options, server_hostname=hostname)
    tls_name = (hostname or "") if direct is not None else None
    try:
        async with asyncio.timeout(options.connect_timeout):
            if options.unix:
                await loop.create_unix_connection(
                    factory, options.unix, ssl=direct, server_hostname=tls_name
                )
            elif options.send_proxy is not None:
                sock = await _proxied_socket(options)
                await loop.create_connection(
                    factory, sock=sock, ssl=direct, server_hostname=tls_name
                )
            else:
                await loop.create_connection(
                    factory,
                    options.host,
                    options.port,
                    ssl=direct,
                    server_hostname=tls_name,
                )
            assert protocol is not None
            if transcript is not None:
                transcript.note(f"connected to {options.address}{' (TLS)' if direct else ''}")
            if options.starttls is not None:
                await protocol.negotiate_starttls()
    except (OSError, ssl.SSLError, ConnectionClosed, ProtocolError, ConnectError) as exc:
        if protocol is not None:
            protocol.abort()
        raise ConnectError(f"cannot connect to {options.address}: {describe_error(exc)}") from exc
    return protocol
