"""A per-client rate limiter with bounded memory (sans-I/O: the clock is passed in).

A token bucket per client: ``per_minute`` queries at once, refilling at
``per_minute`` a minute. The table holds at most ``max_clients`` buckets:
when it is full, buckets that have refilled (they carry no information) are
dropped, then the oldest ones, down to three quarters of the bound, so a
flood of new addresses costs O(1) per query on average and never grows
memory. Under such a flood the oldest clients may be forgotten (and start
afresh): the bound on memory wins over exactness.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["DEFAULT_MAX_CLIENTS", "RateLimiter", "client_key", "parse_rate"]

DEFAULT_MAX_CLIENTS = 65536

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """``N/minute`` (also ``/second``, ``/hour``; a bare ``N`` is per minute) -> per minute.

    ``0`` turns the limit off. Raises ``ValueError`` with a clear message.
    """
    count, _, period = text.strip().partition("/")
    seconds = _PERIODS.get(period.strip() or "minute")
    try:
        number = float(count)
    except ValueError:
        number = -1.0
    if seconds is None or not number >= 0 or number == float("inf"):
        raise ValueError(f"rate must look like 60/minute (or N/second, N/hour): {text!r}")
    return number * 60.0 / seconds


def client_key(peer: Any) -> Hashable:
    """What one client is: its IPv4 address, or its IPv6 /64 (one host's usual share).

    An IPv4-mapped IPv6 address counts as the IPv4 address. A peer without an
    IP address (a Unix socket) is one client.
    """
    if not isinstance(peer, tuple) or not peer:
        return "local"
    host = peer[0]
    if not isinstance(host, str) or ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return int(address) >> 64


class RateLimiter:
    """Allow each client ``per_minute`` queries a minute (token bucket)."""

    __slots__ = ("_buckets", "_clock", "capacity", "max_clients", "refill")

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float],
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0  # tokens a second
        self.max_clients = max_clients
        self._clock = clock
        # client -> [tokens, when last counted]; insertion order is age.
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, client: Hashable) -> bool:
        """Count one query from ``client``; False if it is over its rate."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._make_room(now)
            self._buckets[client] = [self.capacity - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.refill
        if tokens > self.capacity:
            tokens = self.capacity
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def _make_room(self, now: float) -> None:
        buckets = self._buckets
        capacity, refill = self.capacity, self.refill
        full = [
            client
            for client, (tokens, last) in buckets.items()
            if tokens + (now - last) * refill >= capacity
        ]
        for client in full:
            del buckets[client]
        target = self.max_clients * 3 // 4
        if len(buckets) > target:
            for client in list(buckets)[: len(buckets) - target]:
                del buckets[client]
