"""The seed's echo service: every line answered ``You sent: <line>``; ``.`` closes.

Byte-transparent: any bytes but the line end come back as sent. Bare LF is
accepted (lenient framing); answers always end in CRLF.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ..protocol import LineProtocol
from ..service import ServeContext, Service
from ..stream import LineStream

if TYPE_CHECKING:
    from _typeshed import IdentityFunction

try:  # compiled with the hot modules (the optional build): see protocol.py
    from mypy_extensions import mypyc_attr
except ImportError:  # the pure package does not need mypy_extensions

    def mypyc_attr(*attrs: str, **kwattrs: object) -> IdentityFunction:
        """Read by mypyc at compile time; without mypy_extensions, a decorator that does nothing."""
        return lambda cls: cls


__all__ = ["FRAMING", "PREFIX", "QUIT", "SERVICE", "EchoProtocol", "echo_handler"]

PREFIX: Final = b"You sent: "
QUIT: Final = b"."
#: The echo service accepts bare LF as well as CRLF.
FRAMING: dict[str, Any] = {"lenient": True}


@mypyc_attr(allow_interpreted_subclasses=True)
class EchoProtocol(LineProtocol):
    """The echo service on the protocol layer: one C-level join per chunk."""

    __slots__ = ()

    def __init__(self, **options: Any) -> None:
        options = {**FRAMING, **options}
        # Not super().__init__(**options): compiled by mypyc, that passes the dict positionally.
        LineProtocol.__init__(self, **options)

    def lines_received(self, lines: list[bytes]) -> None:
        if QUIT in lines:
            self.write_lines(lines[: lines.index(QUIT)], PREFIX)
            self.close()
        else:
            self.write_lines(lines, PREFIX)


async def echo_handler(stream: LineStream) -> None:
    """The echo service on the stream layer, byte for byte the same on the wire.

    Serve it with ``start_server(echo_handler, ..., **FRAMING)``.
    """
    async for line in stream:
        if line == QUIT:
            return
        stream.write_line(PREFIX + line)
        del line  # not kept while idle: a line may be up to the limit long


def _build(options: Mapping[str, Any], context: ServeContext) -> Any:
    return echo_handler if context.layer == "stream" else EchoProtocol


SERVICE = Service(
    name="echo",
    summary="answers every line 'You sent: <line>'; a line holding only '.' closes",
    build=_build,
    defaults=FRAMING,
)
