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

from . import capacity, metrics, recovery
from .accounts import AccountStore, CallHints, resolve_account
from .answers import AnswerAudio
from .assistant import Assistant
from .call_log import attach_after_first_frame, attach_conversation_logs
from .cloud.chains import build_chains
from .compat import FirstwordServer, job_dispatch_times
from .health import Health, check_voices
from .noise import noise_filter
from .pools import EnginePool, load_pool
from .process_wide import process_wide
from .settings import get_settings
from .timeline import STAGES, CallTimeline
from .turn_taking import turn_taking

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
    process_wide(
        "resume_lines", lambda: recovery.prepare_resume_lines(pool, store.registry, settings)
    )
    # Readiness needs a voice that speaks now, not only cached greetings (agent/health.py).
    process_wide("voice_check", lambda: check_voices(pool.voices))
    # Series at zero so that the first call of each account counts in rate() (agent/metrics.py).
    metrics.start_series(store.registry.accounts, STAGES)
    process_wide(
        "hold_audio",
        lambda: capacity.prepare_hold_audio(pool, list(store.registry.accounts.values())),
    )
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
    # Readiness pings Redis only when it is configured (crash recovery, caches).
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    health = Health(redis_url=redis_url)
    server = FirstwordServer(
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
        # every job; we count live calls instead (agent/capacity.py).
        load_fnc=_load_by_live_calls,
        load_threshold=1.0,
        # Two reconnect attempts, not sixteen: an unreachable server is reported, not hidden.
        max_retry=2,
        log_level=settings.log_level,
        # livekit-agents serves /metrics itself (port 0: any free port, logged by the framework
        # as "Prometheus metrics exposed at ..."; None: off). Job processes report through
        # files, which its endpoint reads; threads share this process's registry.
        prometheus_port=None if settings.metrics_port < 0 else settings.metrics_port,
        prometheus_multiproc_dir=None
        if threads
        else str(settings.cache_dir / "prometheus" / str(os.getpid())),
    )
    health.attach(server)
    return server


def _load_by_live_calls() -> float:
    settings = get_settings()
    return capacity.worker_load(settings.max_concurrent_calls, settings.hold_slots)


server = _build_server()
recovery.attach(server)


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


