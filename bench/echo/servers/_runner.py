"""What every competitor server shares: the command line and the event loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


def run_server(serve: Callable[[int], Coroutine[Any, Any, None]], description: str | None) -> None:
    """``--port N [--loop asyncio|uvloop]``, then ``serve(port)`` until interrupted."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(serve(args.port))
        else:
            asyncio.run(serve(args.port))
