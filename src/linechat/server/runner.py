"""Running a service: :class:`Server` (one process), :func:`run` and :func:`serve`.

:class:`Server` does what one serving process does: build the service (its
``build`` in this process, with the loop running; an async context manager is
entered before listening and left after shutdown), listen, log the settings in
effect, serve until told to stop, shut down gracefully. :func:`run_config`
adds the choice between one process and a supervisor of several (``workers``,
``reload``). :func:`run` and :func:`serve` take the same options as
``linechat serve``, as keywords.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import ipaddress
import logging
import os
import signal
import ssl
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, StartupError
from ..protocol import LineProtocol
from ..service import ServeContext, Target, defaults_of
from ..stream import stream_protocol_factory
from .config import Config, Settings, config_from_keywords, service_options
from .lineserver import LineServer, ProxyPolicy, tls_server_context
from .listeners import describe_errno, inherited, systemd_fds
from .load import Loaded, check_target, layer_of, load

__all__ = ["Server", "loop_factory", "run", "run_config", "serve"]

log = logging.getLogger("linechat.server")

#: Called with the start-up line ("... listening on ADDRESS") once a server listens.
ReadyHook = Callable[[str], None]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``auto`` (uvloop when installed), ``asyncio`` or ``uvloop``; None means asyncio's."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise ConfigError("uvloop is not installed (pip install 'linechat[fast]')") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context, or StartupError saying why the files cannot be used."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    try:
        return tls_server_context(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StartupError(f"cannot load TLS certificate/key: {reason}") from None


def protocol_factory(target: Target, settings: Settings) -> Callable[[], LineProtocol]:
    """What the LineServer calls per connection, for either layer."""
    options = settings.protocol_options()
    if layer_of(target) == "stream":
        return stream_protocol_factory(target, **options)  # type: ignore[arg-type]
    cls: Callable[..., LineProtocol] = target  # type: ignore[assignment]
    return functools.partial(cls, **options)  # called in C: no Python frame per connection


class Server:
    """One serving process: build, listen, serve until ``stop``, shut down."""

    def __init__(self, config: Config, loaded: Loaded | None = None) -> None:
        self.config = config
        self.loaded = loaded
        self.line_server: LineServer | None = None
        self.addresses: list[str] = []
        self.settings: Settings | None = None

    def context(self) -> ServeContext:
        return ServeContext(
            tls_context=tls_context(self.config),
            layer=self.config.layer,
            workers=self.config.workers or 1,
            worker_id=self.config.worker_id or None,
        )

    async def serve(self, stop: asyncio.Event, on_ready: ReadyHook | None = None) -> None:
        config = self.config
        config.check()
        loaded = self.loaded or load(config.target, factory=config.factory, app_dir=config.app_dir)
        service = loaded.service
        options = service_options(service, config.options, "options")
        context = self.context()
        layer = config.layer if config.layer is not None else loaded.defaults.get("layer")
        context = ServeContext(context.tls_context, layer, context.workers, context.worker_id)
        if service.check is not None:
            service.check(options, context)
        async with contextlib.AsyncExitStack() as stack:
            built = service.build(options, context)
            if hasattr(built, "__aenter__"):
                built = await stack.enter_async_context(built)
            target = check_target(built, f"what {loaded.target} built")
            settings = config.settings({**loaded.defaults, **defaults_of(target)})
            actual = layer_of(target)
            if config.layer is not None and config.layer != actual:
                raise ConfigError(
                    f"--layer {config.layer}: {loaded.target} runs on the {actual} layer only"
                )
            self.settings = settings
            proxy = None
            if config.proxy_protocol or config.proxy_protocol_from:
                trusted = [ipaddress.ip_network(n) for n in config.proxy_protocol_from]
                proxy = ProxyPolicy(trusted=trusted or None)
            server = LineServer(
                protocol_factory(target, settings),
                max_connections=config.max_connections,
                proxy=proxy,
                tls_handshake_timeout=config.tls_handshake_timeout,
            )
            self.line_server = server
            # A STARTTLS service starts TLS itself: its listeners stay plaintext.
            listen_tls = None if service.starttls else context.tls_context
            self.addresses = await self._listen(server, settings, listen_tls)
            stack.push_async_callback(self._shutdown, server)
            log.log(
                logging.INFO if (config.worker_id or 1) == 1 else logging.DEBUG,  # once
                "%s: %s layer; %s; max_connections=%s grace=%g",
                loaded.target,
                actual,
                settings.describe(),
                config.max_connections or "none",
                config.grace,
            )
            tls = (" (STARTTLS)" if service.starttls else " (TLS)") if context.tls_context else ""
            name = service.name if service.name == loaded.target else loaded.target
            ready = f"{name} service ({actual} layer) listening on {', '.join(self.addresses)}{tls}"
            if on_ready is not None:
                on_ready(ready)
            else:
                log.info("%s", ready)
            self._watch_reload(target, stack)
            if config.worker_id is not None:
                watchdog = asyncio.create_task(_stop_when_orphaned(stop))
                stack.callback(watchdog.cancel)
            await stop.wait()

    async def _listen(
        self, server: LineServer, settings: Settings, context: ssl.SSLContext | None
    ) -> list[str]:
        config = self.config
        host = config.host if config.host is not None else "localhost"
        where = config.unix or f"{host}:{settings.port}"
        try:
            if config.fd:
                where = "inherited sockets " + ", ".join(map(str, config.fd))
                return [
                    server.listen_socket(sock, ssl_context=context) for sock in inherited(config.fd)
                ]
            if config.unix:
                return [await server.listen_unix(config.unix, ssl_context=context)]
            return await server.listen_tcp(
                host,
                settings.port,
                ssl_context=context,
                reuse_port=config.worker_id is not None,
            )
        except OSError as exc:
            await server.shutdown(0)
            raise StartupError(f"cannot listen on {where}: {describe_errno(exc)}") from None

    async def _shutdown(self, server: LineServer) -> None:
        log.info(
            "shutting down: %d connections open, %d served", len(server.connections), server.served
        )
        await server.shutdown(self.config.grace)

    def _watch_reload(self, target: object, stack: contextlib.AsyncExitStack) -> None:
        """SIGHUP calls the target's ``reload()`` (sync or async), when it has one."""
        reload = getattr(target, "reload", None)
        if not callable(reload) or not hasattr(signal, "SIGHUP"):
            return
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Any]] = set()

        def on_hup() -> None:
            log.info("SIGHUP: reloading")
            try:
                result = reload()
            except Exception:
                log.exception("reload() failed")
                return
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                tasks.add(task)
                task.add_done_callback(_log_reload)
                task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)


