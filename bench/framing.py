"""Framing benchmark: linechat's LineFramer against the alternatives, in one run.

Every implementation gets the same chunks and calls one Python method per line
(``line_received`` or its library's equivalent), which appends the line to a
list. The lists are compared with the ground truth (and so with the
``bytes.split`` floor) after every run: any difference makes the benchmark exit
with status 1.

Implementations:

* ``linechat``: ``for line in framer.feed(data): self.line_received(line)``.
* ``seed``: the seed's algorithm (a bytearray buffer; per line, the rest of the
  buffer is copied), written from its description.
* ``twisted-LOR`` / ``twisted-LR``: ``LineOnlyReceiver`` / ``LineReceiver``,
  ``dataReceived`` called directly (no reactor), ``lineReceived`` the callback.
* ``asynchat``: ``async_chat.handle_read`` with ``recv`` returning the chunk.
* ``readuntil``: ``asyncio.StreamReader.feed_data`` per chunk, a consumer task
  awaiting ``readuntil(b"\\r\\n")`` per line, delimiter stripped.
* ``split-floor``: ``bytes.split`` over tail + chunk, the tail carried.

Usage: ``python bench/framing.py [--quick] [--runs N] [--markdown FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineOnlyReceiver, LineReceiver

from linechat import LineFramer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat

DELIM = b"\r\n"
HUGE = 1 << 30  # line-length limits for the peers: never reached here
KIB = 1024

# -- the implementations -------------------------------------------------------
#
# Each class has ``data_received(chunk)`` (what an event loop would call) and
# collects its lines in ``self.lines`` through one Python call per line.


class LinechatSink:
    def __init__(self) -> None:
        self.framer = LineFramer(DELIM)  # default limit (64 KiB) stays on
        self.lines: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        for line in self.framer.feed(data):
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        self.lines.append(line)


class SplitFloor:
    """The floor: one C-level split per chunk, the unterminated tail carried."""

    def __init__(self) -> None:
        self.tail = b""
        self.lines: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        lines = (self.tail + data).split(DELIM)
        self.tail = lines.pop()
        for line in lines:
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        self.lines.append(line)


class SeedProtocol:
    """The seed's ChatProtocol framing: correct, no limit, quadratic per chunk.

    ``start`` keeps the search from rescanning a partial line (the kind reading
    of "searches from a start offset"); each line still copies the whole rest
    of the buffer.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.start = 0
        self.lines: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            idx = self.buffer.find(DELIM, self.start)
            if idx == -1:
                self.start = max(0, len(self.buffer) - len(DELIM) + 1)
                return
            line = bytes(self.buffer[:idx])
            self.buffer = self.buffer[idx + len(DELIM) :]
            self.start = 0
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        self.lines.append(line)


class _TwistedSink:
    """What both Twisted receivers need here: no limit, a fake transport, lines kept."""

    delimiter = DELIM
    MAX_LENGTH = HUGE

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.makeConnection(StringTransport())  # type: ignore[attr-defined,no-untyped-call]
        self.data_received = self.dataReceived  # type: ignore[attr-defined]

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)


class TwistedLineOnly(_TwistedSink, LineOnlyReceiver):
    pass


class TwistedLine(_TwistedSink, LineReceiver):
    pass


class AsynchatSink(asynchat.async_chat):
    """async_chat without a socket: ``recv`` hands out the chunk being fed."""

    def __init__(self) -> None:
        super().__init__()
        self.set_terminator(DELIM)
        self.ac_in_buffer_size = HUGE
        self.lines: list[bytes] = []
        self._parts: list[bytes] = []
        self._chunk = b""

    def recv(self, buffer_size: int) -> bytes:
        return self._chunk

    def data_received(self, data: bytes) -> None:
        self._chunk = data
        self.handle_read()

    def collect_incoming_data(self, data: bytes) -> None:
        self._parts.append(data)

    def found_terminator(self) -> None:
        line = b"".join(self._parts)
        self._parts.clear()
        self.lines.append(line)


class Sink(Protocol):
    lines: list[bytes]

    def data_received(self, data: bytes) -> None: ...


Runner = Callable[[Sequence[bytes]], tuple[int, list[bytes]]]


