"""Redis as a cache shared by every worker, failing open to memory and disk.

What one worker rendered (a cloud voice's audio) or answered (a cloud model's reply) is put
in Redis (`REDIS_URL`), so the other workers reuse it instead of paying the provider again.
Redis is a help, never a dependency of a call:

- every operation is async (redis-py's asyncio client) and bounded by
  `FIRSTWORD_REDIS_TIMEOUT`, socket and all; the client's own retries are off;
- the first failure (refused, reset, timed out) logs ONE warning, and Redis is then left
  alone for `FIRSTWORD_REDIS_RETRY_AFTER` seconds: calls in that time do not wait on it at
  all. After that one operation tries again; when it works, one info line says so. A later
  outage warns once again;
- writes go in the background (`write_soon`), so an answer never waits for one, and a call
  opens its connection in the background after its first word (`warm`).

Clients are per event loop: redis-py's asyncio connections belong to the loop that opened
them, and each call runs on its own loop (a job thread or process). `close_loop` (a call's
shutdown callback) waits briefly for that call's writes and closes its client. The
process-wide part is the health state above, shared by every call of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

logger = logging.getLogger("firstword.shared_cache")
T = TypeVar("T")

PREFIX = "firstword:cache"
# A call's pending writes get this long at the end of the call; then they are dropped.
_CLOSE_WAIT_S = 1.0


def redacted(url: str) -> str:
    """host:port of a Redis URL, for logs (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


class SharedCache:
    """The Redis layer of the caches, shared by the calls of a process (see module doc)."""

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float = 0.1,
        retry_after: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._outage = False  # warned about a failure and not yet back
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._writes: dict[asyncio.AbstractEventLoop, set[asyncio.Task[None]]] = {}

    @property
    def configured(self) -> bool:
        return self._url is not None

    @property
    def available(self) -> bool:
        """Configured and not in the quiet period after a failure."""
        with self._lock:
            return self._url is not None and self._clock() >= self._down_until

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                assert self._url is not None
                client = aioredis.from_url(
                    self._url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    # No retries of its own: one bounded attempt, then the cache fails open.
                    retry=Retry(NoBackoff(), 0),
                    # No CLIENT SETINFO round trips when a connection opens.
                    lib_name=None,
                    lib_version=None,
                    decode_responses=False,
                )
                self._clients[loop] = client
            return client

    async def run(self, what: str, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T | None:
        """`op` on this loop's client within the timeout; None when Redis is off or failed."""
        if not self.available:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                result = await op(self._client())
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(what, exc)
            return None
        self._succeeded()
        return result

    def _failed(self, what: str, exc: BaseException) -> None:
        assert self._url is not None
        with self._lock:
            self._down_until = self._clock() + self._retry_after
            first = not self._outage
            self._outage = True
        if first:
            logger.warning(
                "redis cache at %s failed (%s: %s); caches use memory and disk only, "
                "trying redis again in %.0f s",
                redacted(self._url),
                what,
                type(exc).__name__ if isinstance(exc, TimeoutError) else exc,
                self._retry_after,
            )

    def _succeeded(self) -> None:
        with self._lock:
            back = self._outage
            self._outage = False
        if back and self._url is not None:
            logger.info("redis cache at %s answers again", redacted(self._url))

    def write_soon(self, what: str, op: Callable[[aioredis.Redis], Awaitable[object]]) -> None:
        """Run a write in the background on this loop; `close_loop` waits for it."""
        if not self.available:
            return
        loop = asyncio.get_running_loop()

        async def write() -> None:
            await self.run(what, op)

        task = loop.create_task(write())
        with self._lock:
            pending = self._writes.setdefault(loop, set())
            pending.add(task)
        task.add_done_callback(pending.discard)

    def warm(self) -> None:
        """Open this loop's connection in the background (a call does it after its first
        word), so the first lookup on the answer path does not pay for the connect."""
        self.write_soon("connect", lambda r: r.ping())

    async def close_loop(self, *_args: object) -> None:
        """End this loop's use of Redis: wait briefly for its writes, close its client."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pending = set(self._writes.pop(loop, set()))
            client = self._clients.pop(loop, None)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=_CLOSE_WAIT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
