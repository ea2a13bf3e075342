"""The PROXY protocol parser and builders: every valid form, every way to fail, any chunking."""

from __future__ import annotations

import ipaddress
import struct
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from linechat.errors import ProtocolError
from linechat.proxy_protocol import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NOOP,
    PP2_TYPE_UNIQUE_ID,
    V1_MAX_LENGTH,
    Family,
    ProxyHeader,
    ProxyHeaderIncomplete,
    ProxyHeaderParser,
    ProxyProtocolError,
    _crc32c,
    build_v1,
    build_v1_unknown,
    build_v2,
    build_v2_local,
    build_v2_unix,
)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(ver_cmd: int, fam: int, block: bytes, length: int | None = None) -> bytes:
    """A v2 header made by hand, independent of the module's builder."""
    size = len(block) if length is None else length
    return SIG + bytes([ver_cmd, fam]) + struct.pack("!H", size) + block


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def parse(data: bytes, **options: object) -> tuple[ProxyHeader, bytes]:
    """Feed ``data`` in one chunk; the header must complete."""
    parser = ProxyHeaderParser(**options)  # type: ignore[arg-type]
    header = parser.feed(data)
    assert header is not None, data
    assert parser.header is header
    return header, parser.rest


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


def fail_index(data: bytes, **options: object) -> int:
    """Feed ``data`` one byte at a time; the index of the byte that is refused."""
    parser = ProxyHeaderParser(**options)  # type: ignore[arg-type]
    for i in range(len(data)):
        try:
            assert parser.feed(data[i : i + 1]) is None, "parsed instead of failing"
        except ProxyProtocolError:
            return i
    raise AssertionError(f"{data!r} was not refused")


def refuse(data: bytes, **options: object) -> None:
    """``data`` (then end of stream) must raise ProxyProtocolError, in one chunk or byte by byte."""
    with pytest.raises(ProxyProtocolError):
        parser = ProxyHeaderParser(**options)  # type: ignore[arg-type]
        assert parser.feed(data) is None
        parser.feed_eof()
    with pytest.raises(ProxyProtocolError):
        parser = ProxyHeaderParser(**options)  # type: ignore[arg-type]
        for i in range(len(data)):
            assert parser.feed(data[i : i + 1]) is None
        parser.feed_eof()


# -- version 1 ---------------------------------------------------------------


def test_v1_tcp4_and_the_bytes_after_it() -> None:
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    header, rest = parse(line + b"GET / HTTP/1.1\r\n")
    assert header == ProxyHeader(1, "PROXY", "TCP4", ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert header.peer == ("192.168.0.1", 56324)
    assert rest == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_any_case_and_compression_gives_the_canonical_text() -> None:
    header, rest = parse(b"PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 0 65535\r\n")
    assert header == ProxyHeader(1, "PROXY", "TCP6", ("2001:db8::1", 0), ("::1", 65535))
    assert rest == b""


def test_v1_longest_lines_are_accepted() -> None:
    full = ":".join(["ffff"] * 8)
    tcp6 = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    assert len(tcp6) == 104
    header, _ = parse(tcp6)
    assert header.source == (full, 65535)
    unknown = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    assert len(unknown) == V1_MAX_LENGTH
    assert parse(unknown + b"x") == (ProxyHeader(1, "PROXY", "UNKNOWN", None, None), b"x")


@pytest.mark.parametrize(
    "line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 1.2.3.4 whatever, ignored\r\n"]
)
def test_v1_unknown_ignores_the_rest_of_its_line(line: bytes) -> None:
    header, rest = parse(line + b"\r\nhello")
    assert header == ProxyHeader(1, "PROXY", "UNKNOWN", None, None)
    assert header.peer is None
    assert rest == b"\r\nhello"


