"""Coverage-guided fuzzing of the pop3 dialect with atheris.

    .venv/bin/python tests/fuzz/fuzz_dialect_pop3.py -max_total_time=60

See dialect_harness.py for what is checked.
"""

from __future__ import annotations

import importlib

# dialect_harness.py is beside this script (the corpus replay puts it on the path).
dialect_harness = importlib.import_module("dialect_harness")
one_input = dialect_harness.harness("pop3")

if __name__ == "__main__":
    dialect_harness.main("pop3")
