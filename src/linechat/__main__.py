"""``python -m linechat``: the same as the ``linechat`` command."""

from .cli import entry_point

entry_point()