def test_v1_ipv4_mapped_ipv6_is_an_ipv6_address() -> None:
    header, _ = parse(b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n")
    assert header.source == (str(ipaddress.IPv6Address("::ffff:10.0.0.1")), 1)


# -- version 2 ---------------------------------------------------------------


def test_v2_tcp4() -> None:
    block = bytes([10, 0, 0, 1, 192, 168, 1, 2]) + struct.pack("!HH", 12345, 80)
    header, rest = parse(v2(0x21, 0x11, block) + b"payload")
    assert header == ProxyHeader(2, "PROXY", "TCP4", ("10.0.0.1", 12345), ("192.168.1.2", 80))
    assert header.peer == ("10.0.0.1", 12345)
    assert rest == b"payload"


def test_v2_tcp6() -> None:
    src = ipaddress.IPv6Address("2001:db8::5")
    dst = ipaddress.IPv6Address("::1")
    header, _ = parse(v2(0x21, 0x21, src.packed + dst.packed + struct.pack("!HH", 1, 2)))
    assert header == ProxyHeader(2, "PROXY", "TCP6", ("2001:db8::5", 1), ("::1", 2))


@pytest.mark.parametrize(("fam", "family"), [(0x12, "UDP4"), (0x22, "UDP6")])
def test_v2_udp(fam: int, family: str) -> None:
    size = 4 if fam == 0x12 else 16
    block = b"\x01" * size + b"\x02" * size + struct.pack("!HH", 53, 5353)
    header, _ = parse(v2(0x21, fam, block))
    assert header.family == family
    assert header.source is not None and header.source[1] == 53


@pytest.mark.parametrize(("fam", "family"), [(0x31, "UNIX"), (0x32, "UNIX_DGRAM")])
def test_v2_unix(fam: int, family: str) -> None:
    block = b"/run/client.sock".ljust(108, b"\x00") + b"/run/app.sock".ljust(108, b"\x00")
    header, rest = parse(v2(0x21, fam, block) + b"x")
    assert header == ProxyHeader(2, "PROXY", family, ("/run/client.sock", 0), ("/run/app.sock", 0))  # type: ignore[arg-type]
    assert header.peer == ("/run/client.sock", 0)
    assert rest == b"x"


def test_v2_local_uses_the_connections_own_addresses() -> None:
    header, rest = parse(v2(0x20, 0x00, b"") + b"PING\r\n")
    assert header == ProxyHeader(2, "LOCAL", "UNSPEC", None, None)
    assert header.peer is None
    assert rest == b"PING\r\n"


def test_v2_local_ignores_addresses_it_carries() -> None:
    block = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 1, 2) + tlv(PP2_TYPE_NOOP, b"")
    header, _ = parse(v2(0x20, 0x11, block))
    assert header == ProxyHeader(2, "LOCAL", "TCP4", None, None, ((PP2_TYPE_NOOP, b""),))
    assert header.peer is None


@pytest.mark.parametrize(
    ("fam", "block"),
    [(0xFF, b"anything"), (0x11, b"short"), (0x00, b"not TLVs"), (0x13, b"")],
    ids=["unknown-family", "short-block", "garbage-block", "unknown-protocol"],
)
def test_v2_local_is_accepted_whatever_its_protocol_block(fam: int, block: bytes) -> None:
    header, rest = parse(v2(0x20, fam, block) + b"after")
    assert header.command == "LOCAL"
    assert header.peer is None
    assert header.tlvs == ()
    assert rest == b"after"


def test_v2_unspec_proxy_means_use_the_connections_addresses() -> None:
    header, _ = parse(v2(0x21, 0x00, tlv(PP2_TYPE_UNIQUE_ID, b"abc")))
    assert header == ProxyHeader(2, "PROXY", "UNSPEC", None, None, ((PP2_TYPE_UNIQUE_ID, b"abc"),))
    assert header.peer is None


