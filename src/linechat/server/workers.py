"""``linechat serve --workers N``: N processes on one port, and their supervisor.

Each worker is a fresh Python process (``python -m linechat.cli.worker``)
that reads its :class:`~linechat.server.config.Config` from stdin, loads the
same TARGET and binds with SO_REUSEPORT, so the kernel spreads connections
over them. The parent only
supervises: it starts the workers, relays their stderr, restarts one that
dies (with back-off), forwards SIGINT/SIGTERM, and gives up with a non-zero
exit when workers keep failing.
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
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError, StartupError

if TYPE_CHECKING:
    from .config import Config
    from .load import Loaded
    from .runner import ReadyHook

__all__ = ["Supervisor", "cpu_count", "reserve_port", "supervise"]

log = logging.getLogger("linechat.workers")

#: A worker that dies this many times in a row without having served for
#: STABLE_AFTER seconds is failing for good.
MAX_FAILURES = 5
STABLE_AFTER = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
READY_MARK = b"listening on"


def reserve_port(host: str, port: int) -> int:
    """The port all workers will share: ``port``, or a free one when it is 0."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--workers needs SO_REUSEPORT, which this system lacks (Linux has it)")
    if port != 0:
        return port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bind_host = "127.0.0.1" if host == "localhost" else host
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bind_host, 0))
        return int(sock.getsockname()[1])


@dataclass
class _Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    failures: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    """Run ``count`` worker processes of ``config``, and keep them running."""

    def __init__(
        self, config: Config, count: int, *, grace: float, pass_fds: tuple[int, ...] = ()
    ) -> None:
        self.argv = [sys.executable, "-m", "linechat.cli.worker"]
        self.config = config
        self.pass_fds = pass_fds
        self.workers = [_Worker(number) for number in range(1, count + 1)]
        self.grace = grace
        self.stopping = False
        self.failed: str | None = None
        self._announced = asyncio.Event()

    async def run(self, announce: str, on_ready: ReadyHook | None = None) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if hasattr(signal, "SIGHUP"):  # reload: every worker reloads its service
            loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        keepers = [asyncio.create_task(self._keep(worker, stop)) for worker in self.workers]
        ready = asyncio.create_task(self._all_ready())
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            message = f"{announce} ({len(self.workers)} workers)"
            if on_ready is not None:
                on_ready(message)
            else:
                log.info("%s", message)
        else:
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
        await stopped
        self.stopping = True
        await self._stop_all()
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        if self.failed:
            raise StartupError(self.failed)
        return 0

    async def _all_ready(self) -> None:
        for worker in self.workers:
            await worker.ready.wait()

    async def _keep(self, worker: _Worker, stop: asyncio.Event) -> None:
        """Run one worker; restart it when it dies, slower each time it fails."""
        backoff = BACKOFF_FIRST
        while not self.stopping:
            worker.started = time.monotonic()
            worker.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=self.pass_fds,
            )
            assert worker.process.stdin is not None
            config = dataclasses.replace(self.config, worker_id=worker.number)
            worker.process.stdin.write(pickle.dumps(config))
            worker.process.stdin.close()
            relay = asyncio.create_task(self._relay(worker, worker.process))
            code = await worker.process.wait()
            await relay
            if self.stopping:
                return
            lived = time.monotonic() - worker.started
            if lived >= STABLE_AFTER:
                worker.failures, backoff = 0, BACKOFF_FIRST
            worker.failures += 1
            log.warning(
                "worker %d (pid %d) exited with status %s after %.1f s; restarting in %.1f s",
                worker.number,
                worker.process.pid,
                code,
                lived,
                backoff,
            )
            if worker.failures >= MAX_FAILURES:
                self.failed = (
                    f"worker {worker.number} keeps failing (exit status {code}); giving up"
                )
                stop.set()
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _relay(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        """Copy the worker's stderr to ours; its start-up line means it is ready."""
        assert process.stderr is not None
        async for line in process.stderr:
            if READY_MARK in line and not worker.ready.is_set():
                worker.ready.set()
                continue  # the supervisor announces once for all
            sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()

    def _forward(self, signum: int) -> None:
        """Pass a signal on to every running worker."""
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    async def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(process.wait()) for process in running]
        if not waits:
            return
        _, late = await asyncio.wait(waits, timeout=self.grace + 5)
        for process in running:
            if process.returncode is None:
                log.warning("worker pid %d did not stop in time; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if late:
            await asyncio.wait(late, timeout=5)


def supervise(config: Config, loaded: Loaded, on_ready: ReadyHook | None = None) -> int:
    """Check everything once here, then run the workers (or the reloader)."""
    from .config import service_options
    from .runner import Server, loop_factory

    context = Server(config, loaded).context()  # a bad certificate is reported once, here
    loop_factory(config.loop)  # so is a missing uvloop
    service = loaded.service
    if service.check is not None:
        service.check(service_options(service, config.options, "options"), context)
    if config.reload:
        from .reload import reload_forever

        return reload_forever(config, loaded)
    count = config.workers or 1
    tls = " (TLS)" if config.tls_cert else ""
    if config.fd:  # inherited sockets: every worker accepts on them
        worker_config = dataclasses.replace(config, workers=count)
        where = describe_fds(config.fd)
        pass_fds = tuple(config.fd)
    else:
        settings = config.settings(loaded.defaults)
        host = config.host if config.host is not None else "localhost"
        port = reserve_port(host, settings.port)
        worker_config = dataclasses.replace(config, host=host, port=port, workers=count)
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        pass_fds = ()
    supervisor = Supervisor(worker_config, count, grace=config.grace, pass_fds=pass_fds)
    announce = f"{loaded.target} service listening on {where}{tls}"
    return asyncio.run(supervisor.run(announce, on_ready))


def describe_fds(fds: list[int]) -> str:
    """The addresses of inherited listening sockets, for the start-up line."""
    names = []
    for fd in fds:
        sock = socket.socket(fileno=fd)
        try:
            name = sock.getsockname()
            names.append(str(name) if sock.family == socket.AF_UNIX else _address(name))
        finally:
            sock.detach()
    return ", ".join(names)


def _address(name: tuple[str, int]) -> str:
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
