"""Listening sockets, and accepting on them without flooding the log.

- :func:`bind_tcp`: ``host:port``; ``localhost`` means 127.0.0.1 and ::1 on
  one port (even when the port is 0).
- :func:`bind_unix`: a Unix socket path, taken only if nothing listens there
  (probed with a connect); a stale socket file is replaced, anything else at
  the path is an error. :func:`release_unix` removes it on exit only if the
  file is still the one we bound.
- :func:`inherited`: sockets handed over by systemd (``LISTEN_FDS``,
  :func:`systemd_fds`) or by number (``--fd``).
- :class:`Acceptor`: accepts in batches when a listener is readable. When
  accept() fails (out of file descriptors, most often) it stops watching the
  listener for a while, doubling the pause while failures go on, and logs one
  line per :data:`LOG_EVERY` seconds, whatever the loop (asyncio retries such
  an accept up to ``backlog`` times per wake-up and logs every failure; uvloop
  logs nothing at all).
- What an accepted descriptor is handed on as: a socket object
  (:func:`accepted_socket`), or, to uvloop, which takes the descriptor over
  itself, an :class:`AcceptedFd` (no socket object to build per connection).
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = [
    "LOG_EVERY",
    "AcceptedFd",
    "AcceptedSocket",
    "Acceptor",
    "accepted_socket",
    "bind_tcp",
    "bind_unix",
    "inherited",
    "release_unix",
    "socket_kind",
    "systemd_fds",
]

log = logging.getLogger("linechat.server")

BACKLOG = 1024
#: Connections accepted per wake-up at most (others wait for the next turn).
BATCH = 64
#: The first pause after a failed accept, and the longest.
PAUSE_FIRST, PAUSE_MAX = 0.05, 1.0
#: At most one log line per this many seconds about failing accepts.
LOG_EVERY = 10.0
#: The first fd systemd passes (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3


def bind_tcp(host: str | None, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (``localhost``: both loopbacks, one port)."""
    if host == "localhost":
        first = _bind_one(socket.AF_INET, ("127.0.0.1", port), reuse_port)
        port = first.getsockname()[1]
        try:
            return [first, _bind_one(socket.AF_INET6, ("::1", port, 0, 0), reuse_port)]
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                first.close()
                raise
            log.debug("::1 unavailable (%s): listening on IPv4 only", exc)
            return [first]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(infos):
            sockets.append(_bind_one(family, address, reuse_port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_one(family: int, address: Any, reuse_port: bool) -> socket.socket:
    # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio sets TCP_NODELAY
    # only on sockets whose proto says TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_unix(path: str) -> tuple[socket.socket, tuple[int, int]]:
    """A listening Unix socket at ``path``, and the file's identity (device, inode).

    Raises OSError with a clear ``strerror``: EADDRINUSE when a server
    answers at ``path``, EEXIST when something other than a socket is there.
    """
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(found.st_mode):
            raise OSError(errno.EEXIST, "the path exists and is not a socket", path)
        if _answers(path):
            raise OSError(errno.EADDRINUSE, "another server is listening there", path)
        os.unlink(path)  # stale: left by a server that is gone
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        made = os.lstat(path)
    except OSError:
        sock.close()
        raise
    return sock, (made.st_dev, made.st_ino)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # a full backlog (EAGAIN) or the like: someone is there
        return True


def release_unix(path: str, identity: tuple[int, int]) -> None:
    """Remove the socket file at ``path`` if it is still the one we made."""
    try:
        found = os.lstat(path)
    except OSError:
        return
    if (found.st_dev, found.st_ino) == identity:
        with contextlib.suppress(OSError):
            os.unlink(path)


def systemd_fds(environ: MutableMapping[str, str] | None = None) -> list[int]:
    """The sockets systemd passed this process (sd_listen_fds), or [].

    As sd_listen_fds(unset_environment=1): the variables are removed, so
    that child processes do not take the sockets for theirs.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        number = int(count)
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(0, number)))


def inherited(fds: list[int]) -> list[socket.socket]:
    """Socket objects for inherited listening sockets; OSError names a bad one."""
    sockets = []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise OSError(exc.errno, f"fd {fd} is not a socket ({exc.strerror})") from None
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.detach()
            raise OSError(errno.EINVAL, f"fd {fd} is not a listening stream socket")
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


class AcceptedSocket(socket.socket):
    """An accepted connection's socket, whose ``family`` and ``type`` are plain ints.

    The event loop reads them for every connection; socket.socket converts
    them to enums each time, which cost more than the rest of the accept.
    """

    __slots__ = ()
    family = _socket.socket.family  # type: ignore[assignment]
    type = _socket.socket.type  # type: ignore[assignment]

    def release(self) -> None:
        """Close the descriptor, unless a transport took it (then it was detached)."""
        self.close()


def socket_kind(listener: socket.socket) -> tuple[int, int, int]:
    """What a socket accepted on ``listener`` is (family, type, proto), as plain ints.

    Asked once per listener: the socket object's properties make enums each time.
    """
    return int(listener.family), int(listener.type), listener.proto


def accepted_socket(kind: tuple[int, int, int], fd: int) -> AcceptedSocket:
    """A socket object for ``fd``, of the ``kind`` :func:`socket_kind` gave."""
    return AcceptedSocket(*kind, fileno=fd)


class AcceptedFd:
    """An accepted descriptor standing in for its socket, for uvloop's transports.

    uvloop's ``connect_accepted_socket`` reads ``family``, ``type`` and
    ``fileno()``, opens its transport on the descriptor (libuv closes it with
    the transport), and then calls ``close()`` on what it was given: here
    that only forgets the number. A socket object would cost a Python
    constructor, a ``getsockname()`` system call (the socket module checks
    the descriptor) and a ``detach()`` at the close. :meth:`release` closes
    a descriptor no transport took (a set-up that failed first).
    """

    __slots__ = ("family", "fd")
    type = socket.SOCK_STREAM

    def __init__(self, fd: int, family: int) -> None:
        self.fd = fd
        self.family = family

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """The transport closed the descriptor (uvloop calls this): forget it."""
        self.fd = -1

    def release(self) -> None:
        """Close the descriptor if no transport took it; then forget it."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class Acceptor:
    """Accept on ``listener`` whenever it is readable; hand each descriptor on.

    ``on_accept(fd, address)`` is called for each connection of a wake-up,
    then ``on_batch()`` once (if given).

    Out of descriptors (or any accept failure), it stops watching the
    listener for a pause (doubling up to :data:`PAUSE_MAX` while failures
    go on), so a peer that exhausts descriptors costs neither a busy loop nor
    a log line per attempt: one line per :data:`LOG_EVERY` s says how many
    accepts failed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        on_accept: Callable[[int, Any], None],
        failures: AcceptFailures,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.on_accept = on_accept
        self.on_batch = on_batch
        self.failures = failures
        self.fd = listener.fileno()
        self._pause = PAUSE_FIRST
        self._timer: asyncio.TimerHandle | None = None
        self._watching = False

    def start(self) -> None:
        if not self._watching:
            self.loop.add_reader(self.fd, self._ready)
            self._watching = True

    def close(self) -> None:
        if self._watching:
            self.loop.remove_reader(self.fd)
            self._watching = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ready(self) -> None:
        accept = self.listener._accept  # type: ignore[attr-defined]
        on_accept = self.on_accept
        accepted = 0
        try:
            for _ in range(BATCH):
                try:
                    fd, address = accept()
                except (BlockingIOError, InterruptedError):
                    return
                except ConnectionAbortedError:
                    continue  # the peer gave up while queued
                except OSError as exc:
                    self._paused(exc)
                    return
                accepted += 1
                self._pause = PAUSE_FIRST
                on_accept(fd, address)
        finally:
            if accepted and self.on_batch is not None:
                self.on_batch()

    def _paused(self, exc: OSError) -> None:
        self.close()
        self.failures.failed(exc, self._pause)
        self._timer = self.loop.call_later(self._pause, self._resume)
        self._pause = min(self._pause * 2, PAUSE_MAX)

    def _resume(self) -> None:
        self._timer = None
        self.start()


class AcceptFailures:
    """One rate-limited log line for the failed accepts of all of a server's listeners."""

    def __init__(self) -> None:
        self.count = 0  # failures not yet reported
        self.total = 0
        self._last_log = -LOG_EVERY

    def failed(self, exc: OSError, pause: float) -> None:
        self.count += 1
        self.total += 1
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            log.warning(
                "accept failed %d time(s) since the last report: %s; "
                "new connections wait (pausing accepts %.2f s at a time)",
                self.count,
                exc.strerror or exc,
                pause,
            )
            self.count = 0
            self._last_log = now


def describe_errno(exc: OSError) -> str:
    """A short reason for a failed listen: ours when we raised it, else the system's."""
    if exc.errno == errno.EADDRINUSE and exc.strerror == "Address already in use":
        return "address already in use"
    return exc.strerror or str(exc)
