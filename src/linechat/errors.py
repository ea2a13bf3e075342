"""The exceptions linechat raises, in one place so every layer shares them."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the framing rules (or the framer was used out of order)."""


class LineTooLong(ProtocolError):
    """A line grew past ``max_line_length`` before its delimiter came.

    ``lines`` holds the complete lines that the same call delivered before the
    over-long one, so nothing the peer sent earlier is lost.
    """

    def __init__(self, limit: int, lines: list[bytes] | None = None) -> None:
        super().__init__(f"line longer than {limit} bytes")
        self.limit = limit
        self.lines: list[bytes] = lines if lines is not None else []


class IdleTimeout(ProtocolError):
    """The peer sent nothing for longer than the idle timeout."""


class LineTimeout(IdleTimeout):
    """One line took longer than the line deadline (``line_timeout``) to arrive.

    An :class:`IdleTimeout`, so code that handles a silent peer handles a
    dribbling one the same way.
    """


class ConnectionClosed(Exception):
    """The connection is gone; nothing more can be written or read."""


class ServiceError(Exception):
    """A service's options cannot work (a missing data file, a bad combination).

    Raised by a service's ``check`` or ``build``; the runner reports the
    message as one line and ``linechat serve`` exits 2.
    """


class ConfigError(Exception):
    """The runner's configuration cannot work: a bad TARGET, an unknown key, a conflict.

    ``linechat serve`` reports the message as one line and exits 2 (a usage
    error); ``linechat.run()`` raises it before anything listens.
    """


class TargetImportError(Exception):
    """Importing the TARGET's module raised: a bug in that module, not a usage error.

    ``__cause__`` is the module's own exception; ``linechat serve`` shows its
    traceback and exits 1.
    """


class StartupError(Exception):
    """The server could not start: an address in use, an unreadable certificate.

    ``linechat serve`` reports the message as one line and exits 1.
    """
