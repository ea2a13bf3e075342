"""Sans-I/O PROXY protocol (HAProxy's, versions 1 and 2): parse and build headers.

A load balancer that relays a connection puts one header in front of the
client's bytes, saying who the client really is. The receiver must read that
header whole before anything else, and must never guess whether it is there.

:class:`ProxyHeaderParser` takes the connection's first bytes in any chunks and
returns a :class:`ProxyHeader` once the header is complete; the bytes after it
are kept, in order, in :attr:`ProxyHeaderParser.rest`. Bad input is refused as
soon as it can no longer be a valid header, so a client speaking the
application protocol directly (say ``GET / HTTP/1.1``) is refused on its first
byte. Memory is bounded by the largest header the parser accepts.

The ``build_*`` functions make headers, for a proxy or for tests.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_V2_LENGTH",
    "PP2_TYPE_ALPN",
    "PP2_TYPE_AUTHORITY",
    "PP2_TYPE_CRC32C",
    "PP2_TYPE_NETNS",
    "PP2_TYPE_NOOP",
    "PP2_TYPE_SSL",
    "PP2_TYPE_UNIQUE_ID",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "Address",
    "Command",
    "Family",
    "ProxyHeader",
    "ProxyHeaderIncomplete",
    "ProxyHeaderParser",
    "ProxyProtocolError",
    "build_v1",
    "build_v1_unknown",
    "build_v2",
    "build_v2_local",
    "build_v2_unix",
]

Address = tuple[str, int]
Command = Literal["PROXY", "LOCAL"]
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Family = Literal["TCP4", "UDP4", "TCP6", "UDP6", "UNIX", "UNIX_DGRAM", "UNSPEC", "UNKNOWN"]

V1_MAX_LENGTH = 107  # the spec's worst case, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LENGTH = 16  # signature, version/command, family/protocol, length
# A v2 header may announce up to 65535 more bytes; a receiver needs far fewer
# (addresses take 216 at most), so a peer cannot make it hold 64 KiB.
DEFAULT_MAX_V2_LENGTH = 2048

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30

_V1_PREFIX = b"PROXY "
_CMD_LOCAL = 0x20
_CMD_PROXY = 0x21
# family/protocol byte -> (name, size of the address block)
_V2_FAMILIES: dict[int, tuple[Family, int]] = {
    0x00: ("UNSPEC", 0),
    0x11: ("TCP4", 12),
    0x12: ("UDP4", 12),
    0x21: ("TCP6", 36),
    0x22: ("UDP6", 36),
    0x31: ("UNIX", 216),
    0x32: ("UNIX_DGRAM", 216),
}
_UNIX_PATH_SIZE = 108


def _v1_tcp_so_far(address: str, size: int) -> re.Pattern[bytes]:
    """What a v1 TCP line may look like after its keyword, before the CRLF has come.

    Each field but the one being received must be whole: an address of its
    family's characters (at most ``size`` of them), a port without leading zeros.
    """
    full, part = f"{address}{{1,{size}}}", f"{address}{{0,{size}}}"
    port = "(?:0|[1-9][0-9]{0,4})"
    return re.compile(
        f"(?:{full} (?:{full} (?:{port} (?:{port}\r?|{port}?)|{port}?)|{part})|{part})".encode()
    )


_V1_TCP_SO_FAR = {
    b"TCP4": _v1_tcp_so_far("[0-9.]", 15),
    b"TCP6": _v1_tcp_so_far("[0-9A-Fa-f:.]", 39),
}
_V1_ADDRESS_CHARS = {b"TCP4": re.compile(rb"[0-9.]+"), b"TCP6": re.compile(rb"[0-9A-Fa-f:.]+")}
_V1_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")


class ProxyProtocolError(ProtocolError):
    """The bytes are not a valid PROXY protocol header: drop the connection."""


class ProxyHeaderIncomplete(ProxyProtocolError):
    """The stream ended before the header did.

    ``received`` is how many bytes came; 0 means the peer closed without
    sending anything, which a server may prefer to log quietly.
    """

    def __init__(self, received: int) -> None:
        super().__init__(f"stream ended inside the PROXY header ({received} bytes received)")
        self.received = received


@dataclass(frozen=True)
class ProxyHeader:
    """One parsed header.

    ``command`` is ``"LOCAL"`` for a connection the proxy made itself (a
    health check): its addresses are ignored, as the spec requires, so
    ``source`` and ``destination`` are ``None``. They are ``None`` too for the
    v1 ``UNKNOWN`` and v2 ``UNSPEC`` families. UNIX addresses are
    ``(path, 0)``; the path is decoded from UTF-8 with ``surrogateescape``.
    ``tlvs`` are the v2 type-length-value fields, raw and in order (a tuple,
    so the header stays hashable); a CRC32C field has been verified.
    """

    version: int
    command: Command
    family: Family
    source: Address | None
    destination: Address | None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    @property
    def peer(self) -> Address | None:
        """The client's address, or ``None``: then use the connection's own."""
        return self.source if self.command == "PROXY" else None

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or ``None``."""
        return next((value for t, value in self.tlvs if t == kind), None)


