"""The server runner, a library: configuration, loading a TARGET, listeners, workers.

:class:`LineServer` serves one protocol factory on its listeners (TLS, the
connection limit, PROXY protocol, shutdown). Around it: :class:`Config`
(every option of ``linechat serve``), :mod:`.load` (what a TARGET names),
:class:`Server` (one serving process), the ``--workers`` supervisor, and
:func:`run` / :func:`serve`, the runner called from Python.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .lineserver import DEFAULT_GRACE, LineServer, ProxyPolicy, format_address, tls_server_context

if TYPE_CHECKING:
    from .config import Config
    from .runner import Server, run, serve

__all__ = [
    "DEFAULT_GRACE",
    "Config",
    "LineServer",
    "ProxyPolicy",
    "Server",
    "format_address",
    "run",
    "serve",
    "tls_server_context",
]

# Imported on first use: the stream layer imports this package for LineServer.
_LAZY = {"Config": "config", "Server": "runner", "run": "runner", "serve": "runner"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'linechat.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
