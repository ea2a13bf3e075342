"""Coverage-guided fuzzing of the imap dialect with atheris (not run by pytest).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/fuzz_dialect_imap.py -max_total_time=60

See dialect_harness.py for what is checked.
"""

from __future__ import annotations

import importlib

if __name__ == "__main__":
    importlib.import_module("dialect_harness").main("imap")  # beside this script
