"""What a guarded provider may spend before the call moves on: timeouts, retries, breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from livekit.agents import APIConnectionError, APIError, APITimeoutError

from .breaker import CircuitBreaker

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    breaker: CircuitBreaker
    # Until the first token / first audio byte / a final transcript after speech ended.
    first_timeout: float
    # The whole answer or sentence, once it started.
    total_timeout: float
    retries: int = 0

    @property
    def name(self) -> str:
        return self.breaker.name

    def admit(self) -> None:
        """Raise at once (not retryable) when the breaker skips this provider."""
        if not self.breaker.allow():
            raise APIConnectionError(f"{self.name}: circuit open, skipped", retryable=False)


class FirstItemTimeout(APITimeoutError):
    pass


async def first_item(items: AsyncIterator[T], limit: float, name: str) -> T:
    """The first item of `items`, or `FirstItemTimeout` after `limit` seconds."""
    try:
        return await asyncio.wait_for(anext(items), limit)
    except TimeoutError as exc:
        raise FirstItemTimeout(f"{name}: nothing after {limit:.2f} s", retryable=False) from exc


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout"
    return "error"


def as_api_error(exc: BaseException, name: str) -> APIError:
    """The failure as a non-retryable APIError, so a fallback adapter moves on at once."""
    if isinstance(exc, APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return APITimeoutError(f"{name}: timed out ({exc})", retryable=False)
    return APIConnectionError(f"{name}: {type(exc).__name__}: {exc}", retryable=False)
