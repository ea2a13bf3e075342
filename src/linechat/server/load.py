"""Finding what ``linechat serve TARGET`` runs: names, import strings, factories.

A TARGET is a service name (built in, from :data:`linechat.services.BUILTIN`,
or installed, from the ``linechat.services`` entry-point group) or an import
string ``module.path:attr`` (``attr`` may be dotted). Whatever it names
becomes a :class:`~linechat.service.Service`, so the runner has one thing to
run: a plain protocol class or handler is wrapped in one.

Mistakes a user makes (no such module, no such attribute, an object of the
wrong kind, a malformed TARGET) raise :class:`~linechat.errors.ConfigError`
with one clear line; an exception raised *inside* the user's module while it
is imported is their bug and comes out as
:class:`~linechat.errors.TargetImportError` with the original as its cause.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, TargetImportError
from ..protocol import LineProtocol
from ..service import ServeContext, Service, Target, defaults_of
from ..services import BUILTIN

__all__ = [
    "ENTRY_POINT_GROUP",
    "Loaded",
    "available_services",
    "check_target",
    "layer_of",
    "load",
]

#: The entry-point group where installed distributions name their services.
ENTRY_POINT_GROUP = "linechat.services"

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")

ACCEPTED = (
    "a LineProtocol subclass, an 'async def handler(stream)', a linechat.Service, "
    "or with --factory a callable returning one of the first two"
)


@dataclass(frozen=True)
class Loaded:
    """A resolved TARGET: the service to run and what the user called it."""

    #: What was asked for: a name, an import string, or the object's repr.
    target: str
    service: Service
    #: The settings it declares (``service_defaults`` or ``Service.defaults``).
    defaults: Mapping[str, Any]


def available_services() -> dict[str, str]:
    """Every service name ``linechat serve`` knows, with where it comes from.

    Built-in names win over installed ones of the same name.
    """
    found = {name: "installed: " + ep.value for name, ep in _entry_points().items()}
    found.update({name: "built in: " + value for name, value in BUILTIN.items()})
    return dict(sorted(found.items()))


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load(target: object, *, factory: bool = False, app_dir: str | None = None) -> Loaded:
    """Resolve ``target`` (a name, an import string, or the object itself).

    ``app_dir`` is put first on ``sys.path`` before anything is imported.
    """
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    if not isinstance(target, str):
        return _wrap(target, repr(target), factory)
    if ":" not in target:
        return _wrap(_import(_named(target), service=target), target, factory)
    return _wrap(_import(target), target, factory)


def _named(name: str) -> str:
    """The import string a service name stands for."""
    if name in BUILTIN:
        return BUILTIN[name]
    installed = _entry_points()
    if name in installed:
        return installed[name].value
    if not _DOTTED.match(name):
        raise ConfigError(f"malformed TARGET {name!r}: expected a service name or module:attr")
    known = ", ".join(available_services()) or "none"
    raise ConfigError(
        f"no service named {name!r} (known: {known}); "
        f"to run your own, give an import string such as {name}:attr"
    )


def _import(spec: str, service: str | None = None) -> Any:
    module_name, _, attrs = spec.partition(":")
    if not _DOTTED.match(module_name) or not _DOTTED.match(attrs):
        raise ConfigError(f"malformed TARGET {spec!r}: expected module.path:attr")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            where = f" (service {service!r})" if service else ""
            message = f"cannot import {module_name!r}{where}: no module named {missing!r}"
            raise ConfigError(message) from None
        raise TargetImportError(f"importing {module_name!r} failed") from exc
    except Exception as exc:
        raise TargetImportError(f"importing {module_name!r} failed") from exc
    value: Any = module
    for attr in attrs.split("."):
        try:
            value = getattr(value, attr)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attrs!r}") from None
    return value


def layer_of(obj: object) -> str | None:
    """``protocol`` for a LineProtocol subclass, ``stream`` for a handler, else None."""
    if isinstance(obj, type) and issubclass(obj, LineProtocol):
        return "protocol"
    if isinstance(obj, type):
        return None
    if inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 - an instance with an async __call__
    ):
        return "stream"
    return None


def check_target(obj: object, name: str) -> Target:
    """``obj`` if it can be served, else a ConfigError saying what it is."""
    if layer_of(obj) is None:
        raise ConfigError(f"{name} is {_describe(obj)}; expected {ACCEPTED}")
    target: Target = obj  # type: ignore[assignment]
    return target


def _describe(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}, not a LineProtocol subclass"
    if inspect.ismodule(obj):
        return f"the module {obj.__name__}"
    if callable(obj):
        what = getattr(obj, "__qualname__", None) or type(obj).__name__
        return f"the callable {what}, not a coroutine function (a factory needs --factory)"
    return f"a {type(obj).__name__} ({obj!r:.60})"


def _wrap(obj: object, name: str, factory: bool) -> Loaded:
    """Make any accepted object a Service."""
    if isinstance(obj, Service):
        if factory:
            raise ConfigError(f"{name} is a linechat.Service: drop --factory")
        return Loaded(name, obj, dict(obj.defaults))
    if factory:
        if not callable(obj) or layer_of(obj) is not None:
            raise ConfigError(
                f"--factory: {name} is {_describe(obj)}; expected a zero-argument callable"
            )
        make = obj

        def build_from_factory(options: Mapping[str, Any], context: ServeContext) -> Target:
            try:
                made = make()
            except Exception as exc:
                raise TargetImportError(f"the factory {name}() raised") from exc
            return check_target(made, f"what {name}() returned")

        service = Service(name=name, summary="", build=build_from_factory)
        return Loaded(name, service, defaults_of(obj))
    target = check_target(obj, name)

    def build(options: Mapping[str, Any], context: ServeContext) -> Target:
        return target

    return Loaded(name, Service(name=name, summary="", build=build), defaults_of(obj))
