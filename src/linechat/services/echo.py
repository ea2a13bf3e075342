"""The seed's echo service: every line answered ``You sent: <line>``; ``.`` closes.

Byte-transparent: any bytes but the line end come back as sent. Bare LF is
accepted (lenient framing); answers always end in CRLF.
"""

from __future__ import annotations

from typing import Any

from ..protocol import LineProtocol

__all__ = ["PREFIX", "QUIT", "EchoProtocol"]

PREFIX = b"You sent: "
QUIT = b"."


class EchoProtocol(LineProtocol):
    """The echo service on the protocol layer: one C-level join per chunk."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("lenient", True)
        super().__init__(**options)

    def lines_received(self, lines: list[bytes]) -> None:
        if QUIT in lines:
            self.write_lines(lines[: lines.index(QUIT)], prefix=PREFIX)
            self.close()
        else:
            self.write_lines(lines, prefix=PREFIX)
