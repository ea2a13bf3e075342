"""Storing messages in a Maildir: written in ``tmp/``, renamed into ``new/``.

A reader (``mailbox.Maildir``, a mail client, a test) never sees a partial
message: the file appears in ``new/`` whole, by one ``rename``. Names follow
the Maildir convention (``time.MusecPpidQn.host``), unique across processes
(the pid) and within one (the counter), and a file is created with
``O_EXCL`` so none is ever overwritten.

A message is kept in memory only up to :data:`SPILL` bytes; past that its
``tmp/`` file is opened and each batch of text is written as it arrives (a
page-cache write of at most one read's worth: a median of tens of
microseconds, bench/smtp.py ``--stalls``), so memory per connection stays
bounded whatever the size limit. :meth:`Delivery.commit` (the whole file for
a small message, then ``close`` and ``rename``) is the call that can wait on
the file system for milliseconds; the protocol runs it in a worker thread.
Files are not fsynced: this is a sink for development and tests, not a mail
store that must survive a power cut.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from pathlib import Path

__all__ = ["SPILL", "Delivery", "Maildir"]

#: A message is written to its file once it holds more than this many bytes.
SPILL = 256 * 1024
#: At most this many buffers per writev() (IOV_MAX is 1024 on Linux).
_IOV_MAX = 1024
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class Maildir:
    """A Maildir folder (``tmp/``, ``new/``, ``cur/`` are created if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tmp = str(self.path / "tmp") + os.sep
        self._new = str(self.path / "new") + os.sep
        host = socket.gethostname() or "localhost"
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._pid = os.getpid()
        self._counter = itertools.count(1)

    def unique_id(self) -> str:
        """A new message id, ``seconds.MmicrosecondsPpidQcounter``; its file adds ``.host``."""
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros}P{self._pid}Q{next(self._counter)}"

    def begin(self, ident: str, head: bytes = b"") -> Delivery:
        """Start storing message ``ident`` whose first bytes are ``head`` (its trace fields)."""
        return Delivery(self, ident, head)


class Delivery:
    """One message on its way into the Maildir: :meth:`write`, then :meth:`commit`.

    :meth:`discard` drops it (refused, connection lost), removing its
    ``tmp/`` file if one was made. An ``OSError`` (disk full...) from any
    method leaves nothing behind in ``new/``; :meth:`discard` cleans ``tmp/``.
    """

    __slots__ = ("_created", "_fd", "_maildir", "_parts", "_size", "ident", "name")

    def __init__(self, maildir: Maildir, ident: str, head: bytes) -> None:
        self._maildir = maildir
        self.ident = ident
        #: The file's name in ``tmp/`` and then ``new/``.
        self.name = f"{ident}.{maildir._host}"
        self._parts = [head] if head else []
        self._size = len(head)
        self._fd = -1
        self._created = False  # the tmp/ file exists (and is ours to remove)

    def write(self, data: bytes) -> None:
        """Add message bytes; past :data:`SPILL` they go straight to the file."""
        if self._fd >= 0:
            _write_all(self._fd, [data])
            return
        self._parts.append(data)
        self._size += len(data)
        if self._size > SPILL:
            self._open()
            parts, self._parts = self._parts, []
            _write_all(self._fd, parts)

    def commit(self) -> str:
        """Move the message into ``new/``; return its file name."""
        if self._fd < 0:
            self._open()
            parts, self._parts = self._parts, []
            _write_all(self._fd, parts)
        fd, self._fd = self._fd, -1
        os.close(fd)
        os.rename(self._maildir._tmp + self.name, self._maildir._new + self.name)
        self._created = False
        return self.name

    def discard(self) -> None:
        """Forget the message; no trace of it stays in the Maildir."""
        self._parts = []
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        if self._created:
            self._created = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._maildir._tmp + self.name)

    def _open(self) -> None:
        self._fd = os.open(self._maildir._tmp + self.name, _FLAGS, 0o600)
        self._created = True


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """Write every byte of ``chunks`` (writev, resumed after a short write)."""
    parts: list[bytes | memoryview] = list(chunks)
    while parts:
        batch = parts[:_IOV_MAX]
        written = os.writev(fd, batch)
        for index, part in enumerate(batch):
            if written < len(part):
                parts = [memoryview(part)[written:], *batch[index + 1 :], *parts[len(batch) :]]
                break
            written -= len(part)
        else:
            parts = parts[len(batch) :]
