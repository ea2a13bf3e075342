"""``--expect FILE``: replay a transcript (as ``--log`` writes it) and compare the replies.

The transcript's sent lines (``>``) are the input, as they were on the wire;
its received lines (``<``) are the replies expected, one exchange per run of sent lines
and the received lines after it. The first exchange whose reply
differs gives a unified diff. A received line holding ``{{*}}`` is a pattern:
the marker matches any text (a date, a queue id, a session token), so
``250 2.0.0 Ok: queued as {{*}}`` matches every queue id, and a line
holding only ``{{*}}`` matches any one line. Notes (``*``) are skipped, and
so is everything before a ``* TLS established`` note (``--starttls`` does
that part again).

Lines may be hand-written without the timestamp: ``> EHLO me``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .display import escape_text

if TYPE_CHECKING:
    from .lockstep import Exchange

__all__ = ["MARKER", "Expected", "TranscriptError", "read_transcript"]

MARKER = "{{*}}"
_RECORD = re.compile(r"^(?:\S+ )?([<>*]) ?(.*)$")


class TranscriptError(Exception):
    """The --expect file cannot be read as a transcript."""


@dataclass
class _Record:
    mark: str
    text: str
    number: int  # line number in the file


@dataclass
class _Expected:
    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    number: int = 0  # line of the first received line


def read_transcript(path: str) -> tuple[list[_Record], str | None]:
    """The records after the last TLS upgrade, and the dialect the transcript names."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            text = file.read()
    except OSError as exc:
        raise TranscriptError(f"cannot read --expect {path}: {exc.strerror}") from None
    records: list[_Record] = []
    dialect: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _RECORD.match(line)
        if match is None:
            raise TranscriptError(f"{path}:{number}: not a transcript line: {line[:80]!r}")
        mark, rest = match.groups()
        if mark == "*":
            if rest.startswith("dialect "):
                dialect = rest.split()[1]
            if rest == "TLS established":
                records.clear()
            if rest.startswith("connected to"):
                records.clear()  # a --log file appended to: the last session counts
            continue
        records.append(_Record(mark, rest, number))
    return records, dialect


class Expected:
    """The exchanges a transcript holds, checked one by one against live ones.

    An exchange is a run of sent lines and the received lines after it, up
    to the next sent line (lockstep: the reply is complete before anything
    else is sent); received lines before the first sent line are the greeting.
    """

    def __init__(self, path: str, records: list[_Record]) -> None:
        self.path = path
        self._inputs = [record.text.encode() for record in records if record.mark == ">"]
        self.exchanges: list[_Expected] = []
        self._next = 0
        current = _Expected()
        for record in records:
            if record.mark == ">":
                if current.received:
                    self.exchanges.append(current)
                    current = _Expected()
                current.sent.append(record.text)
                continue
            if not current.received:
                current.number = record.number
            current.received.append(record.text)
        if current.received:
            self.exchanges.append(current)

    def inputs(self) -> list[bytes]:
        """The lines to send, as they were sent."""
        return self._inputs

    def check(self, exchange: Exchange) -> str | None:
        """None when ``exchange`` is as expected, else a readable difference."""
        index = self._next
        self._next += 1
        got = [escape_text(line) for line in exchange.wire]
        sent = ", ".join(repr(escape_text(line)) for line in exchange.sent) or "(the greeting)"
        if index >= len(self.exchanges):
            return f"reply {index + 1} (to {sent}) is not in {self.path}:\n" + "\n".join(
                f"+< {line}" for line in got
            )
        want = self.exchanges[index]
        if _matches(want.received, got):
            return None
        # Lines that match (patterns included) show as context, not as changes.
        shown = [
            got[i] if i < len(got) and _line_matches(line, got[i]) else line
            for i, line in enumerate(want.received)
        ]
        context = [f"> {line}" for line in map(escape_text, exchange.sent)]
        diff = difflib.unified_diff(
            context + [f"< {line}" for line in shown],
            context + [f"< {line}" for line in got],
            f"{self.path} (line {want.number})",
            "received",
            lineterm="",
        )
        return f"reply {index + 1} (to {sent}) differs from the transcript:\n" + "\n".join(diff)


def _matches(want: list[str], got: list[str]) -> bool:
    return len(want) == len(got) and all(map(_line_matches, want, got))


def _line_matches(want: str, got: str) -> bool:
    if MARKER not in want:
        return want == got
    pattern = ".*".join(re.escape(part) for part in want.split(MARKER))
    return re.fullmatch(pattern, got, re.DOTALL) is not None
