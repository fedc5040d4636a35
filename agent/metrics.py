"""Prometheus metrics of the worker and its calls.

Calls run either as threads of the worker process or as child processes
(`FIRSTWORD_JOB_EXECUTOR`). Threads write to this process's registry. Child processes write
through prometheus_client's multiprocess mode into `PROMETHEUS_MULTIPROC_DIR`, which the
LiveKit worker sets before it starts the process pool. livekit-agents' own endpoint serves
them (`AgentServer(prometheus_port=...)`): it reads that directory when it is set, else this
process's registry. Metric names are documented in the README.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)

_SECONDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

TIME_TO_FIRST_WORD = Histogram(
    "firstword_time_to_first_word_seconds",
    "From the job request to the first greeting frame on the agent's track.",
    ["account"],
    buckets=_SECONDS,
)
CALL_STAGE = Histogram(
    "firstword_call_stage_seconds",
    "Duration of each start-up stage of a call (see agent/call/timeline.py).",
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
    "Live calls in a conversation: counted until the caller leaves or the session closes, "
    "not until the job is torn down (held calls are in firstword_calls_on_hold).",
    multiprocess_mode="livesum",
)
JOBS_REDISPATCHED = Counter(
    "firstword_jobs_redispatched_total",
    "Calls picked up again after their worker died (see agent/worker/recovery.py).",
)
CALLS_REDISPATCHED_UNANSWERED = Counter(
    "firstword_unanswered_calls_redispatched_total",
    "Rooms whose caller had no agent (their dispatch failed) dispatched again"
    " (see agent/worker/unanswered.py).",
)
_CAPACITY_CALLS_HELP = (
    "Conversations this worker takes before new calls are put on hold (FIRSTWORD_MAX_CALLS)."
)
_WORKER_LOAD_HELP = "The load this worker reports to the LiveKit server (0..1; 1 means full)."
CAPACITY_CALLS = Gauge("firstword_capacity_calls", _CAPACITY_CALLS_HELP, multiprocess_mode="max")
WORKER_LOAD = Gauge("firstword_worker_load", _WORKER_LOAD_HELP, multiprocess_mode="max")
CALLS_ON_HOLD = Gauge(
    "firstword_calls_on_hold",
    "Calls now in hold mode, waiting for a conversation slot.",
    multiprocess_mode="livesum",
)
CALLS_OVERFLOWED = Counter(
    "firstword_calls_overflowed_total",
    "Calls that started in hold mode because every conversation slot was taken.",
)
AGENT_WAIT = Histogram(
    "firstword_agent_wait_seconds",
    "From the caller joining the room (as the server reports it) to the agent's job request.",
    buckets=_SECONDS,
)
GREETING_CACHE = Counter(
    "firstword_greeting_cache_total",
    "Greetings served from the audio cache (hit) or synthesised during the call (miss).",
    ["result"],
)
SIP_ANSWER = Histogram(
    "firstword_sip_answer_seconds",
    "Phone calls: the SIP caller joining the room (the bridge got the INVITE) to the bridge "
    "answering it (sip.callStatus active), as the agent sees it.",
    buckets=_SECONDS,
)
ANSWER_LATENCY = Histogram(
    "firstword_answer_latency_seconds",
    "From the end of the caller's speech to the first frame of the agent's answer.",
    ["account"],
    buckets=_SECONDS,
)
TURN_STAGE = Histogram(
    "firstword_turn_stage_seconds",
    "Duration of each stage of an answered turn (see agent/call/turns.py).",
    ["stage"],
    buckets=_SECONDS,
)
ANSWER_CACHE = Counter(
    "firstword_answer_cache_total",
    "Answers played from pre-rendered audio (hit) or synthesised when spoken (miss).",
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

RESPONSE_CACHE = Counter(
    "firstword_response_cache_total",
    "Cacheable questions to the cloud model: answered from the response cache (hit) or not.",
    ["result"],
)
CLOUD_VOICE_CACHE = Counter(
    "firstword_cloud_voice_cache_total",
    "Sentences for a cloud voice: played from the audio cache (hit) or synthesised (miss).",
    ["result"],
)


# The worker's own gauges (set in its main process), as multiprocess files when a scrape reads
# files. With the process executor the framework sets PROMETHEUS_MULTIPROC_DIR inside
# `AgentServer.run()`, after this module was imported: the main process's metrics are then
# plain in-memory values, which the framework's scrape (files only) never shows. So the
# main process also writes these gauges into a file of its own (`gauge_max_<pid>.db`), with
# prometheus_client's own file-backed value class, where the scrape finds them; the job
# processes' copies of these gauges hold 0, so `max` is the main process's value.
_MAIN_GAUGES = {
    "firstword_worker_load": _WORKER_LOAD_HELP,
    "firstword_capacity_calls": _CAPACITY_CALLS_HELP,
}
_file_gauges: dict[str, object] = {}
_file_gauges_dir: str | None = None


def set_worker_gauges(load: float, capacity_calls: int) -> None:
    """Record the worker's load and capacity where a scrape of this worker reads them."""
    global _file_gauges_dir
    WORKER_LOAD.set(load)
    CAPACITY_CALLS.set(capacity_calls)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or values.ValueClass is not values.MutexValue:
        return  # no files, or this process's metrics already write to them
    if directory != _file_gauges_dir:  # first call (or a new directory): open our file
        value_class = values.MultiProcessValue()
        _file_gauges.clear()
        for name, documentation in _MAIN_GAUGES.items():
            _file_gauges[name] = value_class(
                "gauge", name, name, (), (), documentation, multiprocess_mode="max"
            )
        _file_gauges_dir = directory
    for name, value in (
        ("firstword_worker_load", load),
        ("firstword_capacity_calls", float(capacity_calls)),
    ):
        _file_gauges[name].set(value)  # type: ignore[attr-defined]


