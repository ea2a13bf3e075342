"""One ``--workers`` worker process: ``python -m linechat.cli.worker``.

The supervisor (:mod:`linechat.server.workers`) writes the worker's
:class:`~linechat.server.config.Config` to its stdin, pickled; the worker
serves it and reports on stderr as ``linechat serve`` does (the supervisor
reads the start-up line to know the worker is ready).
"""

from __future__ import annotations

import os
import pickle
import sys

from ..server.config import Config
from ..server.runner import run_config
from .serve import announce, report_errors, setup_logging


def main() -> int:
    config = pickle.load(sys.stdin.buffer)
    if not isinstance(config, Config):
        print("linechat worker: expected a Config on stdin", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.worker_id)
    return report_errors(lambda: run_config(config, on_ready=announce))


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)
