"""The per-chunk cost of a server's Python side, without sockets.

Drives ``data_received`` of linechat's echo service (protocol layer and stream
layer, configured as ``linechat serve`` configures them: lenient framing, the
64 KiB line limit, the 300 s idle timeout, flow-control limits set), of the
bare split-once/write-once protocol of ``bench/echo/servers/bare_server.py``
and of the coroutine-per-line floor of ``coro_server.py``, with the chunks an
echo server gets at 1 line per chunk (the ``x1`` scenarios) and at 16 lines
per chunk (``x16``). The transport is a stand-in whose ``write`` is a C
no-op, so what is measured is exactly the Python work a server does per chunk
on top of the event loop's and the kernel's.

Two measures:

* ``--mode time`` (default): CPU ns per chunk, the implementations alternated
  in one process, median of ``--runs``.
* ``--mode callgrind``: instructions per chunk, exact and unaffected by load:
  each implementation runs under ``valgrind --tool=callgrind`` at two chunk
  counts; the difference of the totals over the difference of the counts.
* ``--mode bytecodes``: where the Python part goes, by function: bytecodes
  executed and Python-level calls per chunk (``sys.settrace`` with opcode
  events; exact, the traced run is slow).

    .venv/bin/python bench/hotpath.py --runs 7
    .venv/bin/python bench/hotpath.py --mode callgrind [--functions 20]
    .venv/bin/python bench/hotpath.py --mode callgrind --compiled   # pure and compiled
    .venv/bin/python bench/hotpath.py --mode bytecodes --only protocol,stream

``--compiled`` (callgrind mode) adds rows for linechat's optional compiled
build: the hot modules compiled by mypyc into ``build/compiled`` with the
shipped build hook (``hatch_build.py --out``, what ``make compiled`` does;
``--compiled-dir`` names a folder built before), each child run with that
folder first on ``PYTHONPATH`` and checked to have loaded the compiled modules.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import importlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "echo" / "servers"))

from benchlib import NullTransport, callgrind_instructions, run_as_callback  # noqa: E402

from linechat.services.echo import FRAMING, EchoProtocol, echo_handler  # noqa: E402
from linechat.stream import LineStream  # noqa: E402

# bench/echo/servers is a folder of scripts, not a package.
BareEcho: Any = importlib.import_module("bare_server").BareEcho
CoroEcho: Any = importlib.import_module("coro_server").CoroEcho


class CoroEchoNoTask(CoroEcho):  # type: ignore[misc]
    __slots__ = ()
    as_task = False


IMPLS = ("bare", "protocol", "stream", "coro", "coro-notask")
#: The floor of a coroutine resumed per line (bench/echo/servers/coro_server.py):
#: in its own context and as the current task (coro), or neither (coro-notask).
SHAPES = {"x1": 1, "x16": 16}
T = TypeVar("T")
LINE = b"x" * 30  # 32 bytes with CRLF, as the echo benchmark sends


def make(impl: str) -> Any:
    """A connected protocol of ``impl``, as ``linechat serve`` builds it (defaults)."""
    options: dict[str, Any] = {**FRAMING, "idle_timeout": 300.0}
    if impl == "bare":
        proto: Any = BareEcho()
    elif impl == "coro":
        proto = CoroEcho()
    elif impl == "coro-notask":
        proto = CoroEchoNoTask()
    elif impl == "protocol":
        proto = EchoProtocol(**options)
    else:
        proto = LineStream(echo_handler, **options)
    proto.connection_made(NullTransport())
    return proto


def driver(impl: str, lines_per_chunk: int) -> Callable[[int], None]:
    chunk = (LINE + b"\r\n") * lines_per_chunk
    proto = make(impl)

    def run(n: int) -> None:
        receive = proto.data_received
        for _ in range(n):
            receive(chunk)

    return run


def in_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` as a loop callback, outside any task, as a loop runs data_received.

    (A stream's handler is resumed inside data_received only when no other
    task is running.) A few loop turns first let stream handlers start.
    """
    return run_as_callback(asyncio.get_event_loop_policy().get_event_loop(), fn)


def settle() -> None:
    loop = asyncio.get_event_loop_policy().get_event_loop()
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))


