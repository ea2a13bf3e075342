"""``linechat serve``: run a line service (echo by default) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import ipaddress
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..protocol import LineProtocol
from ..server import DEFAULT_GRACE, LineServer, ProxyPolicy, tls_server_context
from ..services import echo
from ..stream import Handler, stream_protocol_factory
from .common import (
    CliError,
    add_loop_option,
    loop_factory,
    non_negative_float,
    port_number,
    positive_int,
)
from .workers import Supervisor, cpu_count, reserve_port

__all__ = ["add_parser"]


@dataclass(frozen=True)
class Service:
    """One service, on both layers, with the framing options it needs."""

    protocol: Callable[..., LineProtocol]
    handler: Handler
    framing: dict[str, Any]

    def factory(self, layer: str, **options: Any) -> Callable[[], LineProtocol]:
        options = {**self.framing, **options}
        if layer == "stream":
            return stream_protocol_factory(self.handler, **options)
        return functools.partial(self.protocol, **options)


SERVICES = {"echo": Service(echo.EchoProtocol, echo.echo_handler, echo.FRAMING)}
LAYERS = {"protocol", "stream"}
LOG_LEVELS = ["debug", "info", "warning", "error"]


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="run a line service (echo by default)",
        description="Run a line service. By default the echo service on localhost:8007: "
        "every line is answered 'You sent: <line>', a line holding only '.' closes.",
    )
    parser.add_argument("--service", choices=sorted(SERVICES), default="echo")
    parser.add_argument(
        "--layer",
        choices=sorted(LAYERS),
        default="protocol",
        help="protocol (callbacks, the fast path) or stream (coroutines)",
    )
    parser.add_argument(
        "--host", default=None, help="address to listen on (default localhost: IPv4 and IPv6)"
    )
    parser.add_argument(
        "--port", type=port_number, default=None, help="TCP port (default 8007; 0 picks one)"
    )
    parser.add_argument("--unix", metavar="PATH", help="listen on a Unix socket instead of TCP")
    parser.add_argument("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    parser.add_argument(
        "--max-line-length",
        type=positive_int,
        default=65536,
        metavar="N",
        help="longest line accepted, in bytes (default 65536)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=non_negative_float,
        default=300.0,
        metavar="SECONDS",
        help="close a peer silent this long (default 300; 0 turns it off)",
    )
    parser.add_argument(
        "--line-timeout",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="the longest one line may take to arrive once its first byte came; "
        "past it the peer gets 'ERROR line timeout' and is closed (default 0: off)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=None,
        metavar="N",
        help="past N open connections, a new peer gets an error line and is closed",
    )
    parser.add_argument(
        "--grace",
        type=non_negative_float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"on SIGINT/SIGTERM, time left to finish (default {DEFAULT_GRACE:g})",
    )
    add_loop_option(parser, "uvloop when installed")
    parser.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="require a PROXY protocol header (v1 or v2) from every peer (behind HAProxy)",
    )
    parser.add_argument(
        "--proxy-protocol-from",
        type=network,
        action="append",
        default=None,
        metavar="CIDR",
        help="only peers in CIDR send the header (implies --proxy-protocol; repeatable); "
        "others are direct clients",
    )
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=None,
        metavar="N|auto",
        help="run N worker processes on one port with SO_REUSEPORT (auto: one per CPU)",
    )
    parser.add_argument("--worker-id", type=positive_int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.set_defaults(run=run)


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address or network: {text!r}") from None


def worker_count(text: str) -> int:
    return cpu_count() if text == "auto" else positive_int(text)


def run(args: argparse.Namespace) -> int:
    worker = f" worker {args.worker_id}" if args.worker_id else ""
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s{worker} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if (args.tls_cert is None) != (args.tls_key is None):
            raise CliError("--tls-cert and --tls-key go together")
        if args.unix and (args.host is not None or args.port is not None):
            raise CliError("--unix listens instead of TCP: drop --host/--port")
        if args.unix and (args.proxy_protocol or args.proxy_protocol_from):
            raise CliError("--proxy-protocol works with TCP listeners only")
        if args.workers is not None:
            return _supervise(args)
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            return runner.run(_serve(args))
    except CliError as exc:
        print(f"linechat serve: {exc}", file=sys.stderr)
        return 1


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        return None
    try:
        return tls_server_context(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CliError(f"cannot load TLS certificate/key: {reason}") from None


def _supervise(args: argparse.Namespace) -> int:
    """Start ``args.workers`` copies of this command on one port, and watch them."""
    if args.unix:
        raise CliError("--workers shares a TCP port: it does not work with --unix")
    _tls_context(args)  # a bad certificate is reported once, here
    loop_factory(args.loop)  # so is a missing uvloop
    host = args.host if args.host is not None else "localhost"
    port = reserve_port(host, args.port if args.port is not None else 8007)
    argv = [sys.executable, "-m", "linechat", "serve", "--host", host, "--port", str(port)]
    for flag, value in [
        ("--service", args.service),
        ("--layer", args.layer),
        ("--tls-cert", args.tls_cert),
        ("--tls-key", args.tls_key),
        ("--max-line-length", args.max_line_length),
        ("--idle-timeout", args.idle_timeout),
        ("--line-timeout", args.line_timeout),
        ("--max-connections", args.max_connections),
        ("--grace", args.grace),
        ("--loop", args.loop),
        ("--log-level", args.log_level),
    ]:
        if value is not None:
            argv += [flag, str(value)]
    if args.proxy_protocol:
        argv.append("--proxy-protocol")
    for trusted in args.proxy_protocol_from or []:
        argv += ["--proxy-protocol-from", str(trusted)]
    supervisor = Supervisor(argv, args.workers, grace=args.grace)
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    tls = " (TLS)" if args.tls_cert else ""
    announce = (
        f"linechat serve: {args.service} service ({args.layer} layer) listening on {where}{tls}"
    )
    return asyncio.run(supervisor.run(announce))


async def _serve(args: argparse.Namespace) -> int:
    context = _tls_context(args)
    factory = SERVICES[args.service].factory(
        args.layer,
        max_line_length=args.max_line_length,
        idle_timeout=args.idle_timeout or None,
        line_timeout=args.line_timeout or None,
    )
    proxy = None
    if args.proxy_protocol or args.proxy_protocol_from:
        proxy = ProxyPolicy(trusted=args.proxy_protocol_from)
    server = LineServer(factory, max_connections=args.max_connections, proxy=proxy)
    host = args.host if args.host is not None else "localhost"
    port = args.port if args.port is not None else 8007
    where = args.unix or f"{host}:{port}"
    try:
        if args.unix:
            addresses = [await server.listen_unix(args.unix, ssl_context=context)]
        else:
            addresses = await server.listen_tcp(
                host, port, ssl_context=context, reuse_port=args.worker_id is not None
            )
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CliError(f"cannot listen on {where}: {reason or exc}") from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tls = " (TLS)" if context else ""
    service = f"{args.service} service ({args.layer} layer)"
    print(
        f"linechat serve: {service} listening on {', '.join(addresses)}{tls}",
        file=sys.stderr,
        flush=True,
    )
    if args.worker_id is not None:
        watchdog = asyncio.create_task(_stop_when_orphaned(stop))
    await stop.wait()
    if args.worker_id is not None:
        watchdog.cancel()
    logging.getLogger("linechat.server").info(
        "shutting down: %d connections open, %d served", len(server.connections), server.served
    )
    await server.shutdown(args.grace)
    return 0


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    """A worker whose supervisor died (even by SIGKILL) shuts itself down."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    logging.getLogger("linechat.workers").warning("supervisor is gone; shutting down")
    stop.set()
