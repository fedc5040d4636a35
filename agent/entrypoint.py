"""The LiveKit worker: prewarm once per process, then one session per call, greeting first.

Every room gets the agent (automatic dispatch, unless FIRSTWORD_AGENT_NAME is set). A call
does only what its first word needs before that word: connect, find the caller and the
account (the account cache's disk check runs while the room connects), start the session
with engines leased from the prewarmed pool, and play the account's pre-rendered greeting.
Conversation logs and metrics collectors are attached after the first greeting frame.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from livekit import rtc
from livekit.agents import (
    AgentServer,
    AgentSession,
    AgentStateChangedEvent,
    CloseEvent,
    JobContext,
    JobExecutorType,
    JobProcess,
    room_io,
)

from . import metrics
from .accounts import AccountStore, CallHints, resolve_account
from .answers import AnswerAudio
from .assistant import Assistant
from .call_log import attach_after_first_frame, attach_conversation_logs
from .cloud.chains import build_chains
from .noise import noise_filter
from .pools import EnginePool, load_pool
from .process_wide import process_wide
from .settings import get_settings
from .timeline import CallTimeline

logger = logging.getLogger("firstword.worker")


def prewarm(proc: JobProcess) -> None:
    """Load accounts, engines and greeting audio before any call arrives (once per process)."""
    start = time.perf_counter()
    settings = get_settings()
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
    if settings.answer_audio_cache:
        process_wide("answers", lambda: _prepare_answers_in_background(pool, store))
    proc.userdata["accounts"] = store
    proc.userdata["pool"] = pool
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
            made = pool.prepare_answers(store.registry)
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
    server = AgentServer(
        setup_fnc=prewarm,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        job_executor_type=JobExecutorType.THREAD if threads else JobExecutorType.PROCESS,
        num_idle_processes=settings.idle_processes,
        port=settings.http_port,
        # The first prewarm loads every engine: a few seconds on 2 cores.
        initialize_process_timeout=60.0,
        # The default CPU-based load reads ~1.0 on a busy 2-core box and would refuse
        # every job; we count calls instead.
        load_fnc=_load_by_calls,
        load_threshold=1.0,
        # Two reconnect attempts, not sixteen: an unreachable server is reported, not hidden.
        max_retry=2,
        log_level=settings.log_level,
        # Job processes report metrics through files; threads share this process's registry.
        prometheus_multiproc_dir=None
        if threads
        else str(settings.cache_dir / "prometheus" / str(os.getpid())),
    )

    @server.on("worker_started")
    def _serve_metrics() -> None:
        metrics.serve(settings.metrics_port)

    return server


def _load_by_calls(server: AgentServer) -> float:
    return min(1.0, len(server.active_jobs) / max(1, get_settings().max_concurrent_calls))


server = _build_server()


def _text(value: object) -> str:
    # Console mode hands us stand-in objects where a real room has strings.
    return value if isinstance(value, str) else ""


def _caller_hints(ctx: JobContext, caller: rtc.RemoteParticipant) -> CallHints:
    attributes = caller.attributes if isinstance(caller.attributes, Mapping) else {}
    return CallHints(
        job_metadata=_text(ctx.job.metadata),
        room_metadata=_text(ctx.room.metadata),
        room_name=_text(ctx.room.name),
        participant_attributes={k: v for k, v in attributes.items() if isinstance(v, str)},
        participant_metadata=_text(caller.metadata),
    )


def _timeline(ctx: JobContext) -> CallTimeline:
    """A timeline whose origin is the job request, as the worker's main process saw it."""
    now_mono, now_wall = time.monotonic(), time.time()
    # The worker stamps the dispatch in unix seconds on the job's info (not public API).
    info = getattr(ctx, "_info", None)
    received = float(getattr(info, "received_at", 0.0) or 0.0)
    assigned = float(getattr(info, "assigned_at", 0.0) or 0.0)
    timeline = CallTimeline(origin=now_mono - (now_wall - received) if received else now_mono)
    if received:
        timeline.mark("job_received", timeline.origin)
    if assigned:
        timeline.mark("job_assigned", now_mono - (now_wall - assigned))
    timeline.mark("job_started", now_mono)
    return timeline


