"""Coverage-guided fuzzing of the redis dialect with atheris (not run by pytest).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/fuzz_dialect_redis.py -max_total_time=60

See dialect_harness.py for what is checked.
"""

from __future__ import annotations

import importlib

if __name__ == "__main__":
    importlib.import_module("dialect_harness").main("redis")  # beside this script