def test_v2_tlvs_raw_and_in_order() -> None:
    block = bytes(12) + tlv(PP2_TYPE_ALPN, b"h2") + tlv(0xE0, b"") + tlv(PP2_TYPE_AUTHORITY, b"ex")
    header, _ = parse(v2(0x21, 0x11, block))
    assert header.tlvs == ((PP2_TYPE_ALPN, b"h2"), (0xE0, b""), (PP2_TYPE_AUTHORITY, b"ex"))
    assert header.tlv(PP2_TYPE_AUTHORITY) == b"ex"
    assert header.tlv(PP2_TYPE_UNIQUE_ID) is None


def test_v2_crc32c_checked() -> None:
    assert _crc32c(b"123456789") == 0xE3069283  # the standard check value
    good = build_v2(("1.2.3.4", 1), ("5.6.7.8", 2), tlvs=[(PP2_TYPE_ALPN, b"h2")], crc32c=True)
    header, _ = parse(good)
    assert header.tlvs[-1][0] == PP2_TYPE_CRC32C
    # Check it by hand: the CRC of the header with the field zeroed.
    assert _crc32c(good[:-4] + bytes(4)) == int.from_bytes(good[-4:], "big")
    for i in (17, 31, len(good) - 1):  # an address, the ALPN value, the checksum
        bad = bytearray(good)
        bad[i] ^= 0x01
        with pytest.raises(ProxyProtocolError, match="CRC32C"):
            parse(bytes(bad))


def test_v2_length_limit_is_configurable() -> None:
    header = build_v2(("1.2.3.4", 1), ("5.6.7.8", 2), tlvs=[(PP2_TYPE_NOOP, bytes(3000))])
    refuse(header)
    assert parse(header, max_v2_length=65535)[0].tlvs == ((PP2_TYPE_NOOP, bytes(3000)),)


# -- builders ----------------------------------------------------------------


def test_build_v1_exact_bytes() -> None:
    assert build_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    )
    assert build_v1(("2001:DB8::1", 1), ("::1", 2)) == b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    assert build_v1_unknown() == b"PROXY UNKNOWN\r\n"


def test_build_v2_exact_bytes() -> None:
    block = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 1000, 80)
    assert build_v2(("10.0.0.1", 1000), ("10.0.0.2", 80)) == v2(0x21, 0x11, block)
    assert build_v2(("10.0.0.1", 1000), ("10.0.0.2", 80), datagram=True) == v2(0x21, 0x12, block)
    assert build_v2(("10.0.0.1", 1000), ("10.0.0.2", 80), command="LOCAL") == v2(0x20, 0x11, block)
    assert build_v2_local() == v2(0x20, 0x00, b"")
    assert build_v2_local(tlvs=[(5, b"id")]) == v2(0x20, 0x00, tlv(5, b"id"))
    unix = b"/a".ljust(108, b"\x00") + b"/b".ljust(108, b"\x00")
    assert build_v2_unix("/a", "/b") == v2(0x21, 0x31, unix)


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        (("1.2.3.4", 1), ("::1", 2)),  # mixed families
        (("example.com", 1), ("1.2.3.4", 2)),
        (("1.2.3.4", 65536), ("1.2.3.4", 2)),
        (("1.2.3.4", -1), ("1.2.3.4", 2)),
        (("1.2.3.4", True), ("1.2.3.4", 2)),
        (("1.2.3.4", "80"), ("1.2.3.4", 2)),
        (("fe80::1%eth0", 1), ("fe80::2", 2)),
        (("01.2.3.4", 1), ("1.2.3.4", 2)),
    ],
)
def test_builders_refuse_bad_addresses(
    source: tuple[str, int], destination: tuple[str, int]
) -> None:
    with pytest.raises(ValueError):
        build_v1(source, destination)
    with pytest.raises(ValueError):
        build_v2(source, destination)


def test_builders_refuse_bad_options() -> None:
    with pytest.raises(ValueError):
        build_v2(("1.2.3.4", 1), ("1.2.3.4", 2), command="OTHER")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_v2_local(tlvs=[(256, b"")])
    with pytest.raises(ValueError):
        build_v2_local(tlvs=[(1, bytes(65536))])
    with pytest.raises(ValueError):
        build_v2_unix("/" + "x" * 108, "/b")