def time_all(runs: int, chunks: int) -> dict[tuple[str, str], float]:
    """CPU ns per chunk, median of ``runs``, implementations alternated."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    drivers = in_loop(lambda: {(i, s): driver(i, n) for i in IMPLS for s, n in SHAPES.items()})
    settle()

    def measure() -> dict[tuple[str, str], float]:
        samples: dict[tuple[str, str], list[float]] = {k: [] for k in drivers}
        for run in drivers.values():
            run(chunks // 10)  # warm-up
        gc.disable()
        for _ in range(runs):
            for key, run in drivers.items():
                t0 = time.process_time_ns()
                run(chunks)
                samples[key].append((time.process_time_ns() - t0) / chunks)
        gc.enable()
        return {k: statistics.median(v) for k, v in samples.items()}

    return in_loop(measure)


def child(impl: str, shape: str, chunks: int) -> None:
    if os.environ.get("HOTPATH_COMPILED"):
        import linechat

        if not linechat.COMPILED:
            raise SystemExit(f"asked for the compiled build, got the pure one: {linechat.__file__}")
    asyncio.set_event_loop(asyncio.new_event_loop())
    run = in_loop(lambda: driver(impl, SHAPES[shape]))
    settle()
    in_loop(lambda: run(chunks))


def bytecodes(impl: str, shape: str, chunks: int = 200) -> list[tuple[str, float, float]]:
    """Bytecodes executed and calls made per chunk, by Python function, busiest first."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    run = in_loop(lambda: driver(impl, SHAPES[shape]))
    settle()
    in_loop(lambda: run(chunks))  # warm-up (adaptive specialisation settles)
    ops: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def name(frame: types.FrameType) -> str:
        code = frame.f_code
        return f"{Path(code.co_filename).stem}.{code.co_qualname}"

    def local(frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            ops[name(frame)] += 1
        return local

    def tracer(frame: types.FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "call":  # a call, or a generator or coroutine resumed
            calls[name(frame)] += 1
        return local

    def traced() -> None:
        sys.settrace(tracer)
        try:
            run(chunks)
        finally:
            sys.settrace(None)

    in_loop(traced)
    for key in [k for k in calls if k.startswith(("hotpath.", "benchlib."))]:
        del calls[key], ops[key]
    keys = sorted(set(ops) | set(calls), key=lambda k: -ops[k])
    return [(k, ops[k] / chunks, calls[k] / chunks) for k in keys]


def callgrind(
    impl: str, shape: str, low: int, high: int, functions: int = 0, compiled: str = ""
) -> tuple[float, list[tuple[str, float]]]:
    """Instructions per chunk; with ``functions``, the busiest C functions' own share.

    With ``compiled`` (a folder), of the compiled build found there.
    """
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same run every time
    if compiled:
        env.update(PYTHONPATH=compiled, HOTPATH_COMPILED="1")
    totals = []
    by_function: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (low, high):
            out_file = f"{tmp}/callgrind.{n}" if functions else "/dev/null"
            argv = [sys.executable, __file__, "--child", impl, shape, str(n)]
            totals.append(callgrind_instructions(argv, out_file, env))
            if functions:
                by_function.append(self_costs(out_file))
    per_chunk = (totals[1] - totals[0]) / (high - low)
    if not functions:
        return per_chunk, []
    low_costs, high_costs = by_function
    diffs = {f: (c - low_costs.get(f, 0)) / (high - low) for f, c in high_costs.items()}
    busiest = sorted(diffs.items(), key=lambda item: -item[1])[:functions]
    return per_chunk, busiest


ANNOTATED = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+\S*?:(\S+) \[")


def self_costs(out_file: str) -> dict[str, int]:
    """Instructions spent in each C function itself (``callgrind_annotate``)."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", out_file],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        match = ANNOTATED.match(line)
        if match:
            name = match.group(2)
            costs[name] = costs.get(name, 0) + int(match.group(1).replace(",", ""))
    return costs


def build_compiled() -> Path:
    """The shipped build hook, compiling into build/compiled (as ``make compiled``)."""
    out = REPO / "build" / "compiled"
    subprocess.run(
        [sys.executable, str(REPO / "hatch_build.py"), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["time", "callgrind", "bytecodes"], default="time")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument(
        "--functions", type=int, default=0, help="callgrind: also list the N busiest C functions"
    )
    parser.add_argument("--only", help="comma-separated implementations: " + ",".join(IMPLS))
    parser.add_argument(
        "--compiled", action="store_true", help="callgrind: also the mypyc-compiled build"
    )
    parser.add_argument(
        "--compiled-dir", type=Path, help="a compiled build made before (default: build it)"
    )
    parser.add_argument(
        "--callgrind-chunks",
        default="500,3000",
        help="callgrind: the two chunk counts LOW,HIGH (more: slower, less noise)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    impls = args.only.split(",") if args.only else list(IMPLS)
    if args.mode == "callgrind":
        low, high = (int(n) for n in args.callgrind_chunks.split(","))
        builds = [("", "")]
        if args.compiled or args.compiled_dir:
            builds.append((" (compiled)", str(args.compiled_dir or build_compiled())))
        print("| implementation | instructions/chunk, 1 line | 16 lines |")
        print("|---|--:|--:|")
        for impl in impls:
            for label, folder in builds:
                if folder and impl == "bare":
                    continue  # not linechat: nothing compiled
                figures = [callgrind(impl, shape, low, high, 0, folder)[0] for shape in SHAPES]
                print(f"| {impl}{label} | {figures[0]:,.0f} | {figures[1]:,.0f} |")
        for impl in impls if args.functions else ():
            total, busiest = callgrind(impl, "x1", low, high, args.functions)
            print(f"\n{impl}, 1 line per chunk, {total:,.0f} instructions: own cost by C function")
            print("| C function | instructions/chunk | share |")
            print("|---|--:|--:|")
            for name, cost in busiest:
                print(f"| `{name}` | {cost:,.0f} | {cost / total:.1%} |")
        return 0
    if args.mode == "bytecodes":
        for impl in impls:
            rows = bytecodes(impl, "x1")
            total = sum(r[1] for r in rows)
            ncalls = sum(r[2] for r in rows)
            print(
                f"\n{impl}, 1 line per chunk: {total:.0f} bytecodes, {ncalls:.0f} calls/resumptions"
            )
            print("| function | bytecodes/chunk | calls or resumptions/chunk |")
            print("|---|--:|--:|")
            for key, n_ops, n_calls in rows:
                print(f"| `{key}` | {n_ops:.0f} | {n_calls:.2f} |")
        return 0
    if args.compiled or args.compiled_dir:
        parser.error("--compiled needs --mode callgrind (one process cannot load both builds)")
    result = time_all(args.runs, args.chunks)
    print(f"CPU ns per chunk, median of {args.runs} runs of {args.chunks:,} chunks, alternated")
    print("| implementation | 1 line/chunk | vs bare | 16 lines/chunk | vs bare |")
    print("|---|--:|--:|--:|--:|")
    for impl in impls:
        cells = []
        for shape in SHAPES:
            ns = result[impl, shape]
            cells.append(f"{ns:,.0f} | {result['bare', shape] / ns:.2f}x")
        print(f"| {impl} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
