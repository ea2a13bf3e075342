"""The command line: ``linechat serve`` and ``linechat connect``.

The only place that parses argv, prints for people and picks exit codes.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn

__all__ = ["entry_point", "main"]

COMMANDS = ("serve", "connect")


def build_parser(commands: tuple[str, ...] = COMMANDS) -> argparse.ArgumentParser:
    """The parser for ``commands`` (each a module of this package)."""
    import argparse  # here: the fast path of `linechat connect` does without it
    import importlib

    from .. import __version__
    from .common import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="linechat",
        formatter_class=HelpFormatter,
        description="Line protocols on asyncio: a server and an interactive client.",
    )
    parser.add_argument("--version", action="version", version=f"linechat {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands:
        importlib.import_module(f".{name}", __name__).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # parsed in two steps (the TARGET's options join in)
        from .serve import main as serve

        try:
            return serve(argv[1:])
        except KeyboardInterrupt:
            return 130
    if argv[:1] == ["connect"]:  # pipe mode with simple arguments: no argparse
        from .fastpath import run

        try:
            fast = run(argv[1:])
        except KeyboardInterrupt:
            return 130
        if fast is not None:
            return fast
    # Import only the command asked for: `linechat connect` starts faster
    # without the server's modules.
    wanted = tuple(name for name in COMMANDS if argv[:1] == [name]) or COMMANDS
    args = build_parser(wanted).parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


def entry_point() -> NoReturn:
    """The ``linechat`` command: :func:`main`, then exit without tearing Python down.

    Once main() returns every connection is closed and every file written;
    what is left is flushing stdout and stderr. Skipping the interpreter's
    teardown of asyncio, ssl and the rest saves about 10 ms a run, which a
    script calling ``linechat connect`` in a loop feels (bench/client.py).
    Usage errors (SystemExit from argparse) take the ordinary way out.
    """
    code = main()
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # what Python itself exits with when stdout cannot be flushed
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry_point()