# -- refusals ----------------------------------------------------------------

TCP4_BLOCK = bytes(12)


@pytest.mark.parametrize(
    ("data", "index"),
    [
        (b"GET / HTTP/1.1\r\n", 0),
        (b"proxy TCP4 ", 0),
        (b"\x16\x03\x01", 0),  # a TLS ClientHello
        (b"PROXX", 4),
        (b"PROXY  TCP4", 6),
        (b"PROXY TCP5", 9),
        (b"PROXY UNKNOWNX\r\n", 13),
        (b"PROXY TCP4\r\n", 10),
        (b"PROXY TCP4 1.2.3.a", 17),
        (b"PROXY TCP4 1.2.3.4  ", 19),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 8x", 31),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 123456", 35),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 90 ", 32),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080", 28),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 00", 31),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 65535\r ", 36),
        (b"PROXY TCP6 ::1 " + b":" * 40, 54),  # 40 characters: too long for IPv6
        (b"PROXY TCP4 ::1", 11),
        (b"PROXY TCP6 fe80::1%eth0", 18),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 30),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 31),
        (b"PROXY UNKNOWN\n", 13),
        (b"PROXY UNKNOWN foo\nbar", 17),
        (b"\r\n\r\n\x01", 4),
        (b"\r\nGET", 2),
        (SIG + b"\x11", 12),  # version 1 in a v2 header
        (SIG + b"\x22", 12),  # command 2
        (SIG + b"\x21\x13", 13),  # unknown protocol
        (SIG + b"\x21\x41", 13),  # unknown family
        (SIG + b"\x21\x11\x08\x01", 15),  # over the default 2048 bytes
        (SIG + b"\x21\x11\x00\x0b", 15),  # too short for IPv4 addresses
        (SIG + b"\x21\x21\x00\x23", 15),  # too short for IPv6 addresses
        (SIG + b"\x21\x31\x00\xd7", 15),  # too short for UNIX addresses
        (b"PROXY UNKNOWN " + b"a" * 100, V1_MAX_LENGTH - 1),  # no CRLF in 107 bytes
        (b"PROXY UNKNOWN " + b"a" * 92 + b"\r\n", V1_MAX_LENGTH - 1),  # a 108-byte line
    ],
)
def test_bad_input_is_refused_at_the_first_impossible_byte(data: bytes, index: int) -> None:
    assert fail_index(data) == index


def test_http_request_refused_on_first_byte_without_waiting() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError, match="not a PROXY protocol header"):
        parser.feed(b"G")


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 90 \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
        b"PROXY TCP4 1.2.3.4\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 65536\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 080 90\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 90\r\n",
        b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n",
        b"PROXY TCP6 ::1 ::: 1 2\r\n",
        b"PROXY TCP6 ::1 1::2::3 1 2\r\n",
        b"PROXY TCP6 ::1 12345::1 1 2\r\n",
        b"PROXY UNKNOWN\r\r\n",
    ],
)
def test_bad_v1_lines_are_refused(line: bytes) -> None:
    refuse(line)


@pytest.mark.parametrize(
    "data",
    [
        v2(0x21, 0x11, TCP4_BLOCK + b"\x01\x00"),  # TLV shorter than its 3-byte head
        v2(0x21, 0x11, TCP4_BLOCK + b"\x01\x00\x05abc"),  # TLV runs past the end
        v2(0x21, 0x00, b"not TLVs"),  # UNSPEC: the block must be TLVs
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_CRC32C, b"abc")),  # CRC32C of 3 bytes
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_CRC32C, b"\x00\x00\x00\x00")),  # wrong CRC
        v2(0x20, 0x00, tlv(PP2_TYPE_CRC32C, b"\x00\x00\x00\x01")),  # LOCAL: still checked
    ],
)
def test_bad_v2_headers_are_refused(data: bytes) -> None:
    refuse(data)


