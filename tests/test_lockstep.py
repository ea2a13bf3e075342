"""The lockstep state machine in-process (the client side is a recorder, not a socket).

Over real sockets it is tested in test_connect_dialects.py; here the bounds
that would take millions of lines to reach over a socket.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import linechat.client.lockstep as lockstep
from linechat.client.lockstep import Lockstep, LockstepEnding
from linechat.dialects.resp import Resp


class Recorder:
    """Stands where the connection would: keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.last_received = time.monotonic()

    def send_data(self, data: bytes) -> None:
        self.sent.append(data)


def session(as_json: bool, shown: list[bytes]) -> tuple[Lockstep, Recorder]:
    client = Recorder()
    state = Lockstep(
        client,  # type: ignore[arg-type]
        Resp(),
        keep_going=False,
        reply_timeout=30.0,
        wait=10.0,
        as_json=as_json,
        transcript=None,
        expected=None,
        write_lines=shown.extend,
    )
    return state, client


def test_lockstep_sends_the_next_line_only_after_the_reply() -> None:
    async def run() -> None:
        shown: list[bytes] = []
        state, client = session(False, shown)
        state.input.feed(b"PING\nGET k\n")
        state.input.eof()
        state.start()
        assert client.sent == [b"PING\r\n"]
        state.received(b"+PO")
        assert client.sent == [b"PING\r\n"]
        state.received(b"NG\r\n")
        assert client.sent == [b"PING\r\n", b"GET k\r\n"]
        state.received(b"$-1\r\n")
        assert await state.finished is LockstepEnding.FINISHED
        assert shown == [b"PONG", b"(nil)"]

    asyncio.run(run())


def test_json_holds_a_bounded_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockstep, "JSON_MAX_LINES", 100)

    async def run() -> None:
        shown: list[bytes] = []
        state, _ = session(True, shown)
        state.input.feed(b"LRANGE l 0 -1\n")
        state.start()
        state.received(b"*1000\r\n" + b"+x\r\n" * 1000)
        assert await state.finished is LockstepEnding.PROTOCOL
        assert "too long for --json" in state.detail
        assert len(state.exchange.reply) <= 101 + 1000  # one chunk's worth at most

    asyncio.run(run())
