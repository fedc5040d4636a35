"""The LiveKit worker process: its AgentServer, prewarm once per process, the probes and the
fleet-level background work (crash pick-up, the unanswered-room sweep).

`python agent.py dev|start|console|connect` runs `server`. Prewarm loads accounts, engines and
greeting audio before any call arrives; each call then runs `agent.worker.job.entrypoint`
(registered below), which accounts the call against this worker's capacity and hands the
conversation to `agent.call`.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from livekit.agents import AgentServer, JobExecutorType, JobProcess

from .. import compat, metrics
from ..accounts import Account, AccountStore
from ..call import voicemail
from ..call.handoff import warm
from ..call.timeline import STAGES
from ..call.turns import STAGES as TURN_STAGES
from ..cloud.caches import build_cloud_caches
from ..compat import FirstwordServer
from ..engines.pools import EnginePool, load_pool
from ..process_wide import process_wide
from ..settings import get_settings
from . import capacity, heap, job, native_memory, recovery, stalls, unanswered
from .health import Health, check_voices

logger = logging.getLogger("firstword.worker")


def prewarm(proc: JobProcess) -> None:
    """Load accounts, engines and greeting audio before any call arrives (once per process)."""
    start = time.perf_counter()
    settings = get_settings()
    # Before any call connects a room: job threads connecting at once would race to create
    # it, and a call that loses the race never connects (agent/compat.py).
    process_wide("rtc_ffi", compat.start_rtc_ffi)
    if settings.ffi_event_routing:  # each call's audio events to its own loop only
        process_wide("ffi_routing", compat.route_ffi_events)
    # A job process's own allocator (the worker's is set in agent.py; calling again is a no-op).
    process_wide("malloc_arenas", lambda: native_memory.limit_arenas(settings.malloc_arenas))
    if settings.tracemalloc:  # off by default: nothing starts (agent/worker/heap.py)
        heap.start_tracing()
    store = process_wide(
        "accounts",
        lambda: AccountStore(
            settings.accounts_dir,
            settings.default_account,
            ttl_seconds=settings.account_ttl_seconds,
        ),
    )
    pool = process_wide("pool", lambda: load_pool(settings, store.registry))
    synthesised = process_wide("greetings", lambda: pool.prepare_greetings(store.registry))
    process_wide(
        "resume_lines", lambda: recovery.prepare_resume_lines(pool, store.registry, settings)
    )
    # Readiness needs a voice that speaks now, not only cached greetings (agent/worker/health.py).
    process_wide("voice_check", lambda: check_voices(pool.voices))
    # Series at zero so that the first call of each account counts in rate() (agent/metrics.py).
    metrics.start_series(store.registry.accounts, STAGES, TURN_STAGES)
    process_wide(
        "hold_audio",
        lambda: capacity.prepare_hold_audio(pool, list(store.registry.accounts.values())),
    )
    if settings.answer_audio_cache:
        process_wide("answers", lambda: _prepare_answers_in_background(pool, store))
    # Response and cloud-voice caches (agent/cloud/caches.py); nothing here touches Redis.
    proc.userdata["cloud_caches"] = process_wide(
        "cloud_caches", lambda: build_cloud_caches(settings, pool.embedder.embed)
    )
    proc.userdata["accounts"] = store
    proc.userdata["pool"] = pool
    # Last: what prewarm loaded is frozen out of every later collection (agent/worker/stalls.py).
    stalls.watch_gc()
    process_wide("gc", lambda: stalls.tune_gc() if settings.gc_tuning else None)
    elapsed = time.perf_counter() - start
    metrics.PREWARM.observe(elapsed)
    logger.info(
        "process prewarmed",
        extra={
            "prewarm_seconds": round(elapsed, 3),
            "greetings_synthesised": synthesised,
            "executor": settings.job_executor,
        },
    )


def _call_lines(account: Account) -> list[str]:
    """An account's fixed lines beside its answers: the voice message's, a warm transfer's."""
    return voicemail.lines(account) + warm.caller_lines(account)


def _prepare_answers_in_background(pool: EnginePool, store: AccountStore) -> threading.Thread:
    """Render every account's answers on a daemon thread, after prewarm.

    From a warm disk cache this takes milliseconds; from a cold one, seconds per answer
    (76 s for 16 answers on the busy 2-core machine), which must not keep the process from
    taking calls. Until an answer is in memory, `Assistant.tts_node` synthesises it as
    before. A daemon thread, not a task: it does blocking inference and needs no loop, and
    it ends with the process.
    """

    def run() -> None:
        start = time.perf_counter()
        try:
            made = pool.prepare_answers(store.registry, _call_lines)
        except Exception:
            logger.exception("pre-rendering the answers failed; they are synthesised when asked")
            return
        logger.info(
            "answers pre-rendered",
            extra={"answers_synthesised": made, "seconds": round(time.perf_counter() - start, 3)},
        )

    thread = threading.Thread(target=run, name="firstword-answers", daemon=True)
    thread.start()
    return thread


def _build_server() -> AgentServer:
    settings = get_settings()
    threads = settings.job_executor == "thread"
    # Readiness pings Redis only when it is configured (crash recovery, caches).
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    health = Health(redis_url=redis_url)
    metrics_dir = settings.cache_dir / "prometheus"
    if not threads:  # folders left by killed workers (agent/worker/capacity.py)
        capacity.clear_stale_metric_dirs(metrics_dir)
    server = FirstwordServer(
        calls=capacity.CountedCalls(),
        routes=health.routes(),
        setup_fnc=prewarm,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        job_executor_type=JobExecutorType.THREAD if threads else JobExecutorType.PROCESS,
        num_idle_processes=settings.idle_processes,
        host=settings.http_host,
        port=settings.http_port,
        # The first prewarm loads every engine: a few seconds on 2 cores.
        initialize_process_timeout=60.0,
        # The default CPU-based load reads ~1.0 on a busy 2-core box and would refuse
        # every job; we count live calls instead (agent/worker/capacity.py).
        load_fnc=_load_by_live_calls,
        load_threshold=1.0,
        # Enough reconnects to ride out a server restart (FIRSTWORD_SERVER_RETRIES): a worker
        # that gave up would end every call on it. At start an absent server is reported by
        # the preflight check, not hidden behind the retries.
        max_retry=settings.server_retries,
        log_level=settings.log_level,
        # livekit-agents serves /metrics itself (port 0: any free port, logged by the framework
        # as "Prometheus metrics exposed at ..."; None: off). Job processes report through
        # files, which its endpoint reads; threads share this process's registry.
        prometheus_port=None if settings.metrics_port < 0 else settings.metrics_port,
        prometheus_multiproc_dir=None if threads else str(metrics_dir / str(os.getpid())),
    )
    health.attach(server)
    return server


def _load_by_live_calls() -> float:
    settings = get_settings()
    return capacity.worker_load(settings.max_concurrent_calls, settings.hold_slots)


def _has_room() -> bool:
    """Whether this worker would take a call now (the unanswered-room sweep asks)."""
    return _load_by_live_calls() < 1.0


server = _build_server()
recovery.attach(server)
unanswered.attach(server, _has_room)

server.rtc_session(job.entrypoint, agent_name=get_settings().agent_name, on_request=job.on_request)
