"""``linechat serve smtp-sink --maildir DIR``: an SMTP server that stores every message.

For development and tests: point an application's SMTP settings at it and
read what it sent from a Maildir (``mailbox.Maildir``, mutt, a test). It
receives only (RFC 5321 server side, with PIPELINING, 8BITMIME, SIZE,
STARTTLS, SMTPUTF8 and ENHANCEDSTATUSCODES) and relays nothing.

The pieces: :mod:`.commands` (command parser), :mod:`.data` (message text),
:mod:`.session` (the state machine), all sans-I/O; :mod:`.trace` (the
``Received`` header), :mod:`.maildir` (storage), :mod:`.protocol` (the
protocol-layer class that joins them).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any

from ...errors import ServiceError
from ...service import Option, ServeContext, Service
from .maildir import Maildir
from .protocol import SinkConfig, SmtpSinkProtocol
from .session import SessionConfig

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "SERVICE", "SinkConfig", "SmtpSinkProtocol", "byte_size"]

DEFAULT_MAX_MESSAGE_SIZE = 25 * 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 100
DEFAULT_PORT = 1025

_SIZE = re.compile(r"(\d+)\s*([kKmMgG]?)[iI]?[bB]?")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?")


def byte_size(text: str) -> int:
    """A size in bytes: ``1048576``, ``512K``, ``25M``, ``1G`` (powers of 1024)."""
    match = _SIZE.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"not a size in bytes (like 1048576, 512K, 25M): {text!r}")
    value = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1:
        raise ValueError(f"must be at least 1 byte: {text!r}")
    return value


def count(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1: {text!r}")
    return value


def hostname(text: str) -> str:
    """The name the server gives itself (greeting, EHLO, Received): a DNS name."""
    if _HOSTNAME.fullmatch(text) is None:
        raise ValueError(f"not a host name: {text!r}")
    return text


def _check(options: Mapping[str, Any], context: ServeContext) -> None:
    if context.layer == "stream":
        raise ServiceError("smtp-sink runs on the protocol layer only (drop --layer stream)")
    path = options["maildir"]
    try:
        folder = Maildir(path)
    except OSError as exc:
        raise ServiceError(f"cannot use --maildir {path}: {exc.strerror or exc}") from None
    for sub in ("tmp", "new"):
        if not os.access(folder.path / sub, os.W_OK | os.X_OK):
            raise ServiceError(f"cannot use --maildir {path}: {sub}/ is not writable")


def _build(options: Mapping[str, Any], context: ServeContext) -> type[SmtpSinkProtocol]:
    _check(options, context)
    name = options.get("hostname") or socket.gethostname() or "localhost"
    config = SinkConfig(
        session=SessionConfig(
            hostname=name.encode("ascii", "replace"),
            max_message_size=options.get("max_message_size") or DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients=options.get("max_recipients") or DEFAULT_MAX_RECIPIENTS,
            starttls=context.tls_context is not None,
        ),
        maildir=Maildir(options["maildir"]),
        tls_context=context.tls_context,
    )
    return type("SmtpSink", (SmtpSinkProtocol,), {"__slots__": (), "config": config})


SERVICE = Service(
    name="smtp-sink",
    summary="an SMTP server that stores every message it receives in a Maildir",
    build=_build,
    check=_check,
    options=(
        Option(
            "maildir",
            "the Maildir to store messages in (tmp/, new/, cur/ are created if missing)",
            required=True,
            metavar="DIR",
        ),
        Option(
            "max-message-size",
            "largest message accepted, in bytes (K, M, G suffixes; default 25M); "
            "advertised as SIZE and enforced as the text arrives",
            type=byte_size,
            default=DEFAULT_MAX_MESSAGE_SIZE,
            metavar="BYTES",
        ),
        Option(
            "max-recipients",
            f"most RCPT TO accepted per message (default {DEFAULT_MAX_RECIPIENTS})",
            type=count,
            default=DEFAULT_MAX_RECIPIENTS,
            metavar="N",
        ),
        Option(
            "hostname",
            "the server's name in its greeting and Received headers (default: this host's)",
            type=hostname,
            metavar="NAME",
        ),
    ),
    defaults={"port": DEFAULT_PORT},
    starttls=True,
)
