"""The floor for a coroutine handler: one coroutine per connection, resumed per line.

What a stream layer cannot do without: the handler ``async for line in
stream: stream.write_line(...)`` is a coroutine, and each line resumes it.
Here ``data_received`` splits the chunk once (the unfinished tail carried
over, as ``bare_server.py`` does) and sends each line straight into the
coroutine (``coro.send(line)``), which appends its reply; the chunk's
replies leave in one ``transport.write``. The coroutine runs in its own
``contextvars.Context`` and as asyncio's current task, as any task does
(``--no-task``: neither, the bare minimum). No limits, no flow control, no
timeouts. A line holding only ``.`` ends the handler and closes.
Runs on asyncio or uvloop (``--loop``).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from asyncio import tasks as _tasks
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, cast

from _runner import run_server, serve_protocol

_WAIT: Any = object()
_enter_task = cast(Callable[[Any, Any], None], _tasks._enter_task)
_leave_task = cast(Callable[[Any, Any], None], _tasks._leave_task)


class CoroEcho(asyncio.Protocol):
    """A connection whose handler coroutine is resumed with each line."""

    __slots__ = ("context", "coro", "loop", "out", "tail", "transport")

    #: Run the coroutine in its own context, as asyncio's current task (a Task's duties).
    as_task = True

    def __init__(self) -> None:
        self.tail = b""
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.coro = self.handler()
        self.context = contextvars.copy_context()
        self.loop: Any = None

    async def handler(self) -> None:
        async for line in self:
            if line == b".":
                return
            self.out.append(b"You sent: " + line + b"\r\n")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    @types.coroutine
    def __anext__(self) -> Generator[Any, bytes, bytes]:
        return (yield _WAIT)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: cast, do not check.
        self.transport = cast(asyncio.Transport, transport)
        self.loop = asyncio.get_running_loop()
        self.coro.send(None)  # to its first read

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.tail:
            data = self.tail + data
        lines = data.split(b"\r\n")
        self.tail = lines.pop()
        if not lines:
            return
        done = False
        if self.as_task:
            loop, context, send, coro = self.loop, self.context, type(self.coro).send, self.coro
            _enter_task(loop, self)
            try:
                for line in lines:
                    context.run(send, coro, line)
            except StopIteration:
                done = True
            finally:
                _leave_task(loop, self)
        else:
            resume = self.coro.send
            try:
                for line in lines:
                    resume(line)
            except StopIteration:
                done = True
        out = self.out
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if done:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.coro.close()


async def serve(port: int) -> None:
    await serve_protocol(CoroEcho, port)


if __name__ == "__main__":
    if "--no-task" in sys.argv:
        sys.argv.remove("--no-task")
        CoroEcho.as_task = False
    run_server(serve, __doc__)
