"""Hedging a late cloud step with the local engine: whichever is ready first is used.

A hanging provider otherwise costs its whole first-item timeout before the fallback
adapter moves on. Here, once the cloud's first item (token, audio frame, transcript) is
`after` seconds late, the local engine starts in parallel; the first one ready wins and
the other is cancelled, so only one of them is ever heard. Written by hand because
livekit's FallbackAdapter runs its providers one after another, never side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from .. import metrics

C = TypeVar("C")
L = TypeVar("L")


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def race(
    cloud: Awaitable[C],
    start_local: Callable[[], Awaitable[L]],
    *,
    after: float,
    name: str,
) -> tuple[Literal["cloud"], C] | tuple[Literal["local"], L]:
    """The cloud's result if it comes within `after` s; else the first of cloud and local.

    `cloud` is already bounded by its own timeout. A cloud failure before the local engine
    is ready leaves the local one to finish; a local failure leaves the cloud to finish.
    The loser is cancelled (its late result is dropped). Cancelling `race` cancels both.
    """
    cloud_task: asyncio.Task[C] = asyncio.ensure_future(cloud)
    local_task: asyncio.Task[L] | None = None
    try:
        first_done, _ = await asyncio.wait({cloud_task}, timeout=after if after > 0 else None)
        if cloud_task in first_done:
            return "cloud", cloud_task.result()
        local_task = asyncio.ensure_future(start_local())
        pending: set[asyncio.Future[Any]] = {cloud_task, local_task}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if cloud_task in done and cloud_task.exception() is None:
                await _cancel(local_task)
                metrics.HEDGES.labels(name, "cloud").inc()
                return "cloud", cloud_task.result()
            if local_task in done and local_task.exception() is None:
                await _cancel(cloud_task)
                metrics.HEDGES.labels(name, "local").inc()
                return "local", local_task.result()
        # Both failed: the cloud's error is the one the caller of `race` reports.
        return "cloud", cloud_task.result()
    finally:
        for task in (cloud_task, local_task):
            if task is not None and not task.done():
                await _cancel(task)


def start_series(provider: str) -> None:
    """The provider's hedge counters at zero, so rate() and the dashboard see it from the start."""
    for winner in ("cloud", "local"):
        metrics.HEDGES.labels(provider, winner)
