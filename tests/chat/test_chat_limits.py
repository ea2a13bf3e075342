"""Slow consumers and floods: one client's trouble costs the others nothing."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

import pytest

from tests.chat.conftest import IRC
from tests.conftest import Served

Connect = Callable[..., IRC]


def test_flood_burst_then_delay_then_excess_flood(
    chat: Callable[..., Served], clients: Connect
) -> None:
    served = chat("--flood-burst", "5", "--flood-rate", "2")
    flooder = clients(served.port)
    flooder.send("NICK flooder", "USER u 0 * :x")  # 2 of the 5 lines
    flooder.expect(" 422 ")
    start = time.monotonic()
    flooder.send(*(f"PING :n{i}" for i in range(8)))
    for i in range(8):
        flooder.expect(f"PONG \\S+ :n{i}$")
    # 3 lines left in the burst, the other 5 come at 2 a second.
    assert time.monotonic() - start >= 1.5
    # A client that goes on sending while delayed is dropped.
    flooder.sock.sendall(b"PRIVMSG nobody :" + b"x" * 400 + b"\r\n" * 1 * 1)
    payload = b"".join(b"PING :f%d\r\n" % i for i in range(2000))
    with contextlib.suppress(OSError):
        flooder.sock.sendall(payload)
    assert flooder.expect("^ERROR") == b"ERROR :Closing Link: 127.0.0.1 (Excess Flood)"


def test_default_flood_control_lets_a_paste_of_20_lines_through(
    chat: Callable[..., Served], clients: Connect
) -> None:
    served = chat()
    paster, reader = clients(served.port), clients(served.port)
    paster.register("paster")
    reader.register("reader")
    paster.send("JOIN #paste")
    paster.expect(" 366 ")
    reader.send("JOIN #paste")
    reader.expect(" 366 ")
    paster.expect("reader!\\S+ JOIN")
    paster.send(*(f"PRIVMSG #paste :line {i}" for i in range(20)))
    for i in range(20):
        reader.expect(f"PRIVMSG #paste :line {i}$", timeout=10)


def test_flood_rate_0_turns_it_off(chat: Callable[..., Served], clients: Connect) -> None:
    served = chat("--flood-rate", "0", "--flood-burst", "1")
    client = clients(served.port)
    client.register("fast")
    client.send(*(f"PING :p{i}" for i in range(300)))
    start = time.monotonic()
    client.expect("PONG \\S+ :p299$")
    assert client.seen[-1].endswith(b":p299")
    assert time.monotonic() - start < 30  # bounded wait only; no delay was imposed


def test_a_client_that_stops_reading_is_dropped_for_sendq_and_others_go_on(
    chat: Callable[..., Served], clients: Connect
) -> None:
    served = chat("--flood-rate", "0", "--sendq", "65536")
    talker, fast = clients(served.port), clients(served.port)
    slow = socket.create_connection(("127.0.0.1", served.port))
    try:
        slow.sendall(b"NICK slow\r\nUSER u 0 * :x\r\nJOIN #sq\r\n")
        talker.register("talker")
        fast.register("fast")
        talker.send("JOIN #sq")
        talker.expect(" 366 ")
        fast.send("JOIN #sq")
        fast.expect(" 366 ")
        talker.expect("fast!\\S+ JOIN")
        line = ("PRIVMSG #sq :" + "z" * 460 + "\r\n").encode()
        relayed = b":talker!~u@127.0.0.1 PRIVMSG #sq :" + b"z" * 460 + b"\r\n"
        # Blocks of 1000 lines (~0.5 MB a member) until the kernel's buffers and the
        # 64 KiB send queue are full; bounded at 40 blocks.
        fast.sock.settimeout(10)
        dropped = False
        for _ in range(40):
            talker.sock.sendall(line * 1000)
            got = fast.buffer
            while got.count(relayed) < 1000:  # the reading member gets every line, in bulk
                chunk = fast.sock.recv(1 << 20)
                assert chunk
                got += chunk
            others = got.replace(relayed, b"")
            assert others in (b"", b":slow!~u@127.0.0.1 QUIT :Max SendQ exceeded\r\n")
            fast.buffer = b""
            if any(b"QUIT" in seen for seen in talker.quiet(0.05)):
                dropped = True
                break
        assert dropped, "the slow client was never dropped"
        assert talker.seen[-1] == b":slow!~u@127.0.0.1 QUIT :Max SendQ exceeded"
        # The slow client, reading at last, finds the reason at the end.
        slow.settimeout(10)
        data = b""
        while chunk := slow.recv(65536):
            data += chunk
        assert data.endswith(b"ERROR :Closing Link: 127.0.0.1 (Max SendQ exceeded)\r\n")
    finally:
        slow.close()
    talker.send("PRIVMSG #sq :after")
    fast.expect("PRIVMSG #sq :after$")


@pytest.mark.parametrize("size", [1024])
def test_garbage_gets_an_error_not_a_disconnect(
    shared_chat: Served, clients: Connect, size: int
) -> None:
    client = clients(shared_chat.port)
    client.register("garbage")
    client.sock.sendall(bytes(range(1, 256)).replace(b"\n", b"").replace(b"\r", b"") * 4 + b"\r\n")
    client.expect(" 417 garbage ")
    client.sock.sendall(b"\xff\xfe\x00 bad\r\n\x00\r\n:x\r\n")
    client.expect(" 421 garbage ")
    client.send("PING :ok")
    client.expect("PONG \\S+ :ok")
