"""The command line: ``linechat serve`` and ``linechat connect``.

The only place that parses argv, prints for people and picks exit codes.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import connect, serve

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linechat",
        description="Line protocols on asyncio: a server and an interactive client.",
    )
    parser.add_argument("--version", action="version", version=f"linechat {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_parser(commands)
    connect.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
