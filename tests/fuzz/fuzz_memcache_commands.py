"""Coverage-guided fuzzing of the memcache example's parser with atheris.

    .venv/bin/python tests/fuzz/fuzz_memcache_commands.py -max_total_time=60

Run from the repository root (``examples`` is imported from there). Any line
must give a command within memcached's limits, or one of memcached's error
lines (or silence, for noreply); a stored value must read as a counter or not,
never raise.
"""

from __future__ import annotations

import importlib
import sys

sys.path.insert(0, ".")
from examples.memcache_commands import (
    KEY_MAX_LENGTH,
    Arithmetic,
    Delete,
    Error,
    Retrieve,
    Storage,
    Touch,
    parse,
    parse_counter,
)

ERRORS = {
    None,
    b"ERROR",
    b"CLIENT_ERROR bad command line format",
    b"CLIENT_ERROR invalid numeric delta argument",
    b"CLIENT_ERROR invalid exptime argument",
    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
}


def one_input(data: bytes) -> None:
    line = data.replace(b"\n", b"")  # the framer never hands out a line end
    command = parse(line)
    if isinstance(command, Error):
        if command.line not in ERRORS:
            raise AssertionError(f"unknown error line {command.line!r}")
    elif isinstance(command, Storage):
        if not 0 <= command.length <= 2**31 - 3 or not 0 <= command.flags < 2**32:
            raise AssertionError(f"out of range: {command!r}")
        if len(command.key) > KEY_MAX_LENGTH or b" " in command.key:
            raise AssertionError(f"bad key: {command!r}")
    elif isinstance(command, Retrieve):
        if not command.keys or any(len(k) > KEY_MAX_LENGTH or not k for k in command.keys):
            raise AssertionError(f"bad keys: {command!r}")
    elif isinstance(command, (Delete, Arithmetic, Touch)) and (
        len(command.key) > KEY_MAX_LENGTH or b" " in command.key
    ):
        raise AssertionError(f"bad key: {command!r}")
    counter = parse_counter(data)
    if counter is not None and not 0 <= counter < 2**64:
        raise AssertionError(f"counter out of range: {counter}")


def main() -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(one_input)


if __name__ == "__main__":
    main()