def sync_runner(factory: Callable[[], Sink]) -> Runner:
    def run(chunks: Sequence[bytes]) -> tuple[int, list[bytes]]:
        sink = factory()
        feed = sink.data_received
        t0 = time.process_time_ns()
        for chunk in chunks:
            feed(chunk)
        elapsed = time.process_time_ns() - t0
        return elapsed, sink.lines

    return run


class ReaduntilSink:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def line_received(self, line: bytes) -> None:
        self.lines.append(line)


def run_readuntil(chunks: Sequence[bytes]) -> tuple[int, list[bytes]]:
    """feed_data per chunk; a task awaits readuntil per line (loop set-up untimed)."""

    async def main() -> tuple[int, list[bytes]]:
        reader = asyncio.StreamReader(limit=HUGE)
        sink = ReaduntilSink()

        async def consume() -> None:
            while True:
                try:
                    line = await reader.readuntil(DELIM)
                except asyncio.IncompleteReadError:
                    return
                sink.line_received(line[: -len(DELIM)])

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        t0 = time.process_time_ns()
        for chunk in chunks:
            reader.feed_data(chunk)
            await asyncio.sleep(0)  # let the consumer take what this chunk completes
        reader.feed_eof()
        await consumer
        return time.process_time_ns() - t0, sink.lines

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


FLOOR = "split-floor"
LINECHAT = "linechat"

IMPLS: dict[str, Runner] = {
    LINECHAT: sync_runner(LinechatSink),
    FLOOR: sync_runner(SplitFloor),
    "twisted-LOR": sync_runner(TwistedLineOnly),
    "twisted-LR": sync_runner(TwistedLine),
    "seed": sync_runner(SeedProtocol),
    "asynchat": sync_runner(AsynchatSink),
    "readuntil": run_readuntil,
}

DESCRIPTIONS = {
    LINECHAT: "linechat `LineFramer.feed`",
    FLOOR: "`bytes.split` + carried tail (floor)",
    "twisted-LOR": "Twisted `LineOnlyReceiver`",
    "twisted-LR": "Twisted `LineReceiver`",
    "seed": "seed's algorithm (copy rest per line)",
    "asynchat": "`asynchat.async_chat`",
    "readuntil": "`asyncio.StreamReader.readuntil`",
}

# (implementation, scenario name) -> why it is left out. Nothing needs it at the
# default sizes: the seed and asynchat are quadratic in lines per chunk, but an
# 8 MB corpus in 64 KiB chunks still takes them well under a second.
SKIP: dict[tuple[str, str], str] = {}

# -- corpora -------------------------------------------------------------------

PRINTABLE = bytes(range(0x20, 0x7F))
TO_PRINTABLE = bytes(PRINTABLE[i % len(PRINTABLE)] for i in range(256))


def make_lines(seed: int, total: int, lo: int, hi: int) -> list[bytes]:
    """Seeded printable lines of lo..hi bytes, about ``total`` bytes with CRLFs."""
    rng = random.Random(seed)
    pool = rng.randbytes(max(4 * hi, 1 << 16)).translate(TO_PRINTABLE)
    lines: list[bytes] = []
    size = 0
    while size < total:
        n = rng.randint(lo, hi)
        at = rng.randrange(len(pool) - n)
        lines.append(pool[at : at + n])
        size += n + len(DELIM)
    return lines


@dataclass
class Scenario:
    name: str
    lines: list[bytes]
    chunk: int
    repeat: int = 1  # feeds per timed run (small corpora), the time is their mean
    data: bytes = b""
    chunks: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data = b"".join(line + DELIM for line in self.lines)
        step = self.chunk
        self.chunks = [self.data[i : i + step] for i in range(0, len(self.data), step)]


@dataclass
class Result:
    scenario: Scenario
    impl: str
    times: list[int] = field(default_factory=list)  # ns, one per run
    skipped: str = ""

    @property
    def median_s(self) -> float:
        return statistics.median(self.times) / 1e9

    @property
    def lines_per_s(self) -> float:
        return len(self.scenario.lines) / self.median_s

    @property
    def mb_per_s(self) -> float:
        return len(self.scenario.data) / 1e6 / self.median_s

    @property
    def ns_per_byte(self) -> float:
        return statistics.median(self.times) / len(self.scenario.data)