VALID = [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP6 ::1 ::2 1 2\r\n",
    b"PROXY UNKNOWN\r\n",
    build_v2(("1.2.3.4", 1), ("5.6.7.8", 2), tlvs=[(1, b"h2")], crc32c=True),
    build_v2(("::1", 1), ("::2", 2)),
    build_v2_unix("/a", "/b"),
    build_v2_local(),
]


@pytest.mark.parametrize("data", VALID)
def test_every_truncation_raises_at_eof(data: bytes) -> None:
    for size in range(len(data)):
        parser = ProxyHeaderParser()
        assert parser.feed(data[:size]) is None
        with pytest.raises(ProxyHeaderIncomplete) as info:
            parser.feed_eof()
        assert info.value.received == size


def test_eof_after_the_header_is_fine() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(VALID[0]) is not None
    parser.feed_eof()


def test_versions_option() -> None:
    assert fail_index(VALID[0], versions=[2]) == 0
    assert fail_index(VALID[3], versions=[1]) == 0
    assert parse(VALID[0], versions=[1])[0].version == 1
    assert parse(VALID[3], versions=[2])[0].version == 2
    with pytest.raises(ValueError):
        ProxyHeaderParser(versions=[])
    with pytest.raises(ValueError):
        ProxyHeaderParser(versions=[3])
    with pytest.raises(ValueError):
        ProxyHeaderParser(max_v2_length=65536)


def test_parser_used_out_of_order() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(VALID[0]) is not None
    with pytest.raises(ProtocolError):
        parser.feed(b"more")
    failed = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError):
        failed.feed(b"x")
    with pytest.raises(ProxyProtocolError):
        failed.feed(b"PROXY ")
    closed = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderIncomplete):
        closed.feed_eof()
    with pytest.raises(ProtocolError):
        closed.feed(b"P")


def test_memory_is_bounded() -> None:
    parser = ProxyHeaderParser()
    assert parser.max_header_size == 16 + 2048
    payload = bytes(1_000_000)
    assert parser.feed(VALID[1] + payload) is not None
    assert parser.buffered == 0
    assert parser.rest == payload
    # A v2 header announcing the most it may: held whole, nothing more.
    big = ProxyHeaderParser()
    header = v2(0x21, 0x00, tlv(PP2_TYPE_NOOP, bytes(2045)))
    assert big.feed(header[:-1]) is None
    assert big.buffered == big.max_header_size - 1
    assert big.feed(header[-1:] + payload) is not None
    assert big.rest == payload


# -- properties --------------------------------------------------------------

ports = st.integers(0, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
tlv_lists = st.lists(
    st.tuples(st.integers(0, 255).filter(lambda k: k != PP2_TYPE_CRC32C), st.binary(max_size=40)),
    max_size=4,
)
# At most 4 bytes a character: 27 always fit the 108 bytes (no filter to reject with).
unix_paths = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=27)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, ProxyHeader]:
    """Any header the builders make, with the header it must parse to."""
    kind = draw(st.sampled_from(["v1", "v2", "v2-local", "v2-unix", "v1-unknown"]))
    if kind == "v1-unknown":
        return build_v1_unknown(), ProxyHeader(1, "PROXY", "UNKNOWN", None, None)
    tlvs = tuple(draw(tlv_lists))
    crc = draw(st.booleans())
    if kind == "v2-local":
        data = build_v2_local(tlvs=tlvs, crc32c=crc)
        return data, ProxyHeader(2, "LOCAL", "UNSPEC", None, None, _expected_tlvs(data, tlvs, crc))
    if kind == "v2-unix":
        src, dst = draw(unix_paths), draw(unix_paths)
        data = build_v2_unix(src, dst, tlvs=tlvs, crc32c=crc)
        expected = _expected_tlvs(data, tlvs, crc)
        return data, ProxyHeader(2, "PROXY", "UNIX", (src, 0), (dst, 0), expected)
    hosts = draw(st.sampled_from([ipv4, ipv6]))
    source = draw(hosts), draw(ports)
    destination = draw(hosts), draw(ports)
    six = ":" in source[0]
    if kind == "v1":
        family: Family = "TCP6" if six else "TCP4"
        return build_v1(source, destination), ProxyHeader(1, "PROXY", family, source, destination)
    datagram = draw(st.booleans())
    data = build_v2(source, destination, datagram=datagram, tlvs=tlvs, crc32c=crc)
    name = ("UDP" if datagram else "TCP") + ("6" if six else "4")
    expected = _expected_tlvs(data, tlvs, crc)
    return data, ProxyHeader(2, "PROXY", name, source, destination, expected)  # type: ignore[arg-type]


