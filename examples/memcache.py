"""A memcached-compatible cache on linechat's protocol layer: counted raw reads at work.

    linechat serve examples.memcache:MemcacheProtocol --port 11311

Run from the repository root (the runner puts the current directory on
``sys.path``). It speaks memcached's text protocol (set add replace append
prepend cas get gets delete incr decr touch flush_all version quit, with
``noreply``) and answers bad input with the very lines memcached 1.6 answers;
the command parser is the sans-I/O module ``examples/memcache_commands.py``.

Data blocks are read with :meth:`LineProtocol.read_raw`, so values may hold
any byte, CRLF included. Memory is bounded: a value is at most
``max_item_size`` (memcached's ``-I``, 1 MiB) and the cache at most
``Cache.max_bytes`` (memcached's ``-m``, 64 MiB), the oldest items going first.
The cache is shared by the connections of one process.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from linechat import LineProtocol, LineTooLong, service_defaults

from .memcache_commands import (
    KEY_MAX_LENGTH,
    Arithmetic,
    Delete,
    Error,
    FlushAll,
    Quit,
    Retrieve,
    Storage,
    Touch,
    Version,
    item_size,
    parse,
    parse_counter,
)

__all__ = ["Cache", "Item", "MemcacheProtocol"]

MONTH = 60 * 60 * 24 * 30  # memcached: a longer expiry time is a Unix time
SWALLOW_CHUNK = 64 * 1024  # an over-large value is skipped this much at a time
U64 = 2**64


class Item:
    """One cached value with memcached's metadata."""

    __slots__ = ("cas", "expires", "flags", "value")

    def __init__(self, value: bytes, flags: int, expires: float, cas: int) -> None:
        self.value = value
        self.flags = flags
        self.expires = expires  # time.monotonic() deadline; 0.0 for never
        self.cas = cas


class Cache:
    """The items of one process, bounded in bytes; the oldest stored are evicted first."""

    #: Bytes of keys and values held at most, memcached's ``-m 64``.
    max_bytes: int = 64 * 1024 * 1024
    #: Bytes counted per item on top of its key and value.
    ITEM_OVERHEAD = 64

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is not None:
            self.max_bytes = max_bytes
        self.items: dict[bytes, Item] = {}
        self.size = 0
        self.last_cas = 0
        self.flush_at = 0.0  # a delayed flush_all's deadline; 0.0 for none

    def next_cas(self) -> int:
        """A new CAS unique, as memcached counts them (every store, incr/decr, flush)."""
        self.last_cas += 1
        return self.last_cas

    def get(self, key: bytes) -> Item | None:
        """The live item for ``key`` (an expired one is dropped)."""
        item = self.items.get(key)
        if item is None:
            return None
        if item.expires:
            now = time.monotonic()
            if now >= item.expires:
                self.delete(key)
                return None
        if self.flush_at and self._flush_due():
            return None
        return item

    def put(self, key: bytes, item: Item) -> None:
        """Store ``item`` (replacing any), then evict the oldest items past the bound."""
        items = self.items
        old = items.pop(key, None)  # popped, so the key is the newest in the order
        items[key] = item
        if old is None:
            self.size += len(key) + len(item.value) + self.ITEM_OVERHEAD
        else:
            self.size += len(item.value) - len(old.value)
        if self.size > self.max_bytes:
            self._evict()
        if item.expires < 0:  # stored already expired (a negative expiry time)
            self.delete(key)

    def delete(self, key: bytes) -> bool:
        old = self.items.pop(key, None)
        if old is None:
            return False
        self.size -= len(key) + len(old.value) + self.ITEM_OVERHEAD
        return True

    def flush(self, delay: int) -> None:
        """flush_all: now (as memcached, for a delay of up to 1 s), or lazily later."""
        if delay <= 1:
            self._clear()
            self.next_cas()  # memcached marks the flush with a CAS unique
        else:
            self.flush_at = deadline(delay)

    def _flush_due(self) -> bool:
        if time.monotonic() < self.flush_at:
            return False
        self._clear()
        return True

    def _clear(self) -> None:
        self.items.clear()
        self.size = 0
        self.flush_at = 0.0

    def _evict(self) -> None:
        items = self.items
        while self.size > self.max_bytes and items:
            key = next(iter(items))
            self.delete(key)


def deadline(exptime: int) -> float:
    """memcached's expiry time -> a monotonic deadline (0.0 never, -1.0 already)."""
    if exptime == 0:
        return 0.0
    if exptime < 0:
        return -1.0
    if exptime > MONTH:  # a Unix time
        left = exptime - time.time()
        return -1.0 if left <= 0 else time.monotonic() + left
    return time.monotonic() + exptime