@server.rtc_session(agent_name=get_settings().agent_name)
async def entrypoint(ctx: JobContext) -> None:
    """One call: connect, find the caller and their account, start the session, greet."""
    timeline = _timeline(ctx)
    store: AccountStore = ctx.proc.userdata["accounts"]
    pool: EnginePool = ctx.proc.userdata["pool"]
    metrics.ACTIVE_CALLS.inc()
    call: dict[str, Any] = {"room": ctx.room.name}

    async def _end_of_call(reason: str) -> None:
        metrics.ACTIVE_CALLS.dec()
        if "first_frame" not in timeline.marks:
            _report(timeline, call, reason=reason)

    ctx.add_shutdown_callback(_end_of_call)
    ctx.room.on("local_track_published", lambda *_: timeline.mark("track_published"))
    ctx.room.on("local_track_subscribed", lambda *_: timeline.mark("track_subscribed"))

    # The account cache's check of the disk (when its TTL ran out) overlaps the connection.
    accounts = asyncio.ensure_future(store.current())
    try:
        await ctx.connect()
        timeline.mark("room_connected")
        caller = await ctx.wait_for_participant()
        timeline.mark("caller_joined")
        resolution = resolve_account(await accounts, _caller_hints(ctx, caller))
    finally:
        if not accounts.done():
            accounts.cancel()
    account = resolution.account
    call.update(caller=caller.identity, account=account.id, account_source=resolution.source)
    engines = await pool.for_call(account)
    settings = get_settings()
    chains = build_chains(
        account,
        settings,
        local_stt=engines.stt,
        local_llm=engines.llm,
        local_tts=engines.tts,
        vad=engines.vad,
    )
    ctx.add_shutdown_callback(chains.aclose)
    if chains.cloud:
        call["cloud"] = chains.names
    cached, greeting_audio = await pool.greetings.stream(
        pool.voice_for(account.voice), account.greeting
    )
    metrics.GREETING_CACHE.labels("hit" if cached else "miss").inc()
    call["greeting_cached"] = cached
    timeline.mark("account_ready")

    # Pre-rendered answers only where the FAQ answerer speaks in the local voice.
    answer_audio = (
        AnswerAudio(pool.greetings, pool.voice_for(account.voice))
        if settings.answer_audio_cache and chains.llm is engines.llm and chains.tts is engines.tts
        else None
    )
    session: AgentSession[Any] = AgentSession(
        vad=engines.vad,
        stt=chains.stt,
        llm=chains.llm,
        tts=chains.tts,
        turn_handling={
            "turn_detection": engines.turn_detector,
            "interruption": {"mode": "vad"},
            "endpointing": {"min_delay": 0.4, "max_delay": 1.5},
            # Stored answers cost nothing to render before the turn is confirmed, which
            # takes the TTS out of the critical path; a cloud model's tokens do cost, so
            # its speech waits for the turn.
            "preemptive_generation": {"enabled": True, "preemptive_tts": not chains.cloud},
        },
    )

    # The session closes when the caller leaves; end the job with it, so the agent leaves
    # the room and the process is freed now rather than when the server reaps the room.
    @session.on("close")
    def _on_close(event: CloseEvent) -> None:
        ctx.shutdown(reason=f"session closed: {event.reason}")

    def _after_first_frame(_event: AgentStateChangedEvent) -> None:
        timeline.mark("first_frame")
        _report(timeline, call, reason="first word")
        attach_conversation_logs(session, call)
        # The first answer is seconds away: time enough to open the cloud connections.
        chains.start_warming(settings.rewarm_idle_seconds)

    attach_after_first_frame(session, _after_first_frame)

    await session.start(
        agent=Assistant(account, answer_audio=answer_audio),
        room=ctx.room,
        room_options=room_io.RoomOptions(
            participant_identity=caller.identity,
            # Holding transcripts back to the pace of the audio costs a spectral analysis of
            # every agent frame on the event loop: ~0.1 s stalled before a pre-rendered
            # greeting's first frame. Callers on a phone see no transcript; web clients get
            # each line as soon as it is known.
            text_output=room_io.TextOutputOptions(sync_transcription=False),
            audio_input=room_io.AudioInputOptions(
                noise_cancellation=noise_filter(account, caller.kind, settings)
            ),
        ),
    )
    timeline.mark("session_started")
    session.say(account.greeting, audio=greeting_audio)


def _report(timeline: CallTimeline, call: dict[str, Any], *, reason: str) -> None:
    """The call's one timeline log line, and its metrics."""
    ttfw = timeline.time_to_first_frame()
    account = str(call.get("account", "unknown"))
    if ttfw is not None:
        metrics.TIME_TO_FIRST_WORD.labels(account).observe(ttfw)
    for stage, seconds in timeline.stage_seconds().items():
        metrics.CALL_STAGE.labels(stage).observe(seconds)
    logger.info(
        "call timeline (%s): first frame %s",
        reason,
        f"{ttfw * 1000:.0f} ms after the job request" if ttfw is not None else "never sent",
        extra={
            **call,
            "timeline_ms": timeline.since_origin_ms(),
            "origin_monotonic": round(timeline.origin, 4),
        },
    )
