"""Coverage-guided fuzzing of the pop3 dialect with atheris (not run by pytest).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/fuzz_dialect_pop3.py -max_total_time=60

See dialect_harness.py for what is checked.
"""

from __future__ import annotations

import importlib

if __name__ == "__main__":
    importlib.import_module("dialect_harness").main("pop3")  # beside this script
