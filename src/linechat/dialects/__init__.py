"""Dialects: when is a server's reply complete, and is it an error (sans-I/O).

One small module per protocol, imported only when asked for
(:func:`load`), so that ``linechat connect`` without ``--dialect`` starts
as fast as before. :mod:`.base` has the interface every dialect shares.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time

if TYPE_CHECKING:
    from .base import Dialect

__all__ = ["NAMES", "load"]

#: Dialect name -> "module:class".
_WHERE = {
    "line": "line:Line",
    "smtp": "smtp:Smtp",
    "pop3": "pop3:Pop3",
    "imap": "imap:Imap",
    "redis": "resp:Resp",
    "memcached": "memcached:Memcached",
    "irc": "irc:Irc",
}
NAMES = tuple(_WHERE)


def load(name: str) -> type[Dialect]:
    """The dialect class called ``name`` (KeyError for an unknown one)."""
    module, _, attribute = _WHERE[name].partition(":")
    cls: type[Dialect] = getattr(importlib.import_module(f".{module}", __name__), attribute)
    return cls
