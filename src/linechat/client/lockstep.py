"""Lockstep pipe mode: each input line sent only once the previous reply is complete.

A :class:`~linechat.dialects.base.Dialect` says when a reply is complete and
whether it is an error; this module does the rest with callbacks, no task
or future per command: received bytes go to the dialect, and the end of a
reply sends the next input line there and then. Input is read ahead in
chunks (bounded: stdin is paused while many lines wait), replies are
printed as they come, or as one JSON object per exchange, or compared with
a transcript (:mod:`.expect`).
"""

from __future__ import annotations

import enum
import time
from collections import deque

from ..dialects.base import Dialect, DialectError, Done, Send
from .display import escape_text

# No asyncio at import: the asyncio-free client (.plain) runs this state
# machine on its own poll loop; run_lockstep imports what asyncio needs.
TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable
    from typing import Any

    from .expect import Expected
    from .pipe import Feeder, Output
    from .session import ClientProtocol
    from .transcript import Transcript

__all__ = ["Exchange", "LockstepEnding", "LockstepResult", "run_lockstep"]

#: Input lines read ahead before stdin is paused.
READ_AHEAD = 4096
#: Output is written at most this long after it came (one write for many replies).
OUTPUT_DELAY = 0.02
OUTPUT_LINES = 1024
#: With --json a reply is held until it ends; past this many lines it is refused.
JSON_MAX_LINES = 1_000_000


class LockstepEnding(enum.Enum):
    """How a lockstep session ended (a failed connection is ``ConnectError``)."""

    FINISHED = "every input line was sent and every reply came"
    ERROR_REPLY = "an error reply stopped the script"
    TIMEOUT = "a reply did not complete in time"
    LOST = "the connection was lost in the middle of a reply"
    SERVER_CLOSED = "the server closed the connection between replies"
    PROTOCOL = "the server broke the dialect's rules"
    MISMATCH = "a reply differed from the transcript"
    INPUT_INCOMPLETE = "the input ended in the middle of a command"
    OUTPUT_CLOSED = "stdout was closed"


class Exchange:
    """One command (with its data) and its reply; the greeting has nothing sent."""

    __slots__ = ("data", "error", "heard", "reply", "started", "wire")

    def __init__(self, started: float, newline: bytes = b"\r\n") -> None:
        self.started = started
        self.data: list[bytes] = []  # as sent, line ends included
        self.reply: list[bytes] = []  # lines as shown (kept for --json only)
        self.heard = False  # some of the reply has come
        self.wire: list[bytes] = []  # received lines as they came (for --expect)
        self.error = False

    @property
    def sent(self) -> list[bytes]:
        """The lines sent, without their ends."""
        return b"".join(self.data).splitlines()


class LockstepResult:
    """How a session ended, with its counts (a plain class: no dataclasses import)."""

    __slots__ = ("detail", "ending", "errors", "exchanges", "read_error")

    def __init__(
        self,
        ending: LockstepEnding,
        errors: int = 0,
        exchanges: int = 0,
        detail: str = "",
        read_error: OSError | None = None,
    ) -> None:
        self.ending = ending
        self.errors = errors
        self.exchanges = exchanges
        #: For people: which reply failed and how (the timeout, the diff, the rule broken).
        self.detail = detail
        self.read_error = read_error

    def __repr__(self) -> str:
        return f"LockstepResult({self.ending}, errors={self.errors}, exchanges={self.exchanges})"


class _Lines:
    """Input lines (LF or CRLF ended) for the session, read ahead a bounded amount."""

    def __init__(self, on_more: Callable[[], None]) -> None:
        self.lines: deque[bytes] = deque()
        self.ended = False
        self.error: OSError | None = None
        self.on_more = on_more
        self.pause: Callable[[], None] | None = None
        self.resume: Callable[[], None] | None = None
        self.paused = False
        self._partial = b""

    def feed(self, data: bytes) -> None:
        if self.ended:
            return
        parts = (self._partial + data).split(b"\n")
        self._partial = parts.pop()
        self.lines.extend(part[:-1] if part.endswith(b"\r") else part for part in parts)
        if len(self.lines) > READ_AHEAD and self.pause is not None and not self.paused:
            self.paused = True
            self.pause()
        self.on_more()

    def eof(self, error: OSError | None = None) -> None:
        if self.ended:
            return
        if self._partial:
            self.lines.append(self._partial.removesuffix(b"\r"))
            self._partial = b""
        self.ended = True
        self.error = error
        self.on_more()

    def take(self) -> bytes | None:
        if not self.lines:
            return None
        line = self.lines.popleft()
        if self.paused and len(self.lines) < READ_AHEAD // 2 and self.resume is not None:
            self.paused = False
            self.resume()
        return line