def _release_when_gone(room: rtc.Room, identity: str, slot: capacity.CallSlot) -> None:
    def _on_left(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == identity:
            slot.release()

    room.on("participant_disconnected", _on_left)
    if identity not in room.remote_participants:  # gone before we started listening
        slot.release()


def _timeline(ctx: JobContext) -> CallTimeline:
    """A timeline whose origin is the job request, as the worker's main process saw it."""
    now_mono, now_wall = time.monotonic(), time.time()
    # The worker stamps the dispatch in unix seconds (0.0: unknown, e.g. console mode).
    dispatch = job_dispatch_times(ctx)
    received, assigned = dispatch.received_at, dispatch.assigned_at
    timeline = CallTimeline(origin=now_mono - (now_wall - received) if received else now_mono)
    if received:
        timeline.mark("job_received", timeline.origin)
    if assigned:
        timeline.mark("job_assigned", now_mono - (now_wall - assigned))
    timeline.mark("job_started", now_mono)
    return timeline


async def _wait_for_caller(ctx: JobContext) -> rtc.RemoteParticipant | None:
    """The caller; None when nobody came in time (a pre-dispatched room, see agent/web/).

    A web page asks for its token before it connects, and the agent is dispatched then; if
    the page never joins, the agent closes the room instead of holding a worker slot.
    """
    timeout = get_settings().caller_wait_timeout
    try:
        return await asyncio.wait_for(ctx.wait_for_participant(), timeout)
    except RuntimeError:  # the room closed before any caller came
        ctx.shutdown(reason="no caller")
        return None
    except TimeoutError:
        logger.info("no caller within %.0f s; closing room %s", timeout, ctx.room.name)
        try:
            await asyncio.wait_for(ctx.delete_room(), 5.0)
        except Exception as error:  # the server reaps the room anyway (its empty_timeout)
            logger.warning("could not delete room %s: %s", ctx.room.name, error)
        ctx.shutdown(reason="no caller arrived")
        return None


@server.rtc_session(agent_name=get_settings().agent_name)
async def entrypoint(ctx: JobContext) -> None:
    """One call: connect, find the caller and their account, start the session, greet."""
    timeline = _timeline(ctx)
    store: AccountStore = ctx.proc.userdata["accounts"]
    pool: EnginePool = ctx.proc.userdata["pool"]
    settings = get_settings()
    slot = capacity.CallSlot.claim(settings.max_concurrent_calls, settings.hold_slots)
    call: dict[str, Any] = {"room": ctx.room.name}

    async def _end_of_call(reason: str) -> None:
        slot.release()
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
        if not ctx.room.remote_participants:
            # Nobody to talk to (the caller left before we joined, or the room was made
            # ahead of its caller, see agent/web/): a room waiting for its caller takes no
            # slot. A pre-dispatched room names its account in the dispatch, so the account
            # and its greeting audio are ready before the caller arrives.
            slot.release()
        caller = await _wait_for_caller(ctx)
        if caller is None:
            return
        if slot.released:
            slot = capacity.CallSlot.claim(settings.max_concurrent_calls, settings.hold_slots)
        timeline.mark("caller_joined")
        # The call stops counting against capacity the moment its caller leaves.
        _release_when_gone(ctx.room, caller.identity, slot)
        capacity.observe_agent_wait(caller, ctx.room, job_dispatch_times(ctx).received_at)
        resolution = resolve_account(await accounts, _caller_hints(ctx, caller))
    finally:
        if not accounts.done():
            accounts.cancel()
    account = resolution.account
    call.update(caller=caller.identity, account=account.id, account_source=resolution.source)
    if slot.mode == "held":
        call["held"] = True
        promoted = await capacity.hold(
            ctx.room,
            caller,
            account,
            pool,
            slot,
            max_calls=settings.max_concurrent_calls,
            max_hold_s=settings.max_hold_seconds,
        )
        if not promoted:
            ctx.shutdown(reason="left hold" if slot.released else "held too long: handed off")
            return
    if slot.released:  # the caller left while the call was being set up
        ctx.shutdown(reason="caller left")
        return
    engines = await pool.for_call(account)
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
    # A call picked up after its worker died goes on with a short line, and one promoted
    # from hold has heard the greeting: both get a short line instead.
    resumed = recovery.is_resumed(_text(ctx.job.metadata))
    call["resumed"] = resumed
    if resumed:
        first_line = settings.resume_line
    elif call.get("held"):
        first_line = capacity.PROMOTED_LINE
    else:
        first_line = account.greeting
    cached, greeting_audio = await pool.greetings.stream(pool.voice_for(account.voice), first_line)
    metrics.GREETING_CACHE.labels("hit" if cached else "miss").inc()
    call["greeting_cached"] = cached
    timeline.mark("account_ready")

    # Pre-rendered answers only where the FAQ answerer speaks in the local voice.
    answer_audio = (
        AnswerAudio(pool.greetings, pool.voice_for(account.voice))
        if settings.answer_audio_cache and chains.llm is engines.llm and chains.tts is engines.tts
        else None
    )
    turns = turn_taking(settings, engines, chains.stt, chains.llm, cloud=bool(chains.cloud))
    session: AgentSession[Any] = AgentSession(
        vad=engines.vad,
        stt=turns.stt,
        llm=chains.llm,
        tts=chains.tts,
        turn_handling=turns.turn_handling,  # type: ignore[arg-type]
    )

    # The session closes when the caller leaves; end the job with it, so the agent leaves
    # the room and the process is freed now rather than when the server reaps the room.
    @session.on("close")
    def _on_close(event: CloseEvent) -> None:
        slot.release()
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
                noise_cancellation=noise_filter(
                    account,
                    caller.kind if caller else rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
                    settings,
                )
            ),
        ),
    )
    timeline.mark("session_started")
    turns.install(session)
    session.say(first_line, audio=greeting_audio)
    recovery.track_call(ctx, account.id)


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
