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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.lexers import SimpleLexer
from prompt_toolkit.output import ColorDepth
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style

from .display import escape_line, escape_text, use_colour
from .pipe import Ending, linger
from .session import ClientProtocol

if TYPE_CHECKING:
    from ..dialects.base import Dialect

__all__ = ["default_history_path", "run_terminal"]

STYLE = Style.from_dict(
    {
        "prompt": "ansigreen bold",
        "sent": "ansigreen",
        "received": "",
        "escape": "reverse",
        "notice": "ansiyellow",
        "error": "ansired bold",
        "bottom-toolbar": "noreverse",
        "waiting": "ansiyellow",
        "ready": "ansigreen",
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
    def __init__(
        self, client: ClientProtocol, history_path: Path | None, dialect: Dialect | None = None
    ) -> None:
        self.client = client
        self.dialect = dialect
        self.sent_at = time.monotonic()
        self.last_command = ""
        self.color_depth = None if use_colour(True) else ColorDepth.DEPTH_1_BIT
        self.history: History = InMemoryHistory()
        if history_path is not None:
            try:
                history_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                history_path.touch(mode=0o600, exist_ok=True)
                self.history = FileHistory(str(history_path))
            except OSError as exc:
                self.notice(f"history not kept: cannot use {history_path}: {exc.strerror}")

    def show(self, lines: list[bytes], style: str = "class:received") -> None:
        fragments: list[tuple[str, str]] = []
        for line in lines:
            for is_escape, text in escape_line(line):
                fragments.append(("class:escape" if is_escape else style, text))
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

    # -- with a dialect: replies parsed, errors coloured, the server's state shown --

    def received(self, data: bytes) -> None:
        """Bytes from the server, through the dialect: error replies in red."""
        from ..dialects.base import DialectError, Done, Send

        dialect = self.dialect
        if dialect is None:
            return
        try:
            events = dialect.feed(data)
        except DialectError as exc:
            from ..dialects.line import Line

            self.notice(f"not {dialect.name} ({exc}): showing lines as they come")
            self.dialect = Line(newline=dialect.newline)  # no rules from now on
            return
        reply: list[bytes] = []
        for event in events:
            if isinstance(event, bytes):
                reply.append(event)
            elif isinstance(event, Send):
                self.client.send_data(event.data)
            elif isinstance(event, Done):
                self.show(reply, "class:error" if event.error else "class:received")
                reply = []
        if reply:
            self.show(reply)

    def received_lines(self, lines: list[bytes]) -> None:
        for line in lines:
            self.received(line + b"\r\n")

    def send(self, line: bytes) -> None:
        if self.dialect is None:
            self.client.send_line(line)
            return
        data = self.dialect.submit(line)
        if data:
            self.last_command = escape_text(data.split(b"\n", 1)[0].rstrip(b"\r"))[:40]
            self.sent_at = time.monotonic()
            self.client.send_data(data)

    def toolbar(self) -> FormattedText:
        """Whether the server is still answering: shown under the prompt."""
        dialect = self.dialect
        if dialect is None:
            return FormattedText([])
        if dialect.waiting:
            since = time.monotonic() - max(self.sent_at, self.client.last_received)
            busy = time.monotonic() - self.sent_at
            what = f"the reply to {self.last_command}" if self.last_command else "the greeting"
            text = f" {dialect.name}: waiting for {what} ({busy:.0f} s"
            text += f", silent {since:.0f} s)" if since >= 2 else ")"
            return FormattedText([("class:waiting", text)])
        if dialect.needs_input:
            return FormattedText([("class:ready", f" {dialect.name}: go ahead (data)")])
        return FormattedText([("class:ready", f" {dialect.name}: ready")])

    async def run(self, wait: float | None) -> Ending:
        client = self.client
        dialect = self.dialect
        extra: dict[str, Any] = {}
        if dialect is not None:
            extra = {
                "completer": WordCompleter(list(dialect.commands), ignore_case=True),
                "complete_while_typing": False,
                "bottom_toolbar": self.toolbar,
                "refresh_interval": 0.5,
            }
        session: PromptSession[str] = PromptSession(
            history=self.history,
            style=STYLE,
            lexer=SimpleLexer("class:sent"),
            color_depth=self.color_depth,
            include_default_pygments_style=False,
            **extra,
        )
        client.on_notice = self.notice
        if dialect is None:
            client.set_receiver(self.show)
        else:
            client.set_raw_receiver(self.received_lines, self.received)
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
                self.send(line.encode("utf-8", "replace"))
        return Ending.SERVER_CLOSED


async def run_terminal(
    client: ClientProtocol,
    *,
    history_path: Path | None,
    wait: float | None,
    dialect: Dialect | None = None,
) -> Ending:
    """Run the line editor until the server closes, Ctrl-D (then the server) or Ctrl-C.

    With a ``dialect``, the user is the clock (lines are sent as typed), but
    replies are parsed: error replies in red, the dialect's commands offered
    on Tab, and a bar under the prompt says whether a reply is still awaited.
    """
    return await Terminal(client, history_path, dialect).run(wait)
