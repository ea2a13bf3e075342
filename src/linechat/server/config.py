"""One object holding every option of the runner: :class:`Config`.

The command line, a TOML config file and ``linechat.run(**options)`` all end
up here. A field left at ``None`` was not given: the service's declared
default applies, then the runner's own (:data:`FALLBACK`).

Config files (``--config FILE``) use the long option names as keys
(``max-connections = 500``, ``target = "pkg.mod:attr"``) plus the options of
the service being run; :func:`read_config_file` checks every key and type.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from ..framing import DEFAULT_MAX_LINE_LENGTH
from ..service import Option, Service
from .lineserver import DEFAULT_GRACE

__all__ = [
    "DEFAULT_PORT",
    "FALLBACK",
    "LOG_LEVELS",
    "LOOPS",
    "Config",
    "Settings",
    "read_config_file",
    "service_options",
]

DEFAULT_PORT = 8007
LOOPS = ("auto", "asyncio", "uvloop")
LAYERS = ("protocol", "stream")
LOG_LEVELS = ("debug", "info", "warning", "error")

#: The runner's defaults for the settings a service may declare defaults for.
FALLBACK: dict[str, Any] = {
    "port": DEFAULT_PORT,
    "max_line_length": DEFAULT_MAX_LINE_LENGTH,
    "idle_timeout": 300.0,
    "line_timeout": None,
}


# -- value checks, shared with the command line ----------------------------------


def positive_int(value: object) -> int:
    number = _int(value, "a whole number")
    if number < 1:
        raise ValueError(f"must be at least 1: {value}")
    return number


def port_number(value: object) -> int:
    number = _int(value, "a port number")
    if not 0 <= number <= 65535:
        raise ValueError(f"port must be 0-65535: {value}")
    return number


def non_negative_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    if not number >= 0 or math.isinf(number):
        raise ValueError(f"must be a finite number >= 0: {value}")
    return number


def network(value: object) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValueError(f"not an address or network: {value!r}") from None


def _int(value: object, what: str) -> int:
    if isinstance(value, bool | float):
        raise ValueError(f"not {what}: {value!r}")
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        raise ValueError(f"not {what}: {value!r}") from None


def _choice(*choices: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return str(value)

    return check


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"not true or false: {value!r}")
    return value


def _workers(value: object) -> int:
    if value == "auto":
        from .workers import cpu_count

        return cpu_count()
    return positive_int(value)


# -- the configuration -----------------------------------------------------------


@dataclass
class Config:
    """Every option of ``linechat serve``, by its keyword name.

    ``None`` means "not given": the service's default, then the runner's.
    ``options`` holds the service's own options (by :attr:`Option.key`).
    """

    target: Any = "echo"
    factory: bool = False
    app_dir: str | None = "."
    layer: str | None = None
    host: str | None = None
    port: int | None = None
    unix: str | None = None
    fd: list[int] = field(default_factory=list)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_handshake_timeout: float = 10.0
    max_line_length: int | None = None
    idle_timeout: float | None = None
    line_timeout: float | None = None
    max_connections: int | None = None
    grace: float = DEFAULT_GRACE
    loop: str = "auto"
    proxy_protocol: bool = False
    proxy_protocol_from: list[str] = field(default_factory=list)
    workers: int | None = None
    reload: bool = False
    log_level: str = "info"
    options: dict[str, Any] = field(default_factory=dict)
    #: Set by the supervisor in each worker process.
    worker_id: int | None = None

    def check(self) -> None:
        """Raise ConfigError for options that exclude each other."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.unix and (self.host is not None or self.port is not None):
            raise ConfigError("--unix listens instead of TCP: drop --host/--port")
        if self.fd and (self.unix or self.host is not None or self.port is not None):
            raise ConfigError("--fd serves an inherited socket: drop --host/--port/--unix")
        if self.unix and (self.proxy_protocol or self.proxy_protocol_from):
            raise ConfigError("--proxy-protocol works with TCP listeners only")
        if self.workers is not None and self.unix:
            raise ConfigError("--workers shares a TCP port: it does not work with --unix")
        if self.reload and self.workers is not None:
            raise ConfigError("--reload runs one process: it does not work with --workers")
        if (self.workers is not None or self.reload) and not isinstance(self.target, str):
            raise ConfigError(
                "--workers and --reload start new processes, which import the target: "
                "give it as an import string (module:attr) or a service name"
            )

    def settings(self, defaults: Mapping[str, Any]) -> Settings:
        """The effective runner settings: given here, else ``defaults``, else FALLBACK."""

        def pick(name: str) -> Any:
            given = getattr(self, name)
            if given is not None:
                return given
            return defaults.get(name, FALLBACK.get(name))

        idle = pick("idle_timeout")
        line = pick("line_timeout")
        return Settings(
            port=pick("port"),
            max_line_length=pick("max_line_length"),
            idle_timeout=float(idle) if idle else None,
            line_timeout=float(line) if line else None,
            delimiter=defaults.get("delimiter"),
            lenient=defaults.get("lenient"),
            layer=pick("layer"),
        )


