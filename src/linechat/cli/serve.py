"""``linechat serve TARGET``: flags and a config file into a Config; errors into exit codes.

Parsing is in two steps: the runner's own flags find TARGET (and
``--config``, ``--app-dir``), the TARGET is loaded, then its service's
options join the runner's flags for the real parse (so ``linechat serve NAME
--help`` shows them). Exit status: 0 after a clean shutdown, 2 for a usage
error (argparse's, a bad TARGET, a config-file error, a ServiceError), 1 when
the server cannot start or an imported module raised (with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError, ServiceError, StartupError, TargetImportError
from ..server.config import (
    LAYERS,
    LOG_LEVELS,
    LOOPS,
    Config,
    network,
    non_negative_float,
    port_number,
    positive_int,
    read_config_file,
)
from ..server.lineserver import DEFAULT_GRACE
from ..server.load import Loaded, available_services, load
from ..server.runner import run_config
from ..server.workers import cpu_count
from ..service import Service

__all__ = ["add_parser", "main", "report_errors", "setup_logging"]

DESCRIPTION = """\
Run a line service: the built-in echo service by default (every line is
answered 'You sent: <line>', a line holding only '.' closes), a built-in or
installed service by name, or your own by import string."""

EPILOG = """\
TARGET is one of:
  NAME                  a built-in or installed service (--list shows them); default: echo
  module.path:attr      a LineProtocol subclass (served on the protocol layer),
                        an 'async def handler(stream)' (the stream layer),
                        or a linechat.Service (a service with options of its own)
  --factory module:attr a zero-argument callable returning a class or handler

Flags override the config file (--config), which overrides the service's defaults.
Exit status: 0 after a clean shutdown, 2 for a usage error, 1 when the server
cannot start."""


def add_parser(commands: Any) -> None:
    """Name ``serve`` in ``linechat --help``; :func:`main` parses its arguments."""
    commands.add_parser(
        "serve", help="run a line service (echo, a built-in one, or yours)", add_help=False
    )


def _arg(check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse type from a check that raises ValueError with a clear message."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def _workers(text: str) -> int:
    return cpu_count() if text == "auto" else positive_int(text)


def runner_parser(add_help: bool) -> argparse.ArgumentParser:
    """The runner's own flags. Every default is None: "not given"."""
    parser = argparse.ArgumentParser(
        prog="linechat serve",
        usage="linechat serve [TARGET] [options]",
        description=DESCRIPTION,
        epilog=EPILOG,
        add_help=add_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # A service's --log must not pass for --log-level while TARGET is looked for.
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("target", nargs="?", metavar="TARGET", help="what to serve (see below)")
    add("--factory", action="store_true", default=None, help="TARGET is a factory: call it")
    add("--app-dir", metavar="DIR", help="put DIR first on sys.path (default: .)")
    add("--config", metavar="FILE", help="read options from a TOML file (keys: long option names)")
    add("--list", action="store_true", help="list the built-in and installed services, and exit")
    add("--service", metavar="NAME", help="the old spelling of TARGET")
    add("--layer", choices=LAYERS, help="for a service that offers both layers (echo does)")
    add("--host", help="address to listen on (default localhost: IPv4 and IPv6)")
    add(
        "--port",
        type=_arg(port_number),
        help="TCP port (default 8007 or the service's; 0 picks one)",
    )
    add("--unix", metavar="PATH", help="listen on a Unix socket instead of TCP")
    add(
        "--fd",
        type=_arg(positive_int),
        action="append",
        metavar="N",
        help="serve on the inherited listening socket N (repeatable); systemd's LISTEN_FDS "
        "are used without it",
    )
    add("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM)")
    add("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    add(
        "--tls-handshake-timeout",
        type=_arg(non_negative_float),
        metavar="SECONDS",
        help="close a peer that has not finished its TLS handshake by then (default 10)",
    )
    add(
        "--max-line-length",
        type=_arg(positive_int),
        metavar="N",
        help="longest line accepted, in bytes (default 65536 or the service's)",
    )
    add(
        "--idle-timeout",
        type=_arg(non_negative_float),
        metavar="SECONDS",
        help="close a peer silent this long (default 300 or the service's; 0 turns it off)",
    )
    add(
        "--line-timeout",
        type=_arg(non_negative_float),
        metavar="SECONDS",
        help="close a peer that takes longer than this to send one line (default off)",
    )
    add(
        "--max-connections",
        type=_arg(positive_int),
        metavar="N",
        help="past N open connections, a new peer gets an error line and is closed",
    )
    add(
        "--grace",
        type=_arg(non_negative_float),
        metavar="SECONDS",
        help=f"on SIGINT/SIGTERM, time left to finish (default {DEFAULT_GRACE:g})",
    )
    add("--loop", choices=LOOPS, help="event loop (auto: uvloop when installed)")
    add(
        "--proxy-protocol",
        action="store_true",
        default=None,
        help="require a PROXY protocol header (v1 or v2) from every peer (behind HAProxy)",
    )
    add(
        "--proxy-protocol-from",
        type=_arg(network),
        action="append",
        metavar="CIDR",
        help="only peers in CIDR send the header (implies --proxy-protocol; repeatable); "
        "others are direct clients",
    )
    add(
        "--workers",
        type=_arg(_workers),
        metavar="N|auto",
        help="run N worker processes on one port with SO_REUSEPORT (auto: one per CPU)",
    )
    add(
        "--reload",
        action="store_true",
        default=None,
        help="restart when a .py file under --app-dir changes (development; needs watchfiles)",
    )
    add("--log-level", choices=LOG_LEVELS)
    return parser


def _add_service_options(parser: argparse.ArgumentParser, service: Service) -> None:
    if not service.options:
        return
    group = parser.add_argument_group(f"options of the {service.name} service")
    for option in service.options:
        kwargs: dict[str, Any] = {"help": option.help, "dest": f"service:{option.key}"}
        if option.flag:
            kwargs.update(action="store_true", default=None)
        else:
            kwargs.update(type=_arg(option.type), metavar=option.metavar)
            if option.multiple:
                kwargs["action"] = "append"
        try:
            group.add_argument(f"--{option.name}", **kwargs)
        except argparse.ArgumentError:
            raise ConfigError(
                f"service {service.name} declares --{option.name}, a flag the runner has"
            ) from None


def setup_logging(level: str, worker_id: int | None = None) -> None:
    worker = f" worker {worker_id}" if worker_id else ""
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s{worker} %(name)s: %(message)s",
        stream=sys.stderr,
    )


