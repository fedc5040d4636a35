"""One unanswered-room sweeper at a time across the fleet: a lease in Redis.

The sweep (agent/worker/unanswered.py) lists every room of the server and each busy room's
participants. Run by every worker, it costs the LiveKit server workers x rooms API calls a
second; run by one, rooms. Whoever holds this lease sweeps; the others only ask Redis, once
a sweep interval, whether the lease is free.

- The lease is one key, `firstword:unanswered:sweeper`, whose value names its holder
  (host:pid:random) and whose TTL is a few sweep intervals. Each interval, every worker runs
  one script: the holder's run extends the TTL (compare-and-extend: only if the value is
  still its own); anybody's run takes the key if it is free (SET NX PX). A holder that dies
  or stalls stops extending it, so it lapses and the next worker to ask takes over within a
  TTL plus an interval.
- Why a script of our own instead of redis-py's `Lock` (acquire = SET NX with a fresh token,
  then `reacquire` = compare-and-extend): an `acquire` whose reply is lost (timed out) leaves a
  key that nobody renews and nobody else may take, so for a whole TTL nobody sweeps. With one
  token per process and one idempotent script for both cases, a retry after a lost reply
  simply finds its own token and extends it. Release is the same compare-and-delete as Lock's.
- Fail open: every Redis call is bounded (socket and `asyncio.timeout`), redis-py's own
  retries are off, and when Redis cannot answer `turn()` says `UNREACHABLE`: the caller then
  sweeps locally, as every worker does without Redis, because a caller left waiting is the
  worst failure a phone line has and a few extra API calls during an outage are not. One
  warning when an outage starts, one a minute while it lasts, one info line when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.retry import Retry

from ..shared_cache import redacted

logger = logging.getLogger("firstword.sweep_lease")

KEY = "firstword:unanswered:sweeper"
# While Redis stays unreachable, the warning is repeated this often (not every sweep).
WARN_EVERY_S = 60.0

# KEYS[1]: the lease; ARGV[1]: this process's token; ARGV[2]: TTL in ms.
# 1: held by this process now (extended or taken); 0: held by another.
_TAKE_OR_EXTEND = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# Delete the lease only if it is still this process's (redis-py Lock's release script).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Turn(enum.Enum):
    """What `SweepLease.turn` found."""

    HOLD = "hold"  # this process holds the lease: it sweeps
    OTHER = "other"  # another process holds it: it sweeps, this one does not
    UNREACHABLE = "unreachable"  # Redis did not answer in time: sweep locally (fail open)


class SweepLease:
    """The sweeper lease of one worker process (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        timeout_s: float = 0.5,
        key: str = KEY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._timeout = timeout_s
        self._key = key
        self._clock = clock
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False  # as of the last answer from Redis
        self._outage_since: float | None = None
        self._warned_at = 0.0
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None

    def _take_or_extend_script(self) -> AsyncScript:
        if self._script is None:
            self._client = aioredis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                # One bounded attempt per sweep interval: the next interval is the retry.
                retry=Retry(NoBackoff(), 0),
                driver_info=None,  # no CLIENT SETINFO round trips when a connection opens
                decode_responses=True,
            )
            # Runs as EVALSHA, falling back to EVAL once when Redis does not have it cached.
            self._script = self._client.register_script(_TAKE_OR_EXTEND)
        return self._script

    async def turn(self) -> Turn:
        """Extend the lease if held, take it if free; whose turn it is to sweep."""
        script = self._take_or_extend_script()
        try:
            async with asyncio.timeout(self._timeout):
                mine = bool(await script(keys=[self._key], args=[self.token, self._ttl_ms]))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return Turn.UNREACHABLE
        self._answered()
        if mine != self.held:
            if mine:
                logger.info(
                    "this worker sweeps for the fleet now",
                    extra={"lease": self._key, "holder": self.token, "ttl_ms": self._ttl_ms},
                )
            else:
                logger.info(
                    "another worker holds the sweep lease now",
                    extra={"lease": self._key, "holder": self.token},
                )
        self.held = mine
        return Turn.HOLD if mine else Turn.OTHER

    async def aclose(self) -> None:
        """Hand the lease on at once (if held) and close the client; bounded, never raises."""
        client, self._client, self._script = self._client, None, None
        if client is None:
            return
        if self.held:
            self.held = False
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await client.eval(_RELEASE, 1, self._key, self.token)
        with contextlib.suppress(RedisError, OSError):
            await client.aclose()

    def _failed(self, exc: BaseException) -> None:
        now = self._clock()
        what = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
        if self._outage_since is None:
            self._outage_since = now
            self._warned_at = now
            logger.warning(
                "sweep lease: redis at %s failed (%s); this worker sweeps unanswered rooms "
                "itself until redis answers again",
                redacted(self._url),
                what,
            )
        elif now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            logger.warning(
                "sweep lease: redis at %s still failing after %.0f s (%s); sweeping locally",
                redacted(self._url),
                now - self._outage_since,
                what,
            )

    def _answered(self) -> None:
        if self._outage_since is not None:
            logger.info(
                "sweep lease: redis at %s answers again after %.0f s",
                redacted(self._url),
                self._clock() - self._outage_since,
            )
            self._outage_since = None
