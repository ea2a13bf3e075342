"""The WHOIS service (RFC 3912): one query line, the record (or why not), then close.

    linechat serve whois --data records/ --rate 60/minute

Records come from a directory of UTF-8 files (the file name is the key) or a
TOML file (see :mod:`linechat.services.whois_data`); keys match
case-insensitively. Every answer ends the connection, so a client's
garbage, flood or silence holds nothing but its own socket: a bad query gets
an error answer, a client over its rate gets an answer saying so, a silent
one is closed after the idle timeout. SIGHUP reloads the records: answers
use the data current when the query arrives, and a reload that fails keeps
the old data (and logs why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..errors import LineTooLong, ServiceError
from ..protocol import LineProtocol
from ..service import Option, ServeContext, Service
from .rate_limit import RateLimiter, client_key, parse_rate
from .whois_data import load_records
from .whois_query import MAX_QUERY_BYTES, QueryError, lookup_key, normalise_query

__all__ = ["DEFAULTS", "SERVICE", "WhoisDatabase", "WhoisProtocol", "error_answer", "whois_class"]

log = logging.getLogger("linechat.services.whois")

#: Runner settings: a query is one short line; a silent client goes after 10 s.
DEFAULTS: dict[str, Any] = {
    "port": 4343,
    "lenient": True,
    "max_line_length": MAX_QUERY_BYTES,
    "idle_timeout": 10.0,
}


def error_answer(reason: str) -> bytes:
    """An error in the comment style WHOIS servers use (``%`` lines)."""
    return f"% Error: {reason}.\r\n".encode()


def no_match_answer(query: str) -> bytes:
    return f'% No match for "{query}".\r\n'.encode()


class WhoisDatabase:
    """The records of one data path, replaced whole on :meth:`reload`."""

    __slots__ = ("path", "records")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, bytes] = load_records(self.path)

    def reload(self) -> bool:
        """Load the data again; on failure keep the old records and log why."""
        try:
            records = load_records(self.path)
        except ServiceError as exc:
            log.error("reload failed, still serving the previous data: %s", exc)
            return False
        self.records = records
        log.info("reloaded %d WHOIS records from %s", len(records), self.path)
        return True

    def answer(self, line: bytes) -> bytes:
        """The answer to one query line."""
        try:
            query = normalise_query(line)
        except QueryError as exc:
            return error_answer(str(exc))
        record = self.records.get(lookup_key(query))
        return record if record is not None else no_match_answer(query)


class WhoisProtocol(LineProtocol):
    """One query, one answer, close. Subclassed per server by :func:`whois_class`."""

    __slots__ = ()

    database: ClassVar[WhoisDatabase]
    #: None when the rate is not limited.
    limiter: ClassVar[RateLimiter | None] = None
    rate_answer: ClassVar[bytes] = b""

    def line_received(self, line: bytes) -> None:
        if self._over_rate():
            self.write_raw(self.rate_answer)
        else:
            self.write_raw(self.database.answer(line))
        self.close()

    def line_too_long(self, exc: LineTooLong) -> None:
        if self._over_rate():
            self.write_raw(self.rate_answer)
        else:
            self.write_raw(error_answer(f"query longer than {exc.limit} bytes"))
        self.close()  # a lingering close: the client reads the answer, then our end

    def idle_timeout_expired(self) -> None:
        self.write_raw(error_answer(f"no query within {self.idle_timeout:g} seconds"))
        super().idle_timeout_expired()

    def _over_rate(self) -> bool:
        limiter = self.limiter
        return limiter is not None and not limiter.allow(client_key(self.peer))

    @classmethod
    def reload(cls) -> None:
        """SIGHUP: read the data again (connections open meanwhile are untouched)."""
        cls.database.reload()


def whois_class(path: str | Path, *, per_minute: float = 60.0) -> type[WhoisProtocol]:
    """A :class:`WhoisProtocol` subclass serving ``path`` (raises ServiceError)."""
    database = WhoisDatabase(path)
    limiter = RateLimiter(per_minute, clock=time.monotonic) if per_minute > 0 else None
    rate_answer = error_answer(
        f"rate limit exceeded (at most {per_minute:g} queries a minute from your address); "
        "try again later"
    )
    namespace = {
        "__slots__": (),
        "database": database,
        "limiter": limiter,
        "rate_answer": rate_answer,
    }
    return type("WhoisProtocol", (WhoisProtocol,), namespace)


def _check(options: Mapping[str, Any], context: ServeContext) -> None:
    load_records(options["data"])


def _build(options: Mapping[str, Any], context: ServeContext) -> type[WhoisProtocol]:
    if context.layer == "stream":
        raise ServiceError("the whois service runs on the protocol layer only")
    return whois_class(options["data"], per_minute=options["rate"])


SERVICE = Service(
    name="whois",
    summary="a WHOIS server (RFC 3912) answering from a directory of files or a TOML file",
    build=_build,
    options=(
        Option(
            "data",
            "the records: a directory with one UTF-8 file per object (the file name is "
            "the key) or one TOML file",
            type=str,
            required=True,
            metavar="PATH",
        ),
        Option(
            "rate",
            "queries allowed per client address (IPv6: per /64), e.g. 60/minute, "
            "10/second; 0 for no limit (default 60/minute)",
            type=parse_rate,
            default=60.0,
            metavar="N/minute",
        ),
    ),
    defaults=DEFAULTS,
    check=_check,
)
