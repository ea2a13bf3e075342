"""The trace header fields put above each stored message (RFC 5321 4.4). Sans-I/O.

``Return-Path`` holds the envelope sender; ``Received`` says who handed the
message over (its HELO name and address: the PROXY protocol's client address
when there is one, with the balancer's beside it), over what (SMTP or ESMTP,
with TLS or not: RFC 3848's ``ESMTPS``, RFC 6531's ``UTF8SMTP``), when, and
under which id. ``X-Envelope-To`` lists the envelope recipients, which the
message's own header may not show (Bcc).

Every value here comes from a parsed command (no CR, LF or other control
byte can reach it), so no header can be injected through them.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime
from email.utils import format_datetime

__all__ = ["address_literal", "client_description", "trace_headers"]

CRLF = b"\r\n"

_date_cache: tuple[int, bytes] = (-1, b"")


def _now() -> bytes:
    """The current time as RFC 5322 writes it, made once a second (it is in every message)."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, format_datetime(datetime.fromtimestamp(second, UTC)).encode())
    return _date_cache[1]


def address_literal(address: object) -> str:
    """A socket address as RFC 5321 writes it: ``[192.0.2.1]:25``, ``[IPv6:2001:db8::1]:25``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = str(address[0]), address[1]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return f"{host}:{port}"
        if ip.version == 6:
            if ip.ipv4_mapped is not None:
                return f"[{ip.ipv4_mapped}]:{port}"
            return f"[IPv6:{ip.compressed}]:{port}"
        return f"[{ip}]:{port}"
    return "unix socket" if address in (None, "", b"") else str(address)


def client_description(peer: object, via: object = None) -> bytes:
    """The client's part of ``Received``: its address, and the PROXY balancer's if any."""
    text = address_literal(peer)
    if via is not None:
        text += f" via PROXY {address_literal(via)}"
    return text.encode("ascii", "backslashreplace")


def trace_headers(
    *,
    helo: bytes | None,
    client: bytes,
    hostname: bytes,
    esmtp: bool,
    tls: str | None,
    smtputf8: bool,
    ident: bytes,
    mail_from: bytes,
    rcpts: list[bytes],
    when: datetime | None = None,
) -> bytes:
    """``Return-Path``, ``Received`` and ``X-Envelope-To``, each ended by CRLF.

    ``tls`` describes the TLS session (``TLSv1.3 with cipher ...``), None without.
    """
    if smtputf8:
        protocol = b"UTF8SMTP"
    elif esmtp:
        protocol = b"ESMTP"
    else:
        protocol = b"SMTP"
    if tls is not None:
        protocol += b"S"
    date = format_datetime(when).encode() if when is not None else _now()
    received = [b"Received: from " + (helo or b"unknown") + b" (" + client + b")"]
    if tls is not None:
        received.append(b"\t(using " + tls.encode("ascii", "backslashreplace") + b")")
    received.append(b"\tby " + hostname + b" (linechat smtp-sink) with " + protocol)
    received.append(b"\tid " + ident)
    if len(rcpts) == 1:
        received.append(b"\tfor <" + rcpts[0] + b">; " + date)
    else:
        received[-1] += b"; " + date
    envelope_to = b"X-Envelope-To: " + b",\r\n\t".join(b"<" + rcpt + b">" for rcpt in rcpts)
    return b"".join(
        [
            b"Return-Path: <" + mail_from + b">\r\n",
            CRLF.join(received),
            CRLF,
            envelope_to,
            CRLF,
        ]
    )