#: The longest command line (a ``get`` of some 250 keys of the longest kind;
#: memcached takes get lines of any length). Data blocks are raw reads, not
#: lines: they are bounded by ``max_item_size``, whether they come in the
#: command's chunk or after it.
MAX_LINE_LENGTH = 64 * 1024


@service_defaults(lenient=True, port=11311, max_line_length=MAX_LINE_LENGTH)
class MemcacheProtocol(LineProtocol):
    """memcached's text protocol over one connection; the cache is shared."""

    __slots__ = ("_pending", "_swallow")

    #: The cache every connection of this class shares.
    cache: ClassVar[Cache] = Cache()
    #: The largest item (key, value and memcached's overhead), memcached's ``-I 1m``.
    max_item_size: ClassVar[int] = 1024 * 1024
    version: ClassVar[bytes] = b"VERSION 1.6.18-linechat-example"
    too_long_reply = b"CLIENT_ERROR line too long"
    #: Replies leave at the end of the event loop's turn, every connection's
    #: together: a client on the same host is woken once per turn, not once
    #: per reply (memcached's clients are often on the same host).
    defer_replies = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**{"lenient": True, "max_line_length": MAX_LINE_LENGTH, **options})
        # The storage command whose data is read; a plain set as (key, flags).
        self._pending: Storage | tuple[bytes, int] | None = None
        self._swallow = 0  # bytes of an over-large value still to skip

    # -- commands ------------------------------------------------------------

    def line_received(self, line: bytes) -> None:
        # The two commonest commands, "get KEY" and "set KEY FLAGS 0 LENGTH",
        # plain, are answered inline: no parse, no call that can be saved.
        verb = line[:4]
        if verb == b"get ":
            key = line[4:]
            # int in bytes is a memchr; bytes in bytes first tries the
            # argument as an int and formats (then drops) a TypeError.
            if 0 < len(key) <= KEY_MAX_LENGTH and 32 not in key and 0 not in key:
                cache = self.cache
                item = cache.items.get(key)
                if item is not None and (item.expires or cache.flush_at):
                    item = cache.get(key)  # expired, or a delayed flush due
                if item is None:
                    self.write_raw(b"END\r\n")
                else:
                    value = item.value
                    self.write_raw(
                        b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, item.flags, len(value), value)
                    )
                return
        elif verb == b"set " and 0 not in line:  # NUL
            tokens = line.split(b" ")
            if len(tokens) == 5:
                _, key, flag_text, time_text, length_text = tokens
                if (
                    0 < len(key) <= KEY_MAX_LENGTH
                    and time_text == b"0"
                    and len(flag_text) < 10
                    and len(length_text) < 10
                    and flag_text.isdigit()
                    and length_text.isdigit()
                ):
                    flags = 0 if flag_text == b"0" else int(flag_text)  # (int() is dear)
                    length = int(length_text)
                    # memcached's item_size(), inline: 48 + key + 1 + (4) + length + 2 + 8
                    size = 59 + len(key) + length + (4 if flags else 0)
                    if size <= self.max_item_size:
                        self._pending = (key, flags)  # lighter than a Storage
                        self.read_raw(length + 2)
                        return
        command = parse(line)
        if isinstance(command, Retrieve):
            self._retrieve(command)
        elif isinstance(command, Storage):
            self._storage(command)
        elif isinstance(command, Error):
            if command.line is not None:
                self.write_line(command.line)
        elif isinstance(command, Delete):
            self._delete(command)
        elif isinstance(command, Arithmetic):
            self._arithmetic(command)
        elif isinstance(command, Touch):
            self._touch(command)
        elif isinstance(command, FlushAll):
            self.cache.flush(command.delay)
            self._reply(b"OK", command.noreply)
        elif isinstance(command, Version):
            self.write_line(self.version)
        elif isinstance(command, Quit):
            self.close()

    def _reply(self, line: bytes, noreply: bool) -> None:
        if not noreply:
            self.write_line(line)

    def _retrieve(self, command: Retrieve) -> None:
        get, keys = self.cache.get, command.keys
        if len(keys) == 1 and not command.with_cas:
            self._get_one(keys[0])
            return
        out = []
        for key in keys:
            item = get(key)
            if item is None:
                continue
            value = item.value
            if command.with_cas:
                out.append(b"VALUE %s %d %d %d\r\n" % (key, item.flags, len(value), item.cas))
            else:
                out.append(b"VALUE %s %d %d\r\n" % (key, item.flags, len(value)))
            out.append(value)
            out.append(b"\r\n")
        out.append(b"END\r\n")
        self.write_raw(b"".join(out))

    def _get_one(self, key: bytes) -> None:
        """``get KEY``: one format, one write."""
        item = self.cache.get(key)
        if item is None:
            self.write_raw(b"END\r\n")
        else:
            value = item.value
            self.write_raw(
                b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, item.flags, len(value), value)
            )

    def _storage(self, command: Storage) -> None:
        size = item_size(len(command.key), command.length, command.flags)
        if size > self.max_item_size:
            # Too large: answer, skip the data without holding it, and (as
            # memcached does for set) drop the old value rather than keep it stale.
            self._reply(b"SERVER_ERROR object too large for cache", command.noreply)
            if command.verb == b"set":
                self.cache.delete(command.key)
            self._swallow = command.length + 2
            self.read_raw(min(self._swallow, SWALLOW_CHUNK))
            return
        self._pending = command
        self.read_raw(command.length + 2)

    def raw_received(self, data: bytes) -> None:
        if self._swallow:
            self._swallow -= len(data)
            if self._swallow:
                self.read_raw(min(self._swallow, SWALLOW_CHUNK))
            return
        command = self._pending
        self._pending = None
        if command is None:
            return
        if command.__class__ is tuple:
            # A plain set (the commonest store), inline: _store() without its calls.
            key, flags = command
            cache = self.cache
            if not data.endswith(b"\r\n"):
                self.write_raw(b"CLIENT_ERROR bad data chunk\r\n")
            elif cache.flush_at:
                self.write_raw(self._store(Storage(b"set", key, flags, 0, 0, 0, False), data[:-2]))
            else:
                cache.last_cas += 1
                cache.put(key, Item(data[:-2], flags, 0.0, cache.last_cas))
                self.write_raw(b"STORED\r\n")
            return
        assert isinstance(command, Storage)
        if not data.endswith(b"\r\n"):
            self._reply(b"CLIENT_ERROR bad data chunk", command.noreply)
            return
        reply = self._store(command, data[:-2])
        if not command.noreply:
            self.write_raw(reply)

    def _store(self, command: Storage, value: bytes) -> bytes:
        """Store per ``command``; the reply line, CRLF included."""
        cache, key, verb = self.cache, command.key, command.verb
        if verb == b"set":
            if cache.flush_at:
                cache.get(key)  # a delayed flush that is due happens first
            exptime = command.exptime
            expires = 0.0 if exptime == 0 else deadline(exptime)
            cache.put(key, Item(value, command.flags, expires, cache.next_cas()))
            return b"STORED\r\n"
        old = cache.get(key)
        if verb == b"add":
            if old is not None:
                return b"NOT_STORED\r\n"
        elif verb == b"replace":
            if old is None:
                return b"NOT_STORED\r\n"
        elif verb == b"cas":
            if old is None:
                return b"NOT_FOUND\r\n"
            if old.cas != command.cas:
                return b"EXISTS\r\n"
        else:  # append, prepend: the old item's flags and expiry stay
            if old is None:
                return b"NOT_STORED\r\n"
            value = old.value + value if verb == b"append" else value + old.value
            if item_size(len(key), len(value), old.flags) > self.max_item_size:
                return b"NOT_STORED\r\n"
            cache.put(key, Item(value, old.flags, old.expires, cache.next_cas()))
            return b"STORED\r\n"
        item = Item(value, command.flags, deadline(command.exptime), cache.next_cas())
        cache.put(key, item)
        return b"STORED\r\n"

    def _delete(self, command: Delete) -> None:
        found = self.cache.get(command.key) is not None and self.cache.delete(command.key)
        self._reply(b"DELETED" if found else b"NOT_FOUND", command.noreply)

    def _arithmetic(self, command: Arithmetic) -> None:
        cache = self.cache
        item = cache.get(command.key)
        if item is None:
            self._reply(b"NOT_FOUND", command.noreply)
            return
        number = parse_counter(item.value)
        if number is None:
            reply = b"CLIENT_ERROR cannot increment or decrement non-numeric value"
            self._reply(reply, command.noreply)
            return
        delta = command.delta
        number = (number + delta) % U64 if command.incr else max(0, number - delta)
        digits = b"%d" % number
        old = item.value
        if len(digits) <= len(old):  # memcached rewrites in place, padding with spaces
            item.value = digits + b" " * (len(old) - len(digits))
            item.cas = cache.next_cas()
        else:
            cache.put(command.key, Item(digits, item.flags, item.expires, cache.next_cas()))
        self._reply(digits, command.noreply)

    def _touch(self, command: Touch) -> None:
        item = self.cache.get(command.key)
        if item is None:
            self._reply(b"NOT_FOUND", command.noreply)
            return
        item.expires = deadline(command.exptime)
        if item.expires < 0:
            self.cache.delete(command.key)
        self._reply(b"TOUCHED", command.noreply)

    def line_too_long(self, exc: LineTooLong) -> None:
        """memcached drops such a peer silently; this answers why, then closes."""
        self.write_line(self.too_long_reply)
        self.close()
