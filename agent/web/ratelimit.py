"""Per-client token buckets for the token endpoint.

A token mints a room and dispatches an agent, which holds a worker slot until the caller
arrives or the wait times out; so a client may ask for a small burst and then a steady trickle.
Hand-written because it is twenty lines and the app keeps no other shared state: a library
(or Redis) would only be worth it with several web processes behind one address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`allow(key)` spends one token of `key`'s bucket; buckets refill continuously."""

    def __init__(
        self,
        burst: int,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._burst = float(burst)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str) -> float:
        """0.0 when allowed, else the seconds until the next token."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                # Forget full buckets first: they behave exactly like new ones.
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = self._refilled(bucket, now)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def wait(self, key: str) -> float:
        """What `allow` would answer, without spending: 0.0 when a token is there."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = self._refilled(bucket, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)

    def _prune(self, now: float) -> None:
        refill = self._burst / self._rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= refill]:
            del self._buckets[key]
