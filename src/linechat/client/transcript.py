"""``--log FILE``: a timestamped record of both directions of a session.

One line per record: an ISO 8601 local timestamp with microseconds, a
direction mark (``>`` sent, ``<`` received, ``*`` a note) and the line, its
control characters and bad UTF-8 escaped as on the terminal. The clock is read
once per batch, not once per line.
"""

from __future__ import annotations

import datetime
from typing import IO

from .display import escape_text

__all__ = ["Transcript"]

SENT, RECEIVED, NOTE = ">", "<", "*"


class Transcript:
    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115

    def _stamp(self) -> str:
        return datetime.datetime.now().astimezone().isoformat(timespec="microseconds")

    def lines(self, mark: str, lines: list[bytes]) -> None:
        if not lines:
            return
        head = f"{self._stamp()} {mark} "
        self._file.write("".join(f"{head}{escape_text(line)}\n" for line in lines))

    def sent(self, lines: list[bytes]) -> None:
        self.lines(SENT, lines)

    def received(self, lines: list[bytes]) -> None:
        self.lines(RECEIVED, lines)

    def note(self, text: str) -> None:
        self._file.write(f"{self._stamp()} {NOTE} {text}\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