class ProxyHeaderParser:
    """Read one PROXY header (v1 or v2) from the start of a stream.

    Feed the connection's bytes to :meth:`feed` until it returns the header;
    then :attr:`rest` holds the bytes that followed it in those chunks, which
    belong to the application, and the parser's job is done. Call
    :meth:`feed_eof` if the stream ends first.

    ``versions`` limits which versions are accepted. ``max_v2_length`` bounds
    the length a v2 header may announce (addresses plus TLVs, at most 65535).
    The parser never holds more than :attr:`max_header_size` bytes.
    """

    __slots__ = (
        "_buf",
        "_closed",
        "_failed",
        "_header",
        "_max_v2",
        "_rest",
        "_total",
        "_version",
        "_versions",
    )

    def __init__(
        self,
        *,
        versions: Iterable[int] = (1, 2),
        max_v2_length: int = DEFAULT_MAX_V2_LENGTH,
    ) -> None:
        self._versions = frozenset(versions)
        if not self._versions or not self._versions <= {1, 2}:
            raise ValueError("versions must be a non-empty subset of {1, 2}")
        if not 0 <= max_v2_length <= 0xFFFF:
            raise ValueError("max_v2_length must be between 0 and 65535")
        self._max_v2 = max_v2_length
        self._buf = bytearray()
        self._version = 0  # 0 until the first byte tells
        self._total = 0  # a v2 header's full size, once its length field is in
        self._header: ProxyHeader | None = None
        self._rest = b""
        self._failed = False
        self._closed = False

    @property
    def max_header_size(self) -> int:
        """The most bytes a header may take, hence the most the parser holds."""
        sizes = []
        if 1 in self._versions:
            sizes.append(V1_MAX_LENGTH)
        if 2 in self._versions:
            sizes.append(V2_HEADER_LENGTH + self._max_v2)
        return max(sizes)

    @property
    def buffered(self) -> int:
        """How many bytes of an unfinished header are held."""
        return len(self._buf)

    @property
    def header(self) -> ProxyHeader | None:
        """The header, once :meth:`feed` has returned it."""
        return self._header

    @property
    def rest(self) -> bytes:
        """The bytes fed after the header's end (empty until it is complete)."""
        return self._rest

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add ``data``; return the header once it is complete, else ``None``.

        Raises :class:`ProxyProtocolError` as soon as the bytes so far cannot
        start a valid header. Once the header has been returned, further bytes
        belong to the application: feeding them here (or feeding after
        :meth:`feed_eof`) raises :class:`ProtocolError`, a caller's bug.
        """
        if self._header is not None:
            raise ProtocolError("the PROXY header is complete; the stream's bytes are in .rest")
        if self._closed:
            raise ProtocolError("parser is closed: feed_eof() was called")
        if self._failed:
            raise ProxyProtocolError("parser stopped after an invalid PROXY header")
        try:
            return self._feed(data)
        except ProxyProtocolError:
            self._failed = True
            self._buf.clear()
            raise

    def feed_eof(self) -> None:
        """End of stream: raise :class:`ProxyHeaderIncomplete` unless the header came."""
        self._closed = True
        if self._header is None and not self._failed:
            received = len(self._buf)
            self._buf.clear()
            raise ProxyHeaderIncomplete(received)

    # -- parsing -----------------------------------------------------------

    def _feed(self, data: bytes) -> ProxyHeader | None:
        buf = self._buf
        pos = 0
        # Take from ``data`` only what the header may still need, so the
        # buffer stays bounded; a v1 line's end is found only by looking, so
        # its bytes past the CRLF are handed back through ``rest``.
        while pos < len(data):
            if self._version == 1:
                want = V1_MAX_LENGTH
            elif self._total:
                want = self._total
            else:
                want = V2_HEADER_LENGTH
            take = data[pos : pos + want - len(buf)]
            buf += take
            pos += len(take)
            if not self._version:
                self._detect()
            end = self._parse_v1() if self._version == 1 else self._parse_v2()
            if end:
                self._rest = bytes(buf[end:]) + data[pos:]
                buf.clear()
                return self._header
        return None

    def _detect(self) -> None:
        first = self._buf[0]
        if first == _V1_PREFIX[0] and 1 in self._versions:
            self._version = 1
        elif first == V2_SIGNATURE[0] and 2 in self._versions:
            self._version = 2
        else:
            raise ProxyProtocolError(f"not a PROXY protocol header (first byte {first:#04x})")

    def _parse_v1(self) -> int:
        """Check the v1 line so far; on its CRLF, build the header and return its size."""
        buf = self._buf
        end = buf.find(b"\r\n")
        line = bytes(buf[:end] if end >= 0 else buf)
        if end < 0:
            _check_v1_start(line)
            if len(buf) >= V1_MAX_LENGTH:
                raise ProxyProtocolError(f"no CRLF in the first {V1_MAX_LENGTH} bytes of a v1 line")
            return 0
        self._header = _parse_v1_line(line)
        return end + 2

    def _parse_v2(self) -> int:
        """Check the v2 header so far; once whole, build it and return its size."""
        buf = self._buf
        n = len(buf)
        sig = min(n, len(V2_SIGNATURE))
        if buf[:sig] != V2_SIGNATURE[:sig]:
            raise ProxyProtocolError("not a PROXY protocol v2 signature")
        if n > 12:
            if buf[12] >> 4 != 2:
                raise ProxyProtocolError(f"unsupported PROXY v2 version {buf[12] >> 4}")
            if buf[12] not in (_CMD_LOCAL, _CMD_PROXY):
                raise ProxyProtocolError(f"unknown PROXY v2 command {buf[12] & 0xF:#x}")
        # A LOCAL header's family is ignored, so only a PROXY one is checked.
        proxy = n > 12 and buf[12] == _CMD_PROXY
        if proxy and n > 13 and buf[13] not in _V2_FAMILIES:
            raise ProxyProtocolError(f"unknown PROXY v2 family/protocol {buf[13]:#04x}")
        if n < V2_HEADER_LENGTH:
            return 0
        if not self._total:
            length = int.from_bytes(buf[14:16], "big")
            if length > self._max_v2:
                raise ProxyProtocolError(
                    f"PROXY v2 header announces {length} bytes, over the limit {self._max_v2}"
                )
            if proxy and length < _V2_FAMILIES[buf[13]][1]:
                raise ProxyProtocolError(
                    f"PROXY v2 length {length} too short for {_V2_FAMILIES[buf[13]][0]} addresses"
                )
            self._total = V2_HEADER_LENGTH + length
        if n < self._total:
            return 0
        self._header = _parse_v2_header(bytes(buf[: self._total]))
        return self._total


def _check_v1_start(line: bytes) -> None:
    """Refuse an unfinished v1 line (CRLF not yet seen) that no byte can save."""
    if b"\n" in line or b"\r" in line[:-1]:
        raise ProxyProtocolError("bare CR or LF in a PROXY v1 line")
    for keyword in (b"TCP4", b"TCP6", b"UNKNOWN"):
        start = _V1_PREFIX + keyword
        if len(line) <= len(start):
            if start.startswith(line):
                return
            continue
        if not line.startswith(start):
            continue
        after = line[len(start) :]
        if keyword == b"UNKNOWN":
            # The spec has the receiver ignore whatever follows, up to the CRLF.
            if after[:1] in (b" ", b"\r"):
                return
        elif after[:1] == b" " and _V1_TCP_SO_FAR[keyword].fullmatch(after, 1):
            return
    raise ProxyProtocolError(f"invalid PROXY v1 line start {line[:40]!r}")


def _parse_v1_line(line: bytes) -> ProxyHeader:
    """Parse a v1 line, CRLF removed."""
    if b"\n" in line or b"\r" in line:
        raise ProxyProtocolError("bare CR or LF in a PROXY v1 line")
    if line == b"PROXY UNKNOWN" or line.startswith(b"PROXY UNKNOWN "):
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None)
    fields = line.split(b" ")
    if fields[0] != b"PROXY" or len(fields) < 2 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError(f"invalid PROXY v1 line {line[:40]!r}")
    keyword = fields[1]
    if len(fields) != 6:
        raise ProxyProtocolError(
            f"PROXY v1 {keyword.decode()} line needs 6 space-separated fields, got {len(fields)}"
        )
    family: Family = "TCP4" if keyword == b"TCP4" else "TCP6"
    source = _v1_host(fields[2], keyword), _v1_port(fields[4])
    destination = _v1_host(fields[3], keyword), _v1_port(fields[5])
    return ProxyHeader(1, "PROXY", family, source, destination)


def _v1_host(text: bytes, keyword: bytes) -> str:
    if not _V1_ADDRESS_CHARS[keyword].fullmatch(text):
        raise ProxyProtocolError(f"invalid {keyword.decode()} address {text[:40]!r}")
    host = text.decode("ascii")
    try:
        if keyword == b"TCP4":
            address: _IPAddress = ipaddress.IPv4Address(host)
        else:
            address = ipaddress.IPv6Address(host)
    except ValueError:
        raise ProxyProtocolError(f"invalid {keyword.decode()} address {host!r}") from None
    canonical = str(address)
    # IPv4 has one text form; leading zeros (octal to some parsers) are refused.
    if keyword == b"TCP4" and canonical != host:
        raise ProxyProtocolError(f"non-canonical IPv4 address {host!r}")
    return canonical


def _v1_port(text: bytes) -> int:
    if not _V1_PORT.fullmatch(text) or int(text) > 0xFFFF:
        raise ProxyProtocolError(f"invalid port {text[:40]!r}")
    return int(text)


def _parse_v2_header(raw: bytes) -> ProxyHeader:
    """Parse a whole v2 header whose fixed part has already been checked."""
    block = raw[V2_HEADER_LENGTH:]
    known = _V2_FAMILIES.get(raw[13])
    if raw[12] == _CMD_LOCAL:
        # The spec says to accept LOCAL and ignore its addresses, whatever the
        # family byte; TLVs are kept when the family says where they start and
        # they are well formed.
        if known is None or known[1] > len(block):
            return ProxyHeader(2, "LOCAL", "UNSPEC", None, None)
        family, size = known
        tlvs = _parse_tlvs(raw, size)
        return ProxyHeader(2, "LOCAL", family, None, None, () if tlvs is None else tlvs)
    assert known is not None  # checked by the caller
    family, size = known
    source: Address | None = None
    destination: Address | None = None
    if size == 12:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", block)
        source = str(ipaddress.IPv4Address(src)), sport
        destination = str(ipaddress.IPv4Address(dst)), dport
    elif size == 36:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", block)
        source = str(ipaddress.IPv6Address(src)), sport
        destination = str(ipaddress.IPv6Address(dst)), dport
    elif size == 216:
        source = _unix_path(block[:_UNIX_PATH_SIZE]), 0
        destination = _unix_path(block[_UNIX_PATH_SIZE:size]), 0
    tlvs = _parse_tlvs(raw, size)
    if tlvs is None:
        raise ProxyProtocolError("malformed TLVs in PROXY v2 header")
    return ProxyHeader(2, "PROXY", family, source, destination, tlvs)


def _unix_path(field: bytes) -> str:
    return field.rstrip(b"\x00").decode("utf-8", "surrogateescape")


def _parse_tlvs(raw: bytes, address_size: int) -> tuple[tuple[int, bytes], ...] | None:
    """The TLVs after the addresses, or ``None`` if they do not fill the rest exactly.

    A CRC32C TLV must match the header, else :class:`ProxyProtocolError`.
    """
    tlvs: list[tuple[int, bytes]] = []
    checksums: list[int] = []  # where each CRC32C value starts in ``raw``
    pos = V2_HEADER_LENGTH + address_size
    while pos < len(raw):
        if len(raw) - pos < 3:
            return None
        kind = raw[pos]
        length = int.from_bytes(raw[pos + 1 : pos + 3], "big")
        start = pos + 3
        pos = start + length
        if pos > len(raw):
            return None
        tlvs.append((kind, raw[start:pos]))
        if kind == PP2_TYPE_CRC32C:
            if length != 4:
                raise ProxyProtocolError("CRC32C TLV must hold 4 bytes")
            checksums.append(start)
    for start in checksums:
        zeroed = raw[:start] + b"\x00\x00\x00\x00" + raw[start + 4 :]
        if _crc32c(zeroed) != int.from_bytes(raw[start : start + 4], "big"):
            raise ProxyProtocolError("PROXY v2 header fails its CRC32C check")
    return tuple(tlvs)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli, RFC 4960 appendix B); headers are small, so pure Python."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- building --------------------------------------------------------------
# Builders raise ValueError: bad arguments are the caller's bug, not the peer's.


def _ip_pair(source: Address, destination: Address) -> tuple[_IPAddress, int, _IPAddress, int]:
    """Check both addresses (same IP version, valid ports) and parse them."""
    addresses: list[_IPAddress] = []
    for host, port in (source, destination):
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"not an IP address: {host!r}") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            raise ValueError(f"scoped IPv6 address cannot be sent: {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise ValueError(f"invalid port: {port!r}")
        addresses.append(address)
    if addresses[0].version != addresses[1].version:
        raise ValueError("source and destination must both be IPv4 or both IPv6")
    return addresses[0], source[1], addresses[1], destination[1]


def build_v1(source: Address, destination: Address) -> bytes:
    """A v1 line for a TCP connection; the family (TCP4/TCP6) follows the addresses."""
    src, sport, dst, dport = _ip_pair(source, destination)
    keyword = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {keyword} {src} {dst} {sport} {dport}\r\n".encode("ascii")


def build_v1_unknown() -> bytes:
    """The v1 line for a connection whose addresses cannot be told."""
    return b"PROXY UNKNOWN\r\n"


def build_v2(
    source: Address,
    destination: Address,
    *,
    command: Command = "PROXY",
    datagram: bool = False,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """A v2 header for a TCP (or, with ``datagram``, UDP) connection over IPv4 or IPv6.

    ``tlvs`` are appended as given; ``crc32c=True`` adds a checksum TLV last.
    """
    src, sport, dst, dport = _ip_pair(source, destination)
    if src.version == 4:
        family = 0x12 if datagram else 0x11
        fmt = "!4s4sHH"
    else:
        family = 0x22 if datagram else 0x21
        fmt = "!16s16sHH"
    addresses = struct.pack(fmt, src.packed, dst.packed, sport, dport)
    return _build_v2(_command_byte(command), family, addresses, tlvs, crc32c)


def build_v2_local(*, tlvs: Iterable[tuple[int, bytes]] = (), crc32c: bool = False) -> bytes:
    """A v2 LOCAL header (the proxy's own connection, e.g. a health check): no addresses."""
    return _build_v2(_CMD_LOCAL, 0x00, b"", tlvs, crc32c)


def build_v2_unix(
    source: str,
    destination: str,
    *,
    datagram: bool = False,
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """A v2 PROXY header for a UNIX socket connection, from its two socket paths."""
    fields = []
    for path in (source, destination):
        raw = path.encode("utf-8", "surrogateescape")
        if len(raw) > _UNIX_PATH_SIZE:
            raise ValueError(f"UNIX socket path longer than {_UNIX_PATH_SIZE} bytes: {path!r}")
        fields.append(raw.ljust(_UNIX_PATH_SIZE, b"\x00"))
    return _build_v2(_CMD_PROXY, 0x32 if datagram else 0x31, b"".join(fields), tlvs, crc32c)


def _command_byte(command: str) -> int:
    if command == "PROXY":
        return _CMD_PROXY
    if command == "LOCAL":
        return _CMD_LOCAL
    raise ValueError(f"command must be 'PROXY' or 'LOCAL', not {command!r}")


def _build_v2(
    command: int, family: int, addresses: bytes, tlvs: Iterable[tuple[int, bytes]], crc32c: bool
) -> bytes:
    parts = [addresses]
    for kind, value in tlvs:
        if not 0 <= kind <= 0xFF:
            raise ValueError(f"TLV type must be a byte, not {kind!r}")
        if len(value) > 0xFFFF:
            raise ValueError("TLV value longer than 65535 bytes")
        parts.append(struct.pack("!BH", kind, len(value)) + bytes(value))
    if crc32c:
        parts.append(struct.pack("!BH", PP2_TYPE_CRC32C, 4) + b"\x00\x00\x00\x00")
    body = b"".join(parts)
    if len(body) > 0xFFFF:
        raise ValueError("PROXY v2 header longer than 65535 bytes after its fixed part")
    header = V2_SIGNATURE + struct.pack("!BBH", command, family, len(body)) + body
    if crc32c:
        header = header[:-4] + _crc32c(header).to_bytes(4, "big")
    return header