def announce(text: str) -> None:
    print(f"linechat serve: {text}", file=sys.stderr, flush=True)


def report_errors(body: Callable[[], int]) -> int:
    """Run ``body``; turn the runner's errors into a line on stderr and an exit status."""
    try:
        return body()
    except (ConfigError, ServiceError) as exc:
        print(f"linechat serve: {exc}", file=sys.stderr, flush=True)
        return 2
    except StartupError as exc:
        print(f"linechat serve: {exc}", file=sys.stderr, flush=True)
        return 1
    except TargetImportError as exc:
        cause = exc.__cause__ or exc
        traceback.print_exception(cause, file=sys.stderr)
        print(f"linechat serve: {exc}", file=sys.stderr, flush=True)
        return 1


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    known, _ = runner_parser(add_help=False).parse_known_args(argv)
    if known.list:
        for name, origin in available_services().items():
            print(f"{name:<16} {origin}")
        return 0
    return report_errors(lambda: _main(argv, known))


def _main(argv: list[str], known: argparse.Namespace) -> int:
    from_file = read_config_file(known.config, None) if known.config else {}
    if known.target is not None and known.service is not None:
        raise ConfigError("give TARGET or --service, not both")
    target = known.target or known.service or from_file.get("target", "echo")
    factory = known.factory or from_file.get("factory", False)
    app_dir = known.app_dir or from_file.get("app_dir", ".")
    setup_logging(known.log_level or from_file.get("log_level", "info"))
    loaded = load(target, factory=factory, app_dir=app_dir)
    parser = runner_parser(add_help=True)
    _add_service_options(parser, loaded.service)
    args = parser.parse_args(argv)
    if args.config:
        from_file = read_config_file(args.config, loaded.service)
    config = to_config(args, from_file, loaded, target=target, app_dir=app_dir)
    return run_config(config, loaded, on_ready=announce)


def to_config(
    args: argparse.Namespace,
    from_file: dict[str, Any],
    loaded: Loaded,
    *,
    target: str,
    app_dir: str,
) -> Config:
    """The flags given, over the file's values, over Config's defaults."""
    values = {key: value for key, value in from_file.items() if key != "options"}
    options = dict(from_file.get("options", {}))
    for key, value in vars(args).items():
        if value is None or key in ("config", "list", "service"):
            continue
        if key.startswith("service:"):
            options[key.removeprefix("service:")] = value
        else:
            values[key] = value
    values.update(target=target, app_dir=app_dir)
    return Config(**values, options=options)
