"""What both commands share: the event loop choice, argument types, errors."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

__all__ = [
    "CliError",
    "add_loop_option",
    "loop_factory",
    "non_negative_float",
    "port_number",
    "positive_int",
]


class CliError(Exception):
    """A failure to report as one line on stderr, with no traceback."""


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
    if name == "asyncio":
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
