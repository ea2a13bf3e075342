"""What every competitor server shares: the command line and the event loop."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchlib import run_loop
from benchlib import serve_protocol as serve_protocol  # for the protocol servers
from benchlib import serve_streams as serve_streams  # for the streams servers


def run_server(serve: Callable[[int], Coroutine[Any, Any, None]], description: str | None) -> None:
    """``--port N [--loop asyncio|uvloop]``, then ``serve(port)`` until interrupted."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    run_loop(lambda: serve(args.port), args.loop)
