"""How a service tells the runner what it is and what it needs.

``linechat serve TARGET`` accepts four kinds of object (see the runner):

- a :class:`~linechat.protocol.LineProtocol` subclass (the protocol layer);
- an ``async def handler(stream)`` coroutine function (the stream layer);
- with ``--factory``, a zero-argument callable returning one of the two;
- a :class:`Service`: a named service with options of its own (``--data``,
  ``--maildir``...), as the built-in services and installed ones are.

The first three may carry defaults for the runner's settings (framing,
timeouts, port) with :func:`service_defaults`; a :class:`Service` carries them
in :attr:`Service.defaults`. Either way command-line flags (and a config
file) override them.

This module is sans-I/O: it only describes. The runner (``linechat.server``)
reads these descriptions; the CLI turns :class:`Option` into flags.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from .protocol import LineProtocol
    from .stream import Handler

__all__ = [
    "DEFAULTS_ATTRIBUTE",
    "Option",
    "ServeContext",
    "Service",
    "Target",
    "defaults_of",
    "service_defaults",
]

#: What a service runs: a protocol class (protocol layer) or a handler (stream layer).
Target: TypeAlias = "type[LineProtocol] | Handler"

#: The attribute :func:`service_defaults` sets on the object it decorates.
DEFAULTS_ATTRIBUTE = "__linechat_defaults__"

#: Runner settings a service may give defaults for.
DEFAULTABLE = frozenset(
    {
        "port",
        "delimiter",
        "lenient",
        "max_line_length",
        "idle_timeout",
        "line_timeout",
        "layer",
    }
)

T = TypeVar("T")


def service_defaults(**defaults: Any) -> Callable[[T], T]:
    """Declare the runner settings a protocol class or handler needs by default.

    One decorator for both layers::

        @service_defaults(lenient=True, max_line_length=512, idle_timeout=60)
        class Upper(LineProtocol): ...

        @service_defaults(max_line_length=256, port=4343)
        async def whois(stream: LineStream) -> None: ...

    Accepted keys: ``port``, ``delimiter``, ``lenient``, ``max_line_length``,
    ``idle_timeout``, ``line_timeout``, ``layer``. Flags and config files
    override them. A subclass inherits its parent's defaults.
    """
    unknown = set(defaults) - DEFAULTABLE
    if unknown:
        raise TypeError(
            f"service_defaults() got unknown setting(s) {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(sorted(DEFAULTABLE))}"
        )

    def decorate(target: T) -> T:
        inherited = getattr(target, DEFAULTS_ATTRIBUTE, {})
        setattr(target, DEFAULTS_ATTRIBUTE, {**inherited, **defaults})
        return target

    return decorate


def defaults_of(target: object) -> dict[str, Any]:
    """The defaults declared on ``target`` with :func:`service_defaults` (may be empty)."""
    return dict(getattr(target, DEFAULTS_ATTRIBUTE, {}))


@dataclass(frozen=True)
class Option:
    """One option of a :class:`Service`: a flag, a config-file key, a keyword.

    ``name`` is the long name: ``--max-recipients`` on the command line,
    ``max-recipients`` in a config file, ``max_recipients`` in the mapping the
    service's :attr:`~Service.build` receives and in ``linechat.run()``.
    ``type`` converts a command-line string (and checks a config value, which
    is passed to it as a string too unless it already is of the right kind);
    it raises ``ValueError`` with a clear message for a bad value.
    ``flag`` options take no value (``store_true``). ``multiple`` options may
    be given several times and arrive as a list.
    """

    name: str
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    required: bool = False
    metavar: str | None = None
    flag: bool = False
    multiple: bool = False

    @property
    def key(self) -> str:
        """The keyword spelling: ``max_recipients``."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class ServeContext:
    """What the runner tells a service when it builds it in a serving process."""

    #: The server's TLS context (``--tls-cert``/``--tls-key``), for STARTTLS; None without.
    tls_context: ssl.SSLContext | None = None
    #: ``protocol`` or ``stream`` when the user chose a layer (``--layer``); else None.
    layer: str | None = None
    #: How many worker processes serve (1 without ``--workers``).
    workers: int = 1
    #: This process's worker number (1..workers), or None when not a worker.
    worker_id: int | None = None


#: What :attr:`Service.build` returns: a Target, or an async context manager yielding one.
Built: TypeAlias = Any


@dataclass(frozen=True)
class Service:
    """A named service with options of its own: what ``linechat serve NAME`` runs.

    ``build(options, context)`` is called once in each serving process, with
    the event loop running, before it listens. ``options`` maps each
    :attr:`Option.key` to its value. It returns the :data:`Target` to serve,
    or an async context manager that yields it: set-up (opening a data file,
    connecting to Redis) before the yield, clean-up after shutdown.

    ``check(options, context)``, when given, runs first and also in a
    ``--workers`` supervisor before any worker starts: it raises
    :class:`~linechat.errors.ServiceError` for options that cannot work (the
    runner reports its message and exits 2).

    ``defaults`` are the runner settings this service needs (the keys of
    :func:`service_defaults`). If the built target has a ``reload()``
    method or classmethod, the runner calls it on SIGHUP.

    ``starttls`` says the service upgrades connections to TLS itself, on the
    client's request (SMTP's STARTTLS): with ``--tls-cert/--tls-key`` the
    runner then listens in plaintext and hands the context to ``build`` as
    :attr:`ServeContext.tls_context`, instead of starting TLS on accept.
    """

    name: str
    summary: str
    build: Callable[[Mapping[str, Any], ServeContext], Built]
    options: tuple[Option, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any], ServeContext], None] | None = None
    starttls: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.defaults) - DEFAULTABLE
        if unknown:
            raise TypeError(f"Service {self.name!r}: unknown default(s) {sorted(unknown)}")
