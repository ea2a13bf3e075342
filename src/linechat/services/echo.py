"""The seed's echo service: every line answered ``You sent: <line>``; ``.`` closes.

Byte-transparent: any bytes but the line end come back as sent. Bare LF is
accepted (lenient framing); answers always end in CRLF.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..protocol import LineProtocol
from ..service import ServeContext, Service
from ..stream import LineStream

__all__ = ["FRAMING", "PREFIX", "QUIT", "SERVICE", "EchoProtocol", "echo_handler"]

PREFIX = b"You sent: "
QUIT = b"."
#: The echo service accepts bare LF as well as CRLF.
FRAMING: dict[str, Any] = {"lenient": True}


class EchoProtocol(LineProtocol):
    """The echo service on the protocol layer: one C-level join per chunk."""

    __slots__ = ()

    def __init__(self, **options: Any) -> None:
        options = {**FRAMING, **options}
        super().__init__(**options)

    def lines_received(self, lines: list[bytes]) -> None:
        if QUIT in lines:
            self.write_lines(lines[: lines.index(QUIT)], prefix=PREFIX)
            self.close()
        else:
            self.write_lines(lines, prefix=PREFIX)


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
