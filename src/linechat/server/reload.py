"""``--reload``: serve in a child process, and restart it when a .py file changes.

For development. The parent binds the listening sockets once and hands them
to each child (so the port never closes, and port 0 stays the same port);
it watches ``app_dir`` with ``watchfiles`` (the ``reload`` extra). A child
that fails to start (a syntax error being typed) is restarted at the next
change, not in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, StartupError
from .listeners import bind_tcp, bind_unix, describe_errno, release_unix

if TYPE_CHECKING:
    from .config import Config
    from .load import Loaded

__all__ = ["reload_forever"]

log = logging.getLogger("linechat.reload")


def reload_forever(config: Config, loaded: Loaded) -> int:
    """Run ``config`` in a child process, restarted on every change under app_dir."""
    try:
        import watchfiles
    except ImportError:
        raise ConfigError(
            "--reload needs the watchfiles package: pip install 'linechat[reload]'"
        ) from None
    app_dir = os.path.abspath(config.app_dir or ".")
    sockets, unix = _listeners(config, loaded)
    fds = [sock.fileno() for sock in sockets]
    child = dataclasses.replace(
        config, fd=fds, host=None, port=None, unix=None, reload=False, app_dir=app_dir, worker_id=0
    )
    try:
        return asyncio.run(_watch(child, app_dir, watchfiles))
    finally:
        for sock in sockets:
            sock.close()
        if unix is not None:
            release_unix(*unix)


def _listeners(
    config: Config, loaded: Loaded
) -> tuple[list[socket.socket], tuple[str, tuple[int, int]] | None]:
    if config.fd:
        return [socket.socket(fileno=fd) for fd in config.fd], None
    try:
        if config.unix:
            sock, identity = bind_unix(config.unix)
            return [sock], (config.unix, identity)
        host = config.host if config.host is not None else "localhost"
        return bind_tcp(host, config.settings(loaded.defaults).port), None
    except OSError as exc:
        where = config.unix or f"{config.host or 'localhost'}:{config.port}"
        raise StartupError(f"cannot listen on {where}: {describe_errno(exc)}") from None


async def _watch(config: Config, app_dir: str, watchfiles: Any) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    changes = watchfiles.awatch(
        app_dir, watch_filter=watchfiles.PythonFilter(), stop_event=stop, debounce=200
    )
    log.info("watching %s for changes to .py files", app_dir)
    process = await _start(config)
    try:
        async for changed in changes:
            names = sorted({os.path.relpath(path, app_dir) for _, path in changed})
            log.warning("changed: %s; restarting", ", ".join(names))
            await _stop(process, config.grace)
            process = await _start(config)
    finally:
        await _stop(process, config.grace)
    return 0


async def _start(config: Config) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linechat.cli.worker",
        stdin=asyncio.subprocess.PIPE,
        pass_fds=tuple(config.fd),
    )
    assert process.stdin is not None
    process.stdin.write(pickle.dumps(config))
    process.stdin.close()
    return process


async def _stop(process: asyncio.subprocess.Process, grace: float) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace + 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
