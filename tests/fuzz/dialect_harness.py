"""What every dialect's fuzz harness checks (imported by the fuzz_dialect_*.py scripts).

The first input byte picks the chunk size, the second how many of the
dialect's own commands are submitted first (a reply is judged by the command
it answers); the rest is what the server sends. Any input must give events or
DialectError, the same events however it is chunked, and a bounded buffer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from linechat.dialects import load
from linechat.dialects.base import MAX_LINE, Dialect, DialectError, Event


def run(dialect: Dialect, commands: int, stream: bytes, step: int) -> list[Event] | None:
    names = dialect.commands
    for index in range(commands):
        if names and not dialect.waiting:
            dialect.submit(names[index % len(names)].encode() + b" x")
    events: list[Event] = []
    try:
        for start in range(0, len(stream), step):
            events.extend(dialect.feed(stream[start : start + step]))
            if dialect._reader.buffered > MAX_LINE + 2 * step + (1 << 20):
                raise AssertionError("the dialect buffered more than a line and a chunk")
    except DialectError:
        return None
    return events


def harness(name: str) -> Callable[[bytes], None]:
    make = load(name)

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        step, commands, stream = data[0] % 32 + 1, data[1] % 4, data[2:]
        chunked = run(make(), commands, stream, step)
        whole = run(make(), commands, stream, max(1, len(stream)))
        if (chunked is None) != (whole is None) or chunked != whole:
            raise AssertionError("the events depend on how the input was chunked")

    return one_input


def main(name: str) -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(harness(name))