class Lockstep:
    """One session's state: the dialect, the exchange in progress, the outcome."""

    def __init__(
        self,
        client: ClientProtocol,
        dialect: Dialect,
        *,
        keep_going: bool,
        reply_timeout: float | None,
        wait: float | None,
        as_json: bool,
        transcript: Transcript | None,
        expected: Expected | None,
        write_lines: Callable[[list[bytes]], None],
        loop: Any = None,
    ) -> None:
        # loop makes the timers and the finished future: asyncio's running loop
        # by default, or the asyncio-free client's own (see .plain).
        if loop is None:
            import asyncio

            loop = asyncio.get_running_loop()
        self.client = client
        self.dialect = dialect
        self.keep_going = keep_going
        self.reply_timeout = reply_timeout
        self.wait = wait
        self.as_json = as_json
        self.transcript = transcript
        self.expected = expected
        self.write_lines = write_lines
        self.loop = loop
        self.input = _Lines(self._pump)
        self.errors = 0
        self.count = 0
        self.exchange = Exchange(started=time.monotonic())
        self.finished: asyncio.Future[LockstepEnding] = self.loop.create_future()
        self.detail = ""
        self._stopping = False  # after an error reply: only the polite quit is sent
        self._quit_sent = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._silence: asyncio.TimerHandle | None = None
        self._silent_since = 0.0  # when the command whose reply ends in silence was sent
        self._wire_partial = b""
        self._split_wire = transcript is not None or expected is not None

    # -- sending -------------------------------------------------------------

    def start(self) -> None:
        if self.dialect.waiting:
            self._arm()
        self._pump()

    def _pump(self) -> None:
        """Send input lines until a reply is awaited or the input runs out."""
        dialect = self.dialect
        while not dialect.waiting and not self.finished.done():
            if self._stopping:
                self._quit()
                return
            line = self.input.take()
            if line is None:
                if self.input.ended:
                    self._input_done()
                return
            data = dialect.submit(line)
            if not data:
                continue
            exchange = self.exchange
            if not exchange.data and not exchange.heard:
                exchange.started = time.monotonic()
            exchange.data.append(data)
            if self.transcript is not None:
                self.transcript.sent(data.split(dialect.newline)[:-1])
            self.client.send_data(data)
            if dialect.waiting:
                self._arm()
            elif not dialect.needs_input:  # no reply to it (noreply, IRC NICK before USER)
                if self.as_json:
                    self._json(self.exchange)
                self.exchange = Exchange(started=time.monotonic())

    def _quit(self) -> None:
        dialect = self.dialect
        if self._quit_sent or dialect.quit is None or dialect.needs_input:
            self._end(LockstepEnding.ERROR_REPLY)
            return
        self._quit_sent = True
        self.exchange = Exchange(started=time.monotonic())
        data = dialect.submit(dialect.quit)
        self.exchange.data.append(data)
        if self.transcript is not None:
            self.transcript.sent(data.split(dialect.newline)[:-1])
        self.client.send_data(data)
        if dialect.waiting:
            self._arm()
        else:
            self._end(LockstepEnding.ERROR_REPLY)

    def _input_done(self) -> None:
        if self.dialect.needs_input:
            self.detail = "the input ended before the command's data did"
            self._end(LockstepEnding.INPUT_INCOMPLETE)
        else:
            self._end(LockstepEnding.FINISHED)

    def _arm(self) -> None:
        """A reply is awaited from now: start its clock (one timer for many replies)."""
        if self.reply_timeout is not None:
            self._deadline = time.monotonic() + self.reply_timeout
            if self._timer is None:
                self._timer = self.loop.call_later(self.reply_timeout, self._watch)
        if self.dialect.silence_ends:
            self._silent_since = time.monotonic()
            self._watch_silence()

    def _watch(self) -> None:
        self._timer = None
        if self._deadline is None or self.finished.done():
            return
        left = self._deadline - time.monotonic()
        if left > 0:
            self._timer = self.loop.call_later(left, self._watch)
            return
        waited = f"{self.reply_timeout:g} s"
        self.detail = f"no complete reply within {waited}{self._to()}"
        self._show_partial()
        self._end(LockstepEnding.TIMEOUT)

    def _watch_silence(self) -> None:
        if self.wait is None or self._silence is not None:
            return
        self._silence = self.loop.call_later(self.wait, self._silence_check)

    def _silence_check(self) -> None:
        self._silence = None
        if not self.dialect.silence_ends or not self.dialect.waiting:
            return
        quiet = time.monotonic() - max(self._silent_since, self.client.last_received)
        if self.wait is not None and quiet < self.wait:
            self._silence = self.loop.call_later(self.wait - quiet, self._silence_check)
            return
        self._events(self.dialect.silence())

    def _to(self) -> str:
        sent = self.exchange.sent
        if not sent:
            return " (the greeting)"
        return f" to {escape_text(sent[0])!r}"

    # -- receiving -------------------------------------------------------------

    def received(self, data: bytes, *, recorded: bool = False) -> None:
        """Bytes from the server (``recorded``: already in the transcript)."""
        if self.finished.done():
            return
        try:
            if self._split_wire:
                parts = (self._wire_partial + data).split(b"\n")
                self._wire_partial = parts.pop()
                for part in parts:
                    line = part[:-1] if part.endswith(b"\r") else part
                    if self.transcript is not None and not recorded:
                        self.transcript.received([line])
                    self.exchange.wire.append(line)
                    self._events(self.dialect.feed(part + b"\n"))
                    if self.finished.done():
                        return
            else:
                self._events(self.dialect.feed(data))
        except DialectError as exc:
            self.detail = f"not {self.dialect.name}: {exc}"
            self._end(LockstepEnding.PROTOCOL)

    def received_lines(self, lines: list[bytes]) -> None:
        """Lines split before lockstep took over (the greeting, after STARTTLS)."""
        for line in lines:
            self.received(line + b"\r\n", recorded=True)

    def _events(self, events: Iterable[bytes | Done | Send]) -> None:
        shown: list[bytes] = []
        for event in events:
            if isinstance(event, bytes):
                shown.append(event)
            elif isinstance(event, Send):
                self.client.send_data(event.data)
                if self.transcript is not None:  # a note: --expect must not send it again
                    for line in event.data.split(self.dialect.newline)[:-1]:
                        self.transcript.note(f"sent by itself: {escape_text(line)}")
            else:
                self._show(shown)
                shown = []
                if self.finished.done():
                    return
                self._done(event)
                if self.finished.done():
                    return
        if shown:
            self._show(shown)
        if self.dialect.silence_ends and self.dialect.waiting:
            self._watch_silence()

    def _show(self, lines: list[bytes]) -> None:
        self.exchange.heard = True
        if self.as_json:
            reply = self.exchange.reply
            reply.extend(lines)
            if len(reply) > JSON_MAX_LINES:  # held until the reply ends: bounded
                self.detail = f"a reply of more than {JSON_MAX_LINES:,} lines: too long for --json"
                self._end(LockstepEnding.PROTOCOL)
        else:
            self.write_lines(lines)

    def _done(self, done: Done) -> None:
        exchange = self.exchange
        exchange.error = done.error
        self.count += 1
        self._deadline = None
        if self.as_json:
            self._json(exchange)
        self.exchange = Exchange(started=time.monotonic())
        if self.expected is not None:
            difference = self.expected.check(exchange)
            if difference is not None:
                self.detail = difference
                self._end(LockstepEnding.MISMATCH)
                return
        if done.error:
            self.errors += 1
            if not self.keep_going and not self._stopping and self.expected is None:
                self._stopping = True
        if self._quit_sent:
            self._end(LockstepEnding.ERROR_REPLY)
            return
        if self.dialect.waiting:  # a reply ended, the next (a greeting's follow-up) began
            self._arm()
        self._pump()

    def _json(self, exchange: Exchange) -> None:
        import json  # only for --json

        record = {
            "sent": [_text(line) for line in exchange.sent],
            "reply": [_text(line) for line in exchange.reply],
            "status": "error" if exchange.error else "ok",
            "elapsed_ms": round((time.monotonic() - exchange.started) * 1000, 3),
        }
        self.write_lines([json.dumps(record).encode()])

    def _show_partial(self) -> None:
        if self.as_json and (self.exchange.reply or self.exchange.data):
            self.exchange.error = True
            self._json(self.exchange)

    # -- the end -----------------------------------------------------------------

    def connection_closed(self) -> None:
        if self.finished.done():
            return
        if self._quit_sent or self._stopping:  # the server did not wait for our quit
            self._end(LockstepEnding.ERROR_REPLY)
        elif self.dialect.waiting or self.dialect.mid_reply:
            self.detail = f"the connection closed in the middle of the reply{self._to()}"
            self._show_partial()
            self._end(LockstepEnding.LOST)
        else:
            self._end(LockstepEnding.SERVER_CLOSED)

    def _end(self, ending: LockstepEnding) -> None:
        for timer in (self._timer, self._silence):
            if timer is not None:
                timer.cancel()
        self._timer = self._silence = None
        if not self.finished.done():
            self.finished.set_result(ending)