@dataclass(frozen=True)
class Settings:
    """The runner settings in effect for one service (after every default)."""

    port: int
    max_line_length: int
    idle_timeout: float | None
    line_timeout: float | None
    delimiter: bytes | None
    lenient: bool | None
    layer: str | None

    def protocol_options(self) -> dict[str, Any]:
        """Keywords for the protocol class: only what is set, so a class's own defaults hold."""
        options: dict[str, Any] = {
            "max_line_length": self.max_line_length,
            "idle_timeout": self.idle_timeout,
        }
        if self.line_timeout is not None:
            options["line_timeout"] = self.line_timeout
        if self.delimiter is not None:
            options["delimiter"] = self.delimiter
        if self.lenient is not None:
            options["lenient"] = self.lenient
        return options

    def describe(self) -> str:
        """One line for the start-up log."""
        parts = [f"max_line_length={self.max_line_length}"]
        parts.append(f"idle_timeout={self.idle_timeout or 'off'}")
        parts.append(f"line_timeout={self.line_timeout or 'off'}")
        if self.delimiter is not None:
            parts.append(f"delimiter={self.delimiter!r}")
        if self.lenient is not None:
            parts.append(f"lenient={self.lenient}")
        return " ".join(parts)


#: How each Config field is checked in a config file or ``linechat.run()``.
CHECKS: dict[str, Callable[[object], Any]] = {
    "target": _text,
    "factory": _flag,
    "app_dir": _text,
    "layer": _choice(*LAYERS),
    "host": _text,
    "port": port_number,
    "unix": _text,
    "fd": lambda value: [_int(v, "a file descriptor") for v in _listed(value)],
    "tls_cert": _text,
    "tls_key": _text,
    "tls_handshake_timeout": non_negative_float,
    "max_line_length": positive_int,
    "idle_timeout": non_negative_float,
    "line_timeout": non_negative_float,
    "max_connections": positive_int,
    "grace": non_negative_float,
    "loop": _choice(*LOOPS),
    "proxy_protocol": _flag,
    "proxy_protocol_from": lambda value: [network(v) for v in _listed(value)],
    "workers": _workers,
    "reload": _flag,
    "log_level": _choice(*LOG_LEVELS),
}

assert set(CHECKS) == {f.name for f in fields(Config)} - {"options", "worker_id"}


def _listed(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else [value]


def service_options(service: Service, given: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The service's option values: ``given`` (by key) checked, defaults filled in."""
    by_key = {option.key: option for option in service.options}
    unknown = set(given) - set(by_key)
    if unknown:
        accepted = ", ".join(sorted(by_key)) or "none"
        raise ConfigError(
            f"{source}: {service.name} has no option {sorted(unknown)[0]!r} (accepted: {accepted})"
        )
    values: dict[str, Any] = {}
    for key, option in by_key.items():
        if key in given and given[key] is not None:
            values[key] = given[key]
        elif option.required:
            raise ConfigError(f"{service.name} needs --{option.name}")
        else:
            values[key] = option.default if not option.multiple else list(option.default or [])
    return values


def convert_option(option: Option, value: object) -> Any:
    """A service option's value from a config file or keyword: converted by its type."""
    if option.flag:
        return _flag(value)
    if option.multiple:
        return [convert_option(_single(option), v) for v in _listed(value)]
    return option.type(value if isinstance(value, str) else str(value))


def _single(option: Option) -> Option:
    return Option(option.name, option.help, option.type, metavar=option.metavar)


def read_config_file(path: str, service: Service | None) -> dict[str, Any]:
    """The settings in a TOML file, by Config field name (service options under ``options``).

    ``service`` may be None to read only the keys that find the target.
    """
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    own = service.options if service is not None else ()
    by_name = {option.name: option for option in own}
    accepted = sorted([name.replace("_", "-") for name in CHECKS] + list(by_name))
    values: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        try:
            if key in by_name:
                options[by_name[key].key] = convert_option(by_name[key], value)
            elif name in CHECKS and "_" not in key:
                values[name] = CHECKS[name](value)
            elif service is None:
                continue  # maybe the service's, checked once it is known
            else:
                raise ConfigError(
                    f"config file {path}: unknown key {key!r} (accepted: {', '.join(accepted)})"
                )
        except ValueError as exc:
            raise ConfigError(f"config file {path}: key {key!r}: {exc}") from None
    if options:
        values["options"] = options
    return values


def config_from_keywords(target: object, keywords: Mapping[str, Any], service: Service) -> Config:
    """A Config from ``linechat.run()``'s keywords (runner's and service's, by key)."""
    by_key = {option.key: option for option in service.options}
    values: dict[str, Any] = {"target": target}
    options: dict[str, Any] = {}
    for key, value in keywords.items():
        try:
            if key in by_key:
                options[key] = value
            elif key in CHECKS and key != "target":
                values[key] = CHECKS[key](value) if value is not None else None
            else:
                accepted = ", ".join(sorted([*CHECKS, *by_key]))
                raise ConfigError(f"unknown option {key!r} (accepted: {accepted})")
        except ValueError as exc:
            raise ConfigError(f"option {key!r}: {exc}") from None
    return Config(**values, options=options)
