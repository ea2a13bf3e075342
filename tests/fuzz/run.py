"""Run every atheris harness (tests/fuzz/fuzz_*.py) for a time budget each.

    .venv/bin/python tests/fuzz/run.py --seconds 25          # what CI runs
    .venv/bin/python tests/fuzz/run.py --seconds 300 framing # one harness, longer

A harness ``fuzz_NAME.py`` starts from its seeded corpus in
``tests/fuzz/corpus/NAME/`` (kept in the repository; created empty when
missing) and first replays every file in it. New inputs the fuzzer finds go
to a scratch directory (``.fuzz/corpus/NAME``), so a run never changes the
repository; ``--keep`` merges them into the seeded corpus instead. A crash
is written to ``.fuzz/crashes/`` and makes this script exit 1: copy the file
into the seeded corpus (it becomes a regression test, replayed by
``tests/test_fuzz_corpus.py``), then fix the bug.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRATCH = ROOT / ".fuzz"


def harnesses(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("fuzz_*.py"))
    if not found:
        raise SystemExit(f"no fuzz_*.py harness in {HERE}")  # never pass by running nothing
    if not names:
        return found
    wanted = [HERE / f"fuzz_{name.removeprefix('fuzz_').removesuffix('.py')}.py" for name in names]
    missing = [str(path.name) for path in wanted if path not in found]
    if missing:
        raise SystemExit(f"no such harness: {', '.join(missing)}")
    return wanted


def run_one(harness: Path, seconds: int, keep: bool) -> tuple[int, float]:
    name = harness.stem.removeprefix("fuzz_")
    seeds = HERE / "corpus" / name
    seeds.mkdir(parents=True, exist_ok=True)
    scratch = SCRATCH / "corpus" / name
    scratch.mkdir(parents=True, exist_ok=True)
    crashes = SCRATCH / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    # libFuzzer writes new inputs into the first directory and reads them all.
    corpora = [seeds, scratch] if keep else [scratch, seeds]
    command = [
        sys.executable,
        str(harness),
        f"-max_total_time={seconds}",
        f"-artifact_prefix={crashes}/{name}-",
        "-print_final_stats=1",
        "-max_len=4096",
        *map(str, corpora),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.monotonic()
    # The fuzzer stops itself at max_total_time; the timeout only catches a hang.
    try:
        code = subprocess.run(command, env=env, timeout=seconds + 120).returncode
    except subprocess.TimeoutExpired:
        code = -1
    return code, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="harnesses to run (default: all)")
    parser.add_argument("--seconds", type=int, default=25, help="budget per harness")
    parser.add_argument(
        "--keep", action="store_true", help="add new inputs to the seeded corpus in the repository"
    )
    args = parser.parse_args()
    failed: list[str] = []
    for harness in harnesses(args.names):
        print(f"== {harness.name}: {args.seconds} s", flush=True)
        code, took = run_one(harness, args.seconds, args.keep)
        verdict = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"== {harness.name}: {verdict} in {took:.0f} s", flush=True)
        if code != 0:
            failed.append(harness.name)
    if failed:
        print(
            f"fuzzing failed: {', '.join(failed)}; the crashing inputs are in {SCRATCH}/crashes/",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
