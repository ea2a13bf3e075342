"""``python -m linechat``: the same as the ``linechat`` command."""

import sys

from .cli import main

sys.exit(main())