def current_registry() -> CollectorRegistry:
    """The registry a scrape reads, as livekit-agents' metrics endpoint chooses it.

    The endpoint itself is the framework's (`AgentServer(prometheus_port=...)`, see
    `agent/worker/job.py`): with `PROMETHEUS_MULTIPROC_DIR` set (the process executor) it
    reads every job process's files, otherwise this process's registry. The readiness check
    (`agent/worker/health.py`) reads the same source, so it sees what a scrape sees.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and Path(directory).is_dir():
        registry = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(registry, path=directory)
        return registry
    return REGISTRY


def sample_values(name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` (e.g. `firstword_prewarm_seconds_count`), with its labels."""
    return [
        (dict(sample.labels), sample.value)
        for metric in current_registry().collect()
        for sample in metric.samples
        if sample.name == name
    ]


PYTHON_HEAP = Gauge(
    "firstword_python_heap_bytes",
    "Python heap traced by tracemalloc (only with FIRSTWORD_TRACEMALLOC=1; agent/worker/heap.py).",
    multiprocess_mode="livesum",
)


SPEECH_OVER_AGENT = Counter(
    "firstword_speech_over_agent_total",
    "What callers said while the agent was speaking: backchannel (not passed on, the agent "
    "went on) or interruption (passed on: it stopped the agent); see agent/call/barge_in.py.",
    ["kind"],
)
KEYPAD_PRESSES = Counter(
    "firstword_keypad_presses_total",
    "Keys phone callers pressed, by what they did: person (0: a handoff started), answer (a key "
    "the account gives an answer), ignored (no answer on that key, or a handoff already under "
    "way); see agent/call/keypad.py.",
    ["kind"],
)
HANDOFFS = Counter(
    "firstword_handoffs_total",
    "Handoffs to a person by end (desk, sip, none: no end could reach the caller) and outcome "
    "(taken, not_taken, failed); see agent/call/handoff/core.py.",
    ["end", "outcome"],
)
VOICE_MESSAGES = Counter(
    "firstword_voice_messages_total",
    "After a handoff nobody took: voice messages kept, none (the caller said nothing after the "
    "tone), lost (could not be written; the log has it); see agent/call/voicemail.py.",
    ["outcome"],
)
VOICES_WORKING = Gauge(
    "firstword_voices_working",
    "Voices of this worker that synthesised a test word at prewarm (readiness; worker/health.py).",
    multiprocess_mode="max",
)


def start_series(
    accounts: Iterable[str], stages: Iterable[str], turn_stages: Iterable[str]
) -> None:
    """Create the labelled series at zero before the first call (prewarm).

    A labelled series appears only when first observed, and Prometheus' `rate()` cannot count
    the observation that created it: each account's first call, and each stage's, would be
    missing from the quantiles and the dashboard. Creating them at zero makes it count.
    """
    for account in accounts:
        TIME_TO_FIRST_WORD.labels(account)
        ANSWER_LATENCY.labels(account)
    for stage in stages:
        CALL_STAGE.labels(stage)
    for stage in turn_stages:
        TURN_STAGE.labels(stage)
    for result in ("hit", "miss"):
        GREETING_CACHE.labels(result)
        ANSWER_CACHE.labels(result)
        RESPONSE_CACHE.labels(result)
        CLOUD_VOICE_CACHE.labels(result)
    for kind in ("person", "answer", "ignored"):
        KEYPAD_PRESSES.labels(kind)
    for kind in ("backchannel", "interruption"):
        SPEECH_OVER_AGENT.labels(kind)
    for outcome in ("kept", "none", "lost"):
        VOICE_MESSAGES.labels(outcome)
    for end in ("desk", "sip", "none"):
        for outcome in ("taken", "not_taken", "failed"):
            HANDOFFS.labels(end, outcome)
