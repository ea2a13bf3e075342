"""Terminal mode: a line editor (prompt_toolkit) with the server's lines above it.

Imported only when stdin and stdout are terminals: prompt_toolkit takes tens
of milliseconds to import, and pipe mode has no use for it.

Lines from the server are printed above the prompt the moment they arrive
(``print_formatted_text`` suspends and redraws the prompt, so what the user is
typing stays as it was), escaped so that nothing the server sends reaches the
terminal raw. What the user sent stays on screen after the prompt, in its own
colour; received lines are in the default colour, escapes in reverse video.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.lexers import SimpleLexer
from prompt_toolkit.output import ColorDepth
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style

from .display import escape_line, use_colour
from .pipe import Ending, linger
from .session import ClientProtocol

__all__ = ["default_history_path", "run_terminal"]

STYLE = Style.from_dict(
    {
        "prompt": "ansigreen bold",
        "sent": "ansigreen",
        "received": "",
        "escape": "reverse",
        "notice": "ansiyellow",
    }
)
PROMPT = FormattedText([("class:prompt", "> ")])


def default_history_path() -> Path:
    """``$XDG_STATE_HOME/linechat/history`` (``~/.local/state/linechat/history``)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "linechat" / "history"


class _ServerClosed(Exception):
    """Ends the prompt when the connection goes away."""


class Terminal:
    def __init__(self, client: ClientProtocol, history_path: Path | None) -> None:
        self.client = client
        self.color_depth = None if use_colour(True) else ColorDepth.DEPTH_1_BIT
        self.history: History = InMemoryHistory()
        if history_path is not None:
            try:
                history_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                history_path.touch(mode=0o600, exist_ok=True)
                self.history = FileHistory(str(history_path))
            except OSError as exc:
                self.notice(f"history not kept: cannot use {history_path}: {exc.strerror}")

    def show(self, lines: list[bytes]) -> None:
        fragments: list[tuple[str, str]] = []
        for line in lines:
            for is_escape, text in escape_line(line):
                fragments.append(("class:escape" if is_escape else "class:received", text))
            fragments.append(("", "\n"))
        print_formatted_text(
            FormattedText(fragments),
            end="",
            style=STYLE,
            color_depth=self.color_depth,
            include_default_pygments_style=False,
        )

    def notice(self, text: str) -> None:
        print_formatted_text(
            FormattedText([("class:notice", f"linechat connect: {text}")]),
            file=sys.stderr,
            style=STYLE,
            color_depth=self.color_depth,
            include_default_pygments_style=False,
        )

    async def run(self, wait: float | None) -> Ending:
        client = self.client
        session: PromptSession[str] = PromptSession(
            history=self.history,
            style=STYLE,
            lexer=SimpleLexer("class:sent"),
            color_depth=self.color_depth,
            include_default_pygments_style=False,
        )
        client.on_notice = self.notice
        client.set_receiver(self.show)
        closed = client.closed
        while not closed.done():
            prompt: asyncio.Future[str] = asyncio.ensure_future(session.prompt_async(PROMPT))
            either: list[asyncio.Future[Any]] = [prompt, closed]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not prompt.done():  # the server closed while the user was typing
                if session.app.is_running:
                    session.app.exit(exception=_ServerClosed())
                else:
                    prompt.cancel()
                await asyncio.wait({prompt}, timeout=5)
                with contextlib.suppress(BaseException):
                    prompt.result()
                break
            try:
                text = prompt.result()
            except EOFError:  # Ctrl-D on an empty line
                self.notice("end of input: waiting for the server to close")
                client.finish_sending()
                return await linger(client, wait)
            except KeyboardInterrupt:  # Ctrl-C
                client.abort()
                return Ending.INTERRUPTED
            for line in text.replace("\r\n", "\n").split("\n"):
                client.send_line(line.encode("utf-8", "replace"))
        return Ending.SERVER_CLOSED


async def run_terminal(
    client: ClientProtocol, *, history_path: Path | None, wait: float | None
) -> Ending:
    """Run the line editor until the server closes, Ctrl-D (then the server) or Ctrl-C."""
    return await Terminal(client, history_path).run(wait)
