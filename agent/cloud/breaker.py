"""Circuit breakers, one per provider endpoint, shared by every call of a worker process.

A provider that keeps failing is skipped at once instead of making each new call wait out
its timeout: after `failures` failures in a row the breaker opens; while open, requests
are refused without touching the network; after `cooldown` seconds one request is let
through as a probe (half-open), and its success closes the breaker, its failure opens it
again for another cool-down.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

from .. import metrics

logger = logging.getLogger("firstword.breaker")


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Thread-safe: calls on several job threads share one breaker per endpoint."""

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._run = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        metrics.BREAKER_STATE.labels(name).set(0)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def allow(self) -> bool:
        """Whether a request may go to the provider now (False: skip it)."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self.cooldown:
                    metrics.PROVIDER_SKIPPED.labels(self.name).inc()
                    return False
                self._set(BreakerState.HALF_OPEN, "cool-down over, probing")
            if self._probe_in_flight:
                metrics.PROVIDER_SKIPPED.labels(self.name).inc()
                return False
            self._probe_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._run = 0
            self._probe_in_flight = False
            if self._state is not BreakerState.CLOSED:
                self._set(BreakerState.CLOSED, "provider answered")

    def record_failure(self, kind: str) -> None:
        """`kind`: "error", "timeout" or "dropped"."""
        metrics.PROVIDER_FAILURES.labels(self.name, kind).inc()
        with self._lock:
            self._run += 1
            self._probe_in_flight = False
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._run >= self.failures
            ):
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN, f"{self._run} failure(s) in a row, last: {kind}")

    def release(self) -> None:
        """A request ended with neither success nor failure (the call hung up)."""
        with self._lock:
            self._probe_in_flight = False

    def _set(self, state: BreakerState, why: str) -> None:
        self._state = state
        metrics.BREAKER_STATE.labels(self.name).set(int(state))
        log = logger.info if state is BreakerState.CLOSED else logger.warning
        log(
            "circuit breaker %s is %s (%s)",
            self.name,
            state.name.lower().replace("_", "-"),
            why,
            extra={"provider": self.name, "breaker_state": state.name.lower()},
        )


_breakers: dict[str, CircuitBreaker] = {}
_lock = threading.Lock()


def breaker_for(
    name: str,
    *,
    failures: int,
    cooldown: float,
    clock: Callable[[], float] = time.monotonic,
) -> CircuitBreaker:
    """The process's breaker for one provider endpoint (made on first use, with `clock`)."""
    with _lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = _breakers[name] = CircuitBreaker(
                name, failures=failures, cooldown=cooldown, clock=clock
            )
        return breaker


def forget_breakers() -> None:
    """Drop every breaker (tests; a process otherwise keeps them for its lifetime)."""
    with _lock:
        _breakers.clear()