def scenarios(quick: bool) -> list[Scenario]:
    big = 1_000_000 if quick else 8_000_000
    # 1 B chunks: the small corpus is timed 4x as often, so both cover the same bytes.
    small = ((5_000, 4), (20_000, 1)) if quick else ((20_000, 8), (80_000, 2))
    short = make_lines(1, big, 8, 200)
    long = make_lines(2, big, 4 * KIB, 16 * KIB)
    out = [
        Scenario("short lines, 64 KiB chunks", short, 64 * KIB),
        Scenario("short lines, 1 KiB chunks", short, KIB),
        Scenario("long lines, 64 KiB chunks", long, 64 * KIB),
        Scenario("long lines, 1 KiB chunks", long, KIB),
    ]
    for size, repeat in small:
        name = f"short lines, 1 B chunks, {size // 1000} KB"
        out.append(Scenario(name, short_small(size), 1, repeat))
    return out


def short_small(size: int) -> list[bytes]:
    return make_lines(3, size, 8, 200)


# -- running -------------------------------------------------------------------


class Mismatch(Exception):
    pass


def timed(run: Runner, scenario: Scenario, impl: str) -> int:
    total = 0
    for _ in range(scenario.repeat):
        gc.collect()
        gc.disable()
        try:
            elapsed, lines = run(scenario.chunks)
        finally:
            gc.enable()
        if lines != scenario.lines:
            raise Mismatch(
                f"{impl} on {scenario.name!r}: {len(lines)} lines, expected {len(scenario.lines)}"
                f"{'' if len(lines) != len(scenario.lines) else ' (contents differ)'}"
            )
        total += elapsed
    return total // scenario.repeat


def bench(scenario: Scenario, runs: int, log: Callable[[str], None]) -> list[Result]:
    results = {name: Result(scenario, name) for name in IMPLS}
    active = []
    for name, run in IMPLS.items():
        reason = SKIP.get((name, scenario.name))
        if reason:
            results[name].skipped = reason
            continue
        timed(run, scenario, name)  # warm-up, and a first check of the lines
        active.append(name)
    for _ in range(runs):  # interleaved, so drift hits everyone alike
        for name in active:
            results[name].times.append(timed(IMPLS[name], scenario, name))
    log(f"  done: {scenario.name} ({len(scenario.lines)} lines, {len(scenario.data)} B)")
    return list(results.values())


