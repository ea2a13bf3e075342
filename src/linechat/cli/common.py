"""What both commands share: the event loop choice, argument types, errors."""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = [
    "CliError",
    "HelpFormatter",
    "RawDescriptionHelpFormatter",
    "add_loop_option",
    "loop_factory",
    "non_negative_float",
    "port_number",
    "positive_int",
]


class CliError(Exception):
    """A failure to report as one line on stderr, with no traceback."""


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it, without importing shutil.

    argparse builds a formatter for every argument added and each one asks
    shutil; importing shutil (and bz2, lzma, fnmatch with it) is a millisecond
    of every ``linechat connect``'s start-up.
    """
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        global _TERMINAL_COLUMNS
        if _TERMINAL_COLUMNS is None:  # asked once: argparse makes a formatter per argument
            try:
                stdout = sys.__stdout__.fileno()  # type: ignore[union-attr]
                _TERMINAL_COLUMNS = os.get_terminal_size(stdout).columns
            except (AttributeError, ValueError, OSError):
                _TERMINAL_COLUMNS = 0
        columns = _TERMINAL_COLUMNS
    return columns or 80


_TERMINAL_COLUMNS: int | None = None


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil (same width)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """argparse's RawDescriptionHelpFormatter, sized as :class:`HelpFormatter`."""


def add_loop_option(parser: argparse.ArgumentParser, auto: str) -> None:
    """``--loop auto|asyncio|uvloop``; ``auto`` says what auto picks."""
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help=f"event loop (auto: {auto})",
    )


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``auto`` (uvloop when installed), ``asyncio`` or ``uvloop``; None means asyncio's."""
    if name == "asyncio":  # asyncio is imported by the caller, not here (start-up time)
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise CliError("uvloop is not installed (pip install 'linechat[fast]')") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535: {text}")
    return value