def _log_reload(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("reload() failed", exc_info=task.exception())


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    """A worker whose supervisor died (even by SIGKILL) shuts itself down."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    logging.getLogger("linechat.workers").warning("supervisor is gone; shutting down")
    stop.set()


async def serve_until_signalled(
    config: Config, loaded: Loaded | None = None, on_ready: ReadyHook | None = None
) -> None:
    """Serve in this process until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await Server(config, loaded).serve(stop, on_ready)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def run_config(
    config: Config, loaded: Loaded | None = None, on_ready: ReadyHook | None = None
) -> int:
    """Run ``config`` until SIGINT/SIGTERM: one process, workers, or a reloader.

    Returns 0, or 1 when workers kept failing. Raises ConfigError,
    ServiceError, StartupError or TargetImportError before anything serves.
    """
    if config.worker_id is None and not config.fd:
        activated = systemd_fds()  # started by systemd (or systemd-socket-activate)
        if activated and config.host is None and config.port is None and config.unix is None:
            config = dataclasses.replace(config, fd=activated)
    config.check()
    if loaded is None:
        loaded = load(config.target, factory=config.factory, app_dir=config.app_dir)
    if config.worker_id is None and (config.workers is not None or config.reload):
        from .workers import supervise

        return supervise(config, loaded, on_ready)
    with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
        runner.run(serve_until_signalled(config, loaded, on_ready))
    return 0


def _config(target: object, options: dict[str, Any]) -> tuple[Config, Loaded]:
    factory = bool(options.get("factory", False))
    app_dir = options.get("app_dir", ".")
    loaded = load(target if target is not None else "echo", factory=factory, app_dir=app_dir)
    config = config_from_keywords(target if target is not None else "echo", options, loaded.service)
    return config, loaded


def run(target: object = None, /, **options: Any) -> int:
    """Serve ``target`` until SIGINT/SIGTERM, as ``linechat serve`` would.

    ``target``: a service name, an import string, or the object itself (a
    LineProtocol subclass, a handler, a Service). ``options``: the long
    option names as keywords (``max_connections=500``, ``tls_cert=...``) and
    the service's own options. Blocks; returns the exit status.
    """
    config, loaded = _config(target, options)
    return run_config(config, loaded)


async def serve(target: object = None, /, **options: Any) -> None:
    """The awaitable twin of :func:`run`, for code that owns its event loop.

    Serves until cancelled, then shuts down gracefully (within ``grace``).
    Installs no signal handlers; ``workers``/``reload`` are not available.
    """
    config, loaded = _config(target, options)
    if config.workers is not None or config.reload:
        raise ConfigError("serve() runs in this process: use run() for workers or reload")
    stop = asyncio.Event()
    task = asyncio.ensure_future(Server(config, loaded).serve(stop))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        await task
        raise