# -- reporting -----------------------------------------------------------------


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def scenario_table(results: list[Result]) -> list[str]:
    by = {r.impl: r for r in results}
    floor, lc = by[FLOOR], by[LINECHAT]
    rows = [
        "| implementation | median ms | lines/s | MB/s | speed vs floor | linechat speedup |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in sorted(results, key=lambda r: r.median_s if r.times else float("inf")):
        if not r.times:
            rows.append(f"| {DESCRIPTIONS[r.impl]} | skipped: {r.skipped} | | | | |")
            continue
        rows.append(
            f"| {DESCRIPTIONS[r.impl]} | {r.median_s * 1e3:.1f} | {r.lines_per_s / 1e6:.2f} M"
            f" | {r.mb_per_s:.0f} | {fmt_ratio(floor.median_s / r.median_s)}"
            f" | {fmt_ratio(r.median_s / lc.median_s)} |"
        )
    return rows


def linearity_table(small: list[Result], large: list[Result]) -> list[str]:
    a, b = small[0].scenario, large[0].scenario
    rows = [
        f"| implementation | ns/byte at {len(a.data)} B | ns/byte at {len(b.data)} B | ratio |",
        "|---|--:|--:|--:|",
    ]
    for ra, rb in zip(small, large, strict=True):
        if not (ra.times and rb.times):
            rows.append(f"| {DESCRIPTIONS[ra.impl]} | skipped | skipped | |")
            continue
        rows.append(
            f"| {DESCRIPTIONS[ra.impl]} | {ra.ns_per_byte:.0f} | {rb.ns_per_byte:.0f}"
            f" | {fmt_ratio(rb.ns_per_byte / ra.ns_per_byte)} |"
        )
    return rows


LINEAR_LIMIT = 1.25  # ns/byte may grow by at most this when the corpus grows 4x


def targets_table(all_results: list[list[Result]]) -> list[str]:
    def get(res: list[Result], impl: str) -> Result:
        return next(r for r in res if r.impl == impl)

    short64 = all_results[0]
    lc = get(short64, LINECHAT)

    def speedup(res: list[Result], impl: str) -> float:
        return get(res, impl).median_s / get(res, LINECHAT).median_s

    rows = ["| target | measured | met |", "|---|--:|:-:|"]

    def add(target: str, value: float, ok: bool) -> None:
        rows.append(f"| {target} | {fmt_ratio(value)} | {'yes' if ok else '**no**'} |")

    floor_ratio = get(short64, FLOOR).median_s / lc.median_s
    add("short/64 KiB: linechat >= 0.8x the split floor", floor_ratio, floor_ratio >= 0.8)
    lor = speedup(short64, "twisted-LOR")
    add("short/64 KiB: linechat >= Twisted LineOnlyReceiver", lor, lor >= 1.0)
    seed = speedup(short64, "seed")
    add("short/64 KiB: linechat >= 4x the seed's algorithm", seed, seed >= 4.0)
    ru = speedup(short64, "readuntil")
    add("short/64 KiB: linechat >= 3x readuntil", ru, ru >= 3.0)
    worst = min(
        (speedup(res, r.impl), r.scenario.name, r.impl)
        for res in all_results
        for r in res
        if r.times and r.impl not in (LINECHAT, FLOOR)
    )
    add(
        f"every scenario: linechat >= every peer (closest: {worst[2]}, {worst[1]})",
        worst[0],
        worst[0] >= 1.0,
    )
    small, large = get(all_results[-2], LINECHAT), get(all_results[-1], LINECHAT)
    growth = large.ns_per_byte / small.ns_per_byte
    add(
        f"1 B chunks linear: ns/byte grows <= {LINEAR_LIMIT}x for a 4x corpus",
        growth,
        growth <= LINEAR_LIMIT,
    )
    short1k = all_results[1]
    rows.append(
        f"| (for information) short/1 KiB: linechat vs the seed / readuntil"
        f" | {fmt_ratio(speedup(short1k, 'seed'))} / {fmt_ratio(speedup(short1k, 'readuntil'))}"
        " | - |"
    )
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, nproc {os.cpu_count()}, {platform.python_implementation()}"
        f" {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def report(all_results: list[list[Result]], runs: int, command: str) -> str:
    out = [
        f"Machine: {machine()}",
        "",
        f"Command: `{command}`",
        "",
        f"Median of {runs} run(s) after one warm-up run each, runs interleaved across"
        " implementations. Time is the process's CPU time (`time.process_time_ns`: other"
        " processes on the machine disturb it less), GC off while timing. The 1 B corpora"
        " are fed several times per run, so both sizes time the same number of bytes."
        " MB = 10^6 bytes. Every implementation calls one Python method per line, which"
        " appends the line to a list; every list is checked equal to the corpus's lines"
        " after every run. *speed vs floor* = floor time / its time (higher is faster);"
        " *linechat speedup* = its time / linechat's time (above 1.00x: linechat is faster).",
        "",
    ]
    skipped = [r for res in all_results for r in res if r.skipped]
    for res in all_results[:-2]:
        out += [f"#### {res[0].scenario.name}", "", *scenario_table(res), ""]
    for res in all_results[-2:]:
        out += [f"#### {res[0].scenario.name}", "", *scenario_table(res), ""]
    out += [
        "#### 1 B chunks: time per byte as the corpus grows 4x",
        "",
        *linearity_table(all_results[-2], all_results[-1]),
        "",
        "#### Targets",
        "",
        *targets_table(all_results),
        "",
    ]
    if skipped:
        out += ["Skipped:", ""]
        out += [f"- {r.impl} on {r.scenario.name}: {r.skipped}" for r in skipped]
    else:
        out.append("Skipped: nothing; every implementation ran in every scenario.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small corpora, 1 run: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case (default 5)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    python = os.path.relpath(sys.executable) if sys.executable else "python"
    command = " ".join([python, "bench/framing.py", *(argv or sys.argv[1:])])
    all_results: list[list[Result]] = []
    try:
        for scenario in scenarios(args.quick):
            all_results.append(bench(scenario, runs, log))
    except Mismatch as exc:
        log(f"FAIL: lines differ: {exc}")
        return 1
    text = report(all_results, runs, command)
    print(text, end="")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
