"""``linechat serve chat``: the service's options, its check and its build."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from ...errors import ServiceError
from ...service import Option, ServeContext, Service
from .hub import ChatConfig, ChatHub, load_motd
from .irc import MAX_LINE
from .server import ChatConnection

__all__ = ["SERVICE", "build_config"]

REDIS_MISSING = (
    "--redis needs the redis package: pip install 'linechat[chat-redis]' (redis-py >= 5)"
)


def _number(kind: Callable[[str], Any], minimum: float, what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        value = kind(text)
        if value < minimum:
            raise ValueError(f"{what} must be at least {minimum:g}, not {text}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _name(text: str) -> str:
    if not text or any(c in text for c in " ,:!@\r\n\0") or not text.isascii():
        raise ValueError(f"not a usable name: {text!r} (ASCII, no space, ',', ':', '!', '@')")
    return text


OPTIONS = (
    Option("password", "clients must send this with PASS to register", metavar="SECRET"),
    Option("motd", "the message of the day, from this file (re-read on SIGHUP)", metavar="FILE"),
    Option(
        "ping-timeout",
        "a client silent half this long is sent PING; silent this long, it is dropped",
        type=_number(float, 1, "--ping-timeout"),
        default=120.0,
        metavar="SECONDS",
    ),
    Option(
        "sendq",
        "a client with more than this many bytes waiting to be sent is dropped",
        type=_number(int, 4096, "--sendq"),
        default=256 * 1024,
        metavar="BYTES",
    ),
    Option(
        "flood-rate",
        "lines per second a client may send after its burst (0: no flood control)",
        type=_number(float, 0, "--flood-rate"),
        default=2.0,
        metavar="LINES_PER_S",
    ),
    Option(
        "flood-burst",
        "lines a client may send at once before the rate applies",
        type=_number(int, 1, "--flood-burst"),
        default=25,
        metavar="N",
    ),
    Option(
        "redis",
        "share the chat with the other servers using this Redis (redis://host:port/db)",
        metavar="URL",
    ),
    Option(
        "redis-nick-ttl",
        "with --redis: seconds a dead server's nicks stay claimed",
        type=_number(float, 1, "--redis-nick-ttl"),
        default=30.0,
        metavar="SECONDS",
    ),
    Option(
        "network",
        "the network's name (005 NETWORK=, 001)",
        type=_name,
        default="linechat",
        metavar="NAME",
    ),
    Option(
        "server-name",
        "this server's name in replies (default: the host name)",
        type=_name,
        metavar="NAME",
    ),
)


def build_config(options: Mapping[str, Any], context: ServeContext) -> ChatConfig:
    """The options as a :class:`ChatConfig`; raises ServiceError for a bad MOTD file."""
    server_name = options.get("server_name") or socket.gethostname() or "linechat.local"
    if context.worker_id is not None and not options.get("server_name"):
        server_name = f"{server_name}.w{context.worker_id}"
    motd_path = options.get("motd")
    motd = None
    if motd_path:
        try:
            motd = load_motd(motd_path)
        except OSError as exc:
            raise ServiceError(f"--motd {motd_path}: {exc.strerror or exc}") from exc
    password = options.get("password")
    return ChatConfig(
        server_name=server_name.encode(),
        network=str(options.get("network") or "linechat").encode(),
        password=password.encode() if password else None,
        motd_path=motd_path or None,
        motd=motd,
        ping_timeout=float(options.get("ping_timeout") or 120.0),
        sendq=int(options.get("sendq") or 256 * 1024),
        flood_rate=float(options.get("flood_rate", 2.0) or 0.0),
        flood_burst=int(options.get("flood_burst") or 25),
    )


def _check(options: Mapping[str, Any], context: ServeContext) -> None:
    redis_url = options.get("redis")
    if context.workers > 1 and not redis_url:
        raise ServiceError(
            "chat with --workers needs --redis URL: without it each worker would have "
            "rooms of its own and clients on different workers could not talk"
        )
    if redis_url and importlib.util.find_spec("redis") is None:
        raise ServiceError(REDIS_MISSING)
    build_config(options, context)


@contextlib.asynccontextmanager
async def _serve(options: Mapping[str, Any], context: ServeContext) -> AsyncIterator[Any]:
    _check(options, context)
    hub = ChatHub(build_config(options, context))
    backplane: Any = None
    redis_url = options.get("redis")
    if redis_url:
        from .redis_backplane import RedisBackplane

        backplane = RedisBackplane(
            hub, redis_url, nick_ttl=float(options.get("redis_nick_ttl") or 30.0)
        )
        await backplane.start()
        hub.backplane = backplane
    hub.start()
    target = type("ChatConnection", (ChatConnection,), {"__slots__": (), "hub": hub})
    try:
        yield target
    finally:
        hub.stop()
        if backplane is not None:
            await backplane.close()


def _build(options: Mapping[str, Any], context: ServeContext) -> Any:
    return _serve(options, context)


SERVICE = Service(
    name="chat",
    summary="IRC chat rooms for real IRC clients (RFC 1459/2812 client side); --redis to scale out",
    build=_build,
    options=OPTIONS,
    defaults={"port": 6667, "lenient": True, "max_line_length": MAX_LINE - 2, "idle_timeout": 0},
    check=_check,
)
