"""The chat fan-out load generator against real servers: nothing lost, and it notices.

The C load generator (bench/chat/loadgen.c, built with make) runs for about a
second against the fan-out prototype (bench/chat/proto_server.py) and, when
the branch has it, ``linechat serve chat``. No figure is asserted, only that
every line reached every member, in order and intact; and that the generator
reports a server that drops or reorders lines, or an unread member it dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import linechat_command, require_tool
from tests.helpers import start_logged, stop_process

REPO = Path(__file__).resolve().parents[1]
LOADGEN = REPO / "bench" / "bin" / "chat-loadgen"
PROTO = REPO / "bench" / "chat" / "proto_server.py"


@pytest.fixture(scope="module")
def loadgen() -> Path:
    require_tool("make")
    require_tool("gcc")
    subprocess.run(
        ["make", "-s", "-C", str(REPO), "bench/bin/chat-loadgen"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return LOADGEN


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start a fan-out server (by argv) on a free port; stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> int:
        proc, port = start_logged(list(argv), tmp_path / f"server-{len(procs)}.log")
        procs.append(proc)
        return port

    yield start
    for proc in procs:
        stop_process(proc)


def proto(*extra: str) -> list[str]:
    return [sys.executable, str(PROTO), "--port", "0", "--loop", "asyncio", *extra]


def fanout(loadgen: Path, port: int, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the generator; its exit status, its result line and its stderr."""
    argv = [str(loadgen), "--port", str(port), "--max-pending", "32", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    results = [x for x in lines if x.get("mode") == "fanout"]
    assert results, f"no result from {argv}: {done.stdout}\n{done.stderr}"
    assert [x["event"] for x in lines if "event" in x] == ["measure_start", "measure_end"]
    return done.returncode, results[0], done.stderr


def chat_service_missing() -> bool:
    probe = "from linechat.services import BUILTIN; raise SystemExit('chat' not in BUILTIN)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode != 0


SERVERS = {
    "prototype": lambda: proto(),
    "linechat-chat": lambda: linechat_command(
        "serve", "chat", "--host", "127.0.0.1", "--port", "0", "--flood-rate", "0"
    ),
}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_every_line_reaches_every_member_in_order(
    name: str, loadgen: Path, server: Callable[..., int]
) -> None:
    if name == "linechat-chat" and chat_service_missing():
        pytest.skip("the chat service is not on this branch yet")
    port = server(*SERVERS[name]())
    code, result, err = fanout(loadgen, port, "-n", "30", "-t", "3", "-d", "1", "-w", "0.2")
    assert code == 0, err
    assert result["sent"] > 0
    assert result["deliveries"] > 0
    assert result["deliveries_total"] == result["expected"] == result["sent"] * 29
    for key in ("lost", "duplicated", "reordered", "corrupt", "error_replies"):
        assert result[key] == 0, (key, result, err)
    assert 0 < result["p50_us"] <= result["p99_us"] <= result["max_us"] + 1


def test_steady_rate_sends_what_it_says(loadgen: Path, server: Callable[..., int]) -> None:
    port = server(*proto())
    code, result, err = fanout(
        loadgen, port, "-n", "10", "-t", "2", "-d", "1", "-w", "0", "--rate", "100"
    )
    assert code == 0, err
    # 100 lines/s for 1 s per talker, give or take the first line and a tick.
    assert 2 * 95 <= result["sent"] <= 2 * 105, result
    assert result["lost"] == 0


@pytest.mark.parametrize(("fault", "key"), [("drop", "lost"), ("reorder", "reordered")])
def test_a_faulty_server_is_caught(
    fault: str, key: str, loadgen: Path, server: Callable[..., int]
) -> None:
    port = server(*proto("--fault", fault))
    code, result, _ = fanout(
        loadgen, port, "-n", "5", "-t", "1", "-d", "0.5", "-w", "0", "--drain-timeout", "1"
    )
    assert code == 1
    assert result[key] > 0, result


def test_a_member_that_stops_reading_is_dropped_and_costs_nothing(
    loadgen: Path, server: Callable[..., int]
) -> None:
    port = server(*proto("--sendq", "4096"))
    # 400-byte texts: the kernel takes up to 4 MiB (tcp_wmem) for the reader
    # that stopped before the server's own queue sees any of it.
    code, result, err = fanout(
        loadgen, port, "-n", "12", "-t", "2", "-s", "400", "-d", "3", "-w", "0", "--slow", "1"
    )
    assert code == 0, err
    assert result["slow_dropped"] == 1, result
    assert result["lost"] == 0
    assert result["deliveries_total"] == result["sent"] * 10  # the slow one is not counted


def test_idle_clients_register_and_are_released(loadgen: Path, server: Callable[..., int]) -> None:
    port = server(*proto())
    argv = [str(loadgen), "--idle", "--port", str(port), "-n", "50", "--hold", "30"]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as gen:
        assert gen.stdout is not None and gen.stdin is not None
        ready = json.loads(gen.stdout.readline())
        assert ready["event"] == "ready" and ready["clients"] == 50
        gen.stdin.close()
        assert gen.wait(30) == 0
        assert json.loads(gen.stdout.readline())["event"] == "released"
