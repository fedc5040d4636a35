"""Prometheus metrics of the worker and its calls, and the HTTP endpoint that serves them.

Calls run either as threads of the worker process or as child processes
(`FIRSTWORD_JOB_EXECUTOR`). Threads write to this process's registry. Child processes write
through prometheus_client's multiprocess mode into `PROMETHEUS_MULTIPROC_DIR`, which the
LiveKit worker sets before it starts the process pool; the endpoint then reads that
directory. Metric names are documented in the README.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    multiprocess,
    start_http_server,
)
from prometheus_client.registry import Collector

logger = logging.getLogger("firstword.metrics")

_SECONDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

TIME_TO_FIRST_WORD = Histogram(
    "firstword_time_to_first_word_seconds",
    "From the job request to the first greeting frame on the agent's track.",
    ["account"],
    buckets=_SECONDS,
)
CALL_STAGE = Histogram(
    "firstword_call_stage_seconds",
    "Duration of each start-up stage of a call (see agent/timeline.py).",
    ["stage"],
    buckets=_SECONDS,
)
PREWARM = Histogram(
    "firstword_prewarm_seconds",
    "Prewarm of a job process (or thread): engines, accounts, greetings.",
    buckets=_SECONDS,
)
ACTIVE_CALLS = Gauge(
    "firstword_active_calls",
    "Calls in progress.",
    multiprocess_mode="livesum",
)
GREETING_CACHE = Counter(
    "firstword_greeting_cache_total",
    "Greetings served from the audio cache (hit) or synthesised during the call (miss).",
    ["result"],
)

BREAKER_STATE = Gauge(
    "firstword_provider_breaker_state",
    "Circuit breaker of a cloud provider endpoint: 0 closed, 1 half-open (probing), 2 open.",
    ["provider"],
    multiprocess_mode="max",
)
PROVIDER_FAILURES = Counter(
    "firstword_provider_failures_total",
    "Failed requests to a cloud provider, by kind: error, timeout or dropped (mid-stream).",
    ["provider", "kind"],
)
PROVIDER_SKIPPED = Counter(
    "firstword_provider_skipped_total",
    "Requests not sent to a provider because its circuit breaker was open.",
    ["provider"],
)
RESCUES = Counter(
    "firstword_provider_rescues_total",
    "Utterances or sentences a provider left unfinished, completed by the local engine.",
    ["provider"],
)

HEDGES = Counter(
    "firstword_provider_hedges_total",
    "Cloud steps that were late, so the local engine raced them; winner: cloud or local.",
    ["provider", "winner"],
)


def _registry() -> CollectorRegistry:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and Path(directory).is_dir() and any(Path(directory).glob("*.db")):
        # Child processes have written here: their files hold every call's metrics.
        registry = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(registry, path=directory)
        return registry
    return REGISTRY


class _Source(Collector):
    """Picks the source on each scrape: child processes' files appear only once they run."""

    def collect(self) -> Iterable[Metric]:
        return _registry().collect()


def serve(port: int, host: str = "127.0.0.1") -> int | None:
    """Serve `/metrics` on a daemon thread; returns the bound port (None when disabled)."""
    if port < 0:
        return None
    server, _thread = start_http_server(port, addr=host, registry=_Source())
    bound = int(server.server_address[1])
    logger.info("metrics listening on http://%s:%d/metrics", host, bound)
    return bound