class _Batched:
    """stdout in batches: one write for the replies that came within OUTPUT_DELAY."""

    def __init__(self, output: Output, loop: Any = None) -> None:
        if loop is None:
            import asyncio

            loop = asyncio.get_running_loop()
        self.output = output
        self.loop = loop
        self.pending: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None

    @property
    def broken(self) -> bool:
        return self.output.broken

    def show(self, lines: list[bytes]) -> None:
        self.pending.extend(lines)
        if len(self.pending) > OUTPUT_LINES:
            self.flush()
        elif self.timer is None and self.pending:
            self.timer = self.loop.call_later(OUTPUT_DELAY, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending:
            lines, self.pending = self.pending, []
            self.output.write_lines(lines)

    async def aclose(self) -> None:
        self.flush()
        await self.output.aclose()


def _text(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace")


async def run_lockstep(
    client: ClientProtocol,
    dialect: Dialect,
    *,
    keep_going: bool = False,
    reply_timeout: float | None = 30.0,
    wait: float | None = 10.0,
    as_json: bool = False,
    transcript: Transcript | None = None,
    expected: Expected | None = None,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> LockstepResult:
    """Run a script in lockstep: input from ``expected`` (a transcript) or ``stdin_fd``.

    ``wait`` is how long a silent server means the end of a reply that has
    no other end (IRC); ``reply_timeout`` bounds each reply.
    """
    import asyncio
    import contextlib
    import os

    from .pipe import open_input, open_output

    output = _Batched(await open_output(stdout_fd, client))
    session = Lockstep(
        client,
        dialect,
        keep_going=keep_going,
        reply_timeout=reply_timeout,
        wait=wait,
        as_json=as_json,
        transcript=transcript,
        expected=expected,
        write_lines=output.show,
    )
    if transcript is not None:
        transcript.note(f"dialect {dialect.name}")
    stop_input: Callable[[], None] | None = None
    client.closed.add_done_callback(lambda _: session.connection_closed())
    try:
        client.set_raw_receiver(session.received_lines, session.received)
        session.start()
        if expected is not None:
            for line in expected.inputs():
                session.input.lines.append(line)
            session.input.eof()
        else:
            feeder: Feeder = session.input
            paused, stop_input = await open_input(stdin_fd, feeder)
            session.input.pause = paused.pause_reading
            session.input.resume = paused.resume_reading
        ending = await session.finished
        output.flush()
        if output.broken:
            ending = LockstepEnding.OUTPUT_CLOSED
    finally:
        output.flush()
        if stop_input is not None:
            stop_input()
        if not client.closed.done():
            client.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(client.closed), 2)
            if not client.closed.done():
                client.abort()
        with contextlib.suppress(OSError):
            await output.aclose()
        for fd in (stdin_fd, stdout_fd):
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
    return LockstepResult(
        ending=ending,
        errors=session.errors,
        exchanges=session.count,
        detail=session.detail,
        read_error=session.input.error,
    )
