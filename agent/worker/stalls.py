"""Stalls a caller can hear: garbage-collection pauses and the lag of each call's event loop.

A call's audio runs on its event loop: a loop that cannot run for 100 ms delays every frame
the caller hears and every frame the VAD reads by that much. With the thread executor every
call of the worker shares one Python heap, so one full garbage collection stalls every call
at once (the issue-24 burst: "event loop blocked for 1084ms ... gc_time 1.06").

- `tune_gc()` (once per process, at the end of prewarm): `gc.freeze()` moves everything
  prewarm allocated (engines, their sessions, accounts, cached audio's objects) to the
  permanent generation, so no collection walks it again; and a larger first-generation
  threshold, so the frames, events and protobuf messages of live calls are collected in
  fewer, equally short passes. Measured with scripts/bench-load.sh (benchmarks/RESULTS.md).
- `refreeze_if_idle()`: when a call ends and none is left on the process, a full
  collection and a second freeze, so what was made after prewarm and lives on (lazy imports,
  answer audio, first-use caches) leaves the later full collections as well.
- `watch_gc()`: the duration of every collection, by generation, as
  `firstword_gc_pause_seconds` (a `gc.callbacks` hook: the interpreter's own, nothing
  sampled).
- `watch_loop()`: this loop's lag, as `firstword_event_loop_lag_seconds`, from a timer that
  asks to run every `_TICK_S` and records how late it ran. livekit-agents' own loop monitor
  (`telemetry.loop_monitor`) reports only blocks over 100 ms, as log lines and OpenTelemetry
  spans; the distribution (its p99) and the stalls under 100 ms are what capacity is sized
  by, so we keep a histogram of our own (a timer handle, no task; stopped with the call).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram

logger = logging.getLogger("firstword.stalls")

# Fine below 100 ms (the target for the longest stall) and up to seconds (what was seen).
_STALL_BUCKETS = (
    0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
)  # fmt: skip
GC_PAUSE = Histogram(
    "firstword_gc_pause_seconds",
    "Duration of each garbage collection of the worker's Python heap (every call waits).",
    ["generation"],
    buckets=_STALL_BUCKETS,
)
LOOP_LAG = Histogram(
    "firstword_event_loop_lag_seconds",
    "How late a call's event loop ran a timer due every 0.1 s (audio waits as long).",
    buckets=_STALL_BUCKETS,
)
_TICK_S = 0.1

# CPython's default is (700, 10, 10). 700 allocations is a few frames of a few calls, so
# the youngest generation is collected hundreds of times a second under load; 10x as many
# keeps each pass short (the young objects are mostly dead) and the passes 10x fewer.
GC_THRESHOLDS = (7000, 10, 10)


@dataclass
class _GcClock:
    started: float = 0.0


_gc_clock = _GcClock()
_gc_watching = False


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_clock.started = time.perf_counter()
    elif _gc_clock.started:
        GC_PAUSE.labels(str(info.get("generation", "?"))).observe(
            time.perf_counter() - _gc_clock.started
        )
        _gc_clock.started = 0.0


def watch_gc() -> None:
    """Time every garbage collection of this process (idempotent)."""
    global _gc_watching
    if not _gc_watching:
        gc.callbacks.append(_on_gc)
        _gc_watching = True


def tune_gc(thresholds: tuple[int, int, int] | None = GC_THRESHOLDS) -> int:
    """Freeze what prewarm allocated and set the thresholds; the objects frozen now.

    Called at the end of prewarm, when the engines are loaded: a collection first (so
    garbage from loading is not kept for good), then the freeze. `thresholds` None keeps
    the interpreter's (FIRSTWORD_GC_TUNING=off, to measure against).
    """
    gc.collect()
    gc.freeze()
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    frozen = gc.get_freeze_count()
    logger.info(
        "garbage collector tuned",
        extra={"frozen_objects": frozen, "gc_thresholds": list(gc.get_threshold())},
    )
    return frozen


# A worker may go idle many times a minute; one collection per this interval is plenty.
REFREEZE_MIN_INTERVAL_S = 60.0
_refreeze_lock = threading.Lock()
_last_refreeze = -REFREEZE_MIN_INTERVAL_S


def refreeze_if_idle(is_idle: Callable[[], bool]) -> bool:
    """With no call on the process: collect everything, then freeze what is left (True if so).

    `tune_gc` freezes what prewarm made, but much is made after it and lives as long: the
    modules the first calls import lazily, the answer audio rendered after prewarm, caches
    and clients built on first use. Every full collection walks all of it again, with every
    call's audio stalled meanwhile (the load bench saw gen-2 pauses of 240-300 ms at 6-8
    conversations). A moment when no call is on the process costs no caller anything, so the
    long-lived objects of that moment are moved out of the collections too. Frozen objects
    are still freed by reference counting; only cycles among them would stay.
    """
    global _last_refreeze
    with _refreeze_lock:
        now = time.monotonic()
        if now - _last_refreeze < REFREEZE_MIN_INTERVAL_S or not is_idle():
            return False
        _last_refreeze = now
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
    logger.info(
        "garbage collector refrozen while idle",
        extra={
            "frozen_objects": gc.get_freeze_count(),
            "pause_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return True


class LoopWatch:
    """Records this loop's lag every `_TICK_S` until stopped."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        self._due = self._loop.time() + _TICK_S
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        LOOP_LAG.observe(max(0.0, now - self._due))
        self._due = now + _TICK_S
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def watch_loop() -> LoopWatch:
    """Start recording the running loop's lag; `stop()` it when the call ends."""
    watch = LoopWatch(asyncio.get_running_loop())
    watch.start()
    return watch