def _expected_tlvs(
    data: bytes, tlvs: tuple[tuple[int, bytes], ...], crc: bool
) -> tuple[tuple[int, bytes], ...]:
    return (*tlvs, (PP2_TYPE_CRC32C, data[-4:])) if crc else tlvs


@given(headers(), st.binary(max_size=300), st.lists(st.integers(0, 2000), max_size=20))
@settings(max_examples=400)
def test_round_trip_any_chunking(
    case: tuple[bytes, ProxyHeader], payload: bytes, cuts: list[int]
) -> None:
    data, expected = case
    parser = ProxyHeaderParser()
    chunks = chunked(data + payload, cuts)
    for i, chunk in enumerate(chunks):
        header = parser.feed(chunk)
        assert parser.buffered <= parser.max_header_size
        if header is not None:
            assert header == expected
            assert parser.rest + b"".join(chunks[i + 1 :]) == payload
            return
    raise AssertionError("header never completed")


@given(headers(), st.binary(max_size=20))
def test_round_trip_one_byte_at_a_time(case: tuple[bytes, ProxyHeader], payload: bytes) -> None:
    data, expected = case
    stream = data + payload
    parser = ProxyHeaderParser()
    for i in range(len(stream)):
        header = parser.feed(stream[i : i + 1])
        if header is not None:
            assert header == expected
            assert i == len(data) - 1  # completes on its last byte, no sooner or later
            assert parser.rest == b""
            return
    raise AssertionError("header never completed")


def check_any_input(stream: bytes, cuts: list[int], parser: ProxyHeaderParser) -> None:
    """Any bytes parse or raise ProxyProtocolError, with the buffer bounded."""
    fed = b""
    try:
        for chunk in chunked(stream, cuts):
            fed += chunk
            header = parser.feed(chunk)
            assert parser.buffered <= parser.max_header_size
            if header is not None:
                assert fed.endswith(parser.rest)
                assert len(fed) - len(parser.rest) <= parser.max_header_size
                return
        parser.feed_eof()
        raise AssertionError("feed_eof accepted an incomplete header")
    except ProxyProtocolError:
        assert parser.buffered == 0


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for index, value in edits:
        if out:
            out[index % len(out)] = value
    return bytes(out)


mutated = st.tuples(headers(), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)))).map(
    lambda case: _mutate(case[0][0], case[1])
)
v2_starts = [SIG + bytes([c, f]) for c in (0x20, 0x21) for f in (0x00, 0x11, 0x21, 0x31)]
fuzz_inputs = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.sampled_from([b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", SIG]), st.binary()).map(
        b"".join
    ),
    st.tuples(st.sampled_from(v2_starts), st.binary(max_size=300)).map(b"".join),
    mutated,
)


@given(
    fuzz_inputs,
    st.lists(st.integers(0, 500), max_size=10),
    st.sampled_from([(1, 2), (1,), (2,)]),
    st.integers(0, 400),
)
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_any_bytes_parse_or_raise_proxy_protocol_error(
    stream: bytes, cuts: list[int], versions: tuple[int, ...], max_v2: int
) -> None:
    assume(stream)
    check_any_input(stream, cuts, ProxyHeaderParser(versions=versions, max_v2_length=max_v2))
    check_any_input(stream, cuts, ProxyHeaderParser())
