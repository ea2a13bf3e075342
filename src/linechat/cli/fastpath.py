"""``linechat connect HOST PORT < file`` read without argparse, so that it starts sooner.

A script's usual call (a host and a port number, perhaps ``--lf``,
``--wait``, ``--connect-timeout`` or ``--unix``; stdout not a terminal) is
pipe mode on a plain connection, which needs none of argparse: importing it,
with ``re``, ``gettext`` and ``locale`` behind it, and building the parser
was a third of the instructions the command ran before its first byte left.
:func:`run` reads those few arguments itself; for anything else (another
option, an abbreviation, a service name for the port, a value argparse
would refuse, ``--help``) it returns None and the command is parsed by
argparse as always, so that every message and the help stay argparse's.
Both ways end in :func:`run_pipe`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    # What parse() reads: host, port, unix, lf, wait, connect_timeout, as
    # argparse's namespace has them (None for a host or port not given).
    Parsed = tuple[str | None, int | None, str | None, bool, float, float]

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_WAIT", "PROG", "parse", "run", "run_pipe", "say"]

PROG = "linechat connect"
DEFAULT_WAIT = 10.0
DEFAULT_CONNECT_TIMEOUT = 10.0
#: The options read here, each with a value (``--lf`` is the only flag).
_VALUED = ("--wait", "--connect-timeout", "--unix")


def say(text: str) -> None:
    """One line for people, on stderr."""
    try:  # noqa: SIM105 (contextlib is not imported on the fast path)
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)
    except BlockingIOError:
        pass


def _seconds(text: str) -> float | None:
    """What ``non_negative_float`` makes of ``text``, or None where it would refuse it."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and value != float("inf") else None


def _port(text: str) -> int | None:
    """What ``service_port`` makes of a port number; None for a service name or an error."""
    if not text.isdigit():
        return None
    try:
        value = int(text)
    except ValueError:  # a digit int() does not take, such as "²"
        return None
    return value if 0 <= value <= 65535 else None


def run(argv: list[str]) -> int | None:
    """``linechat connect ARGV`` if it is plain pipe mode with simple arguments.

    Returns the exit status, or None when argparse must read ``argv`` (and
    nothing was done).
    """
    if os.isatty(1):  # a terminal shows lines escaped: the full command does that
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    host, port, unix, lf, wait, connect_timeout = parsed
    from ..client.basics import DEFAULT_HOST, DEFAULT_PORT

    return run_pipe(
        DEFAULT_HOST if host is None else host,
        DEFAULT_PORT if port is None else port,
        unix=unix,
        newline=b"\n" if lf else b"\r\n",
        wait=wait,
        connect_timeout=connect_timeout,
    )


def parse(argv: list[str]) -> Parsed | None:
    """What argparse would make of ``argv``, or None if it is not sure to be the same.

    Positional arguments must come in one run: argparse fills both optional
    ones at the first run it meets, which this does not imitate. Values
    beginning with ``-``, and usage errors, are left to argparse.
    """
    positional: list[str] = []
    values: dict[str, str] = {}
    lf = False
    runs = 0  # runs of positional arguments
    after_positional = False
    words = iter(argv)
    for word in words:
        if not word.startswith("-"):
            runs += not after_positional
            after_positional = True
            positional.append(word)
            continue
        after_positional = False
        name, equals, value = word.partition("=")
        if name == "--lf" and not equals:
            lf = True
            continue
        if name not in _VALUED:
            return None
        if not equals:
            value = next(words, "")
        if not value or value.startswith("-"):
            return None
        values[name] = value
    if runs > 1 or len(positional) > 2:
        return None
    unix = values.get("--unix")
    if unix is not None and positional:
        return None  # a usage error
    wait = _seconds(values.get("--wait", str(DEFAULT_WAIT)))
    timeout = _seconds(values.get("--connect-timeout", str(DEFAULT_CONNECT_TIMEOUT)))
    port = _port(positional[1]) if len(positional) == 2 else None
    if wait is None or timeout is None or (len(positional) == 2 and port is None):
        return None
    return (positional[0] if positional else None, port, unix, lf, wait, timeout)


def run_pipe(
    host: str,
    port: int,
    *,
    unix: str | None,
    newline: bytes,
    wait: float,
    connect_timeout: float,
) -> int:
    """Pipe mode on a plain connection (:mod:`linechat.client.plain`): the exit status.

    A failure is said on stderr (status 1); a ``wait`` or ``connect_timeout``
    of 0 means no limit.
    """
    from ..client.basics import ConnectError, format_address
    from ..client.plain import WAIT_EXPIRED, open_plain, pipe_plain

    address = format_address(host, port, unix)
    try:
        sock = open_plain(host, port, unix=unix, timeout=connect_timeout or None)
        ending, read_error = pipe_plain(sock, newline=newline, wait=wait or None, address=address)
    except ConnectError as exc:
        say(str(exc))
        return 1
    if read_error is not None:
        say(f"cannot read stdin: {read_error.strerror or read_error}")
        return 1
    if ending == WAIT_EXPIRED:
        say(f"no answer for {wait:g} s after the end of input: closed")
    return 0
