"""The LiveKit worker: prewarm once per process, then one session per call, greeting first.

Every room gets the agent (automatic dispatch, unless FIRSTWORD_AGENT_NAME is set). A call
does only what its first word needs before that word: connect, find the caller and the
account (the account cache's disk check runs while the room connects), start the session
with engines leased from the prewarmed pool, and play the account's pre-rendered greeting.
Conversation logs and metrics collectors are attached after the first greeting frame.
The agent's track is published at connect, and in a room made ahead of its caller (the web
app's pre-dispatch) the session starts and says its greeting before the caller comes, so the
first frame goes out as the caller subscribes (agent/ahead.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from livekit.agents.job import DEFAULT_PARTICIPANT_KINDS
from livekit.agents.voice import SpeechHandle

from . import (
    call_limit,
    capacity,
    compat,
    handoff,
    heap,
    metrics,
    native_memory,
    recovery,
    stalls,
    unanswered,
)
from .accounts import Account, AccountStore, CallHints, resolve_account
from .ahead import AgentTrack, TextAfterCaller, named_before_caller
from .answers import AnswerAudio
from .assistant import Assistant
from .barge_in import OverlapFilter
from .call_log import attach_after_first_frame, attach_conversation_logs
from .cloud.caches import CloudCaches, build_cloud_caches
from .cloud.chains import build_chains
from .compat import FirstwordServer, job_dispatch_times
from .health import Health, check_voices
from .noise import noise_filter
from .pools import EnginePool, load_pool
from .process_wide import process_wide
from .settings import get_settings
from .sip import phone
from .timeline import STAGES, CallTimeline
from .turn_taking import turn_taking

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
    if settings.tracemalloc:  # off by default: nothing starts (agent/heap.py)
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
    # Response and cloud-voice caches (agent/cloud/caches.py); nothing here touches Redis.
    proc.userdata["cloud_caches"] = process_wide(
        "cloud_caches", lambda: build_cloud_caches(settings, pool.embedder.embed)
    )
    proc.userdata["accounts"] = store
    proc.userdata["pool"] = pool
    # Last: what prewarm loaded is frozen out of every later collection (agent/stalls.py).
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


def _call_pool() -> ThreadPoolExecutor:
    """The threads every call of this process hands blocking work to (`asyncio.to_thread`)."""
    return ThreadPoolExecutor(max_workers=32, thread_name_prefix="firstword-call")


def _build_server() -> AgentServer:
    settings = get_settings()
    threads = settings.job_executor == "thread"
    # Readiness pings Redis only when it is configured (crash recovery, caches).
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    health = Health(redis_url=redis_url)
    metrics_dir = settings.cache_dir / "prometheus"
    if not threads:  # folders left by killed workers (agent/capacity.py)
        capacity.clear_stale_metric_dirs(metrics_dir)
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


def _callers_in(room: rtc.Room) -> list[rtc.RemoteParticipant]:
    """The room's people who can be a caller, as `JobContext.wait_for_participant` picks
    them (no agents: another job's agent may still be in the room)."""
    return [p for p in room.remote_participants.values() if p.kind in DEFAULT_PARTICIPANT_KINDS]


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


@dataclass
class PreparedCall:
    """A started session with its first line and that line's audio: only `greet` is left."""

    session: AgentSession[Any]
    first_line: str
    greeting_audio: AsyncIterable[rtc.AudioFrame]
    greeting: SpeechHandle | None = None

    def greet(self) -> None:
        self.greeting = self.session.say(self.first_line, audio=self.greeting_audio)

    async def close_after_greeting(self, on_close: Callable[[CloseEvent], None]) -> None:
        """Let the greeting play out, then close the session without ending the job (a
        pre-dispatched caller who found every conversation slot taken goes on hold)."""
        self.session.input.set_audio_enabled(False)  # nothing is heard while it finishes
        if self.greeting is not None:
            try:
                await asyncio.wait_for(self.greeting.wait_for_playout(), 30.0)
            except TimeoutError:
                logger.warning("the greeting did not play out within 30 s")
        self.session.off("close", on_close)
        await self.session.aclose()


async def _prepare_session(
    ctx: JobContext,
    *,
    account: Account,
    first_line: str,
    caller_kind: Any,
    track: AgentTrack,
    call: dict[str, Any],
    timeline: CallTimeline,
    on_close: Callable[[CloseEvent], None],
) -> PreparedCall:
    """Lease the engines, build the session on the published track, start it, have the
    first line's audio at hand. Runs after the caller joined, or before it in a room that
    names its account (a pre-dispatched room)."""
    settings = get_settings()
    pool: EnginePool = ctx.proc.userdata["pool"]
    engines = await pool.for_call(
        account, phone=caller_kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP
    )
    caches: CloudCaches | None = ctx.proc.userdata.get("cloud_caches")
    # Per turn: "hit"/"miss" of the response cache, for the turn's log line.
    turn_notes: dict[str, Any] = {}
    chains = build_chains(
        account,
        settings,
        local_stt=engines.stt,
        local_llm=engines.llm,
        local_tts=engines.tts,
        vad=engines.vad,
        caches=caches,
        on_response_cache=lambda result: turn_notes.__setitem__("response_cache", result),
    )
    ctx.add_shutdown_callback(chains.aclose)
    if caches is not None and chains.cloud:
        ctx.add_shutdown_callback(caches.shared.close_loop)
    if chains.cloud:
        call["cloud"] = chains.names
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
    # What the caller says over the agent: a backchannel does not stop it (agent/barge_in.py).
    overlap = OverlapFilter({"room": ctx.room.name}, enabled=settings.backchannel_filter)
    overlap.attach(session)
    # The session closes when the caller leaves; end the job with it, so the agent leaves
    # the room and the process is freed now rather than when the server reaps the room.
    session.on("close", on_close)

    def _after_first_frame(_event: AgentStateChangedEvent) -> None:
        timeline.mark("first_frame")
        # A greeting said before the caller came can go out before the agent hears that
        # they joined; its timeline line waits for that (written at the caller's arrival).
        if not call.get("ahead") or "caller_joined" in timeline.marks:
            _report(timeline, call, reason="first word")
        attach_conversation_logs(session, call, turn_notes, transcripts=settings.log_transcripts)
        # The first answer is seconds away: time enough to open the cloud connections.
        chains.start_warming(settings.rewarm_idle_seconds)
        if caches is not None and chains.cloud:
            caches.shared.warm()

    attach_after_first_frame(session, _after_first_frame)

    # The track published at connect (agent/ahead.py) is the session's audio output.
    session.output.audio = track.output.output
    await session.start(
        agent=Assistant(
            account,
            answer_audio=answer_audio,
            before_final=turns.before_final,
            drops_final=overlap.drops,
        ),
        room=ctx.room,
        room_options=room_io.RoomOptions(
            audio_output=False,
            # Holding transcripts back to the pace of the audio costs a spectral analysis of
            # every agent frame on the event loop: ~0.1 s stalled before a pre-rendered
            # greeting's first frame. Callers on a phone see no transcript; web clients get
            # each line as soon as it is known.
            text_output=room_io.TextOutputOptions(sync_transcription=False),
            # Typed text goes straight to the model: only where the account asks for it.
            text_input=account.typed_text,
            audio_input=room_io.AudioInputOptions(
                # At the engines' rate, no agent-side gain control (see Settings).
                sample_rate=settings.input_sample_rate,
                auto_gain_control=settings.input_agc,
                noise_cancellation=noise_filter(account, caller_kind, settings),
            ),
        ),
    )
    timeline.mark("session_started")
    turns.install(session)
    return PreparedCall(session, first_line, greeting_audio)


def _room_hints(ctx: JobContext) -> CallHints:
    """What names the account before any caller is there: the dispatch and the room."""
    return CallHints(
        job_metadata=_text(ctx.job.metadata),
        room_metadata=_text(ctx.room.metadata),
        room_name=_text(ctx.room.name),
        participant_attributes={},
        participant_metadata="",
    )


@server.rtc_session(agent_name=get_settings().agent_name)
async def entrypoint(ctx: JobContext) -> None:
    """One call: connect and publish, find the caller and their account, start the session,
    greet. In a room that names its account and has no caller yet (pre-dispatched), the
    session is started before the caller comes and the greeting goes out as they join."""
    timeline = _timeline(ctx)
    store: AccountStore = ctx.proc.userdata["accounts"]
    pool: EnginePool = ctx.proc.userdata["pool"]
    settings = get_settings()
    slot = capacity.CallSlot.claim(settings.max_concurrent_calls, settings.hold_slots)
    call: dict[str, Any] = {"room": ctx.room.name}
    track: AgentTrack | None = None
    prepared: PreparedCall | None = None

    async def _end_of_call(reason: str) -> None:
        slot.release()
        _report(timeline, call, reason=reason)  # unless written at the first word
        if settings.gc_tuning and settings.gc_refreeze:  # the last call gone: nobody stalls
            stalls.refreeze_if_idle(lambda: capacity.current_counts() == capacity.CallCounts(0, 0))
        if settings.malloc_trim:  # what the call freed goes back to the system
            await asyncio.wait_for(asyncio.to_thread(native_memory.give_back), 5.0)

    def _on_close(event: CloseEvent) -> None:
        slot.release()
        ctx.shutdown(reason=f"session closed: {event.reason}")

    async def _close_track() -> None:
        if track is not None:
            await track.aclose()

    if settings.inline_vad:  # VAD windows on this loop, thread work in one shared pool
        asyncio.get_running_loop().set_default_executor(
            compat.InlineVadExecutor(process_wide("call_pool", _call_pool))
        )
    # This call's loop lag, for the stalls a caller hears (agent/stalls.py).
    loop_watch = stalls.watch_loop()

    async def _stop_loop_watch() -> None:
        loop_watch.stop()

    ctx.add_shutdown_callback(_stop_loop_watch)
    ctx.add_shutdown_callback(_end_of_call)
    ctx.add_shutdown_callback(_close_track)
    ctx.room.on("local_track_published", lambda *_: timeline.mark("track_published"))
    ctx.room.on("local_track_subscribed", lambda *_: timeline.mark("track_subscribed"))

    # The account cache's check of the disk (when its TTL ran out) overlaps the connection.
    accounts = asyncio.ensure_future(store.current())
    try:
        await ctx.connect()
        timeline.mark("room_connected")
        # Published now, while the rest is made ready (agent/ahead.py).
        track = AgentTrack(ctx.room)
        if not _callers_in(ctx.room):
            # Nobody to talk to (the caller left before we joined, or the room was made
            # ahead of its caller, see agent/web/): a room waiting for its caller takes no
            # slot. Only callers count here: a room sent to us again after its agent lost
            # its connection can still hold that agent, and such a job, waiting 20 s for a
            # caller who had already gone, held a slot all that time (the capacity bench's
            # "calls still counted 30 s after the step", issue 9). A pre-dispatched room
            # names its account in the dispatch, so the session is started now and the
            # caller's arrival leaves only the greeting to play.
            slot.release()
            hints = _room_hints(ctx)
            named = (
                resolve_account(await accounts, hints)
                if hints.job_metadata or hints.room_metadata
                else None
            )
            if named is not None and named_before_caller(named):
                account = named.account
                call.update(account=account.id, account_source=named.source, ahead=True)
                prepared = await _prepare_session(
                    ctx,
                    account=account,
                    first_line=account.greeting,
                    # A pre-dispatched caller comes from the web page (agent/web/).
                    caller_kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
                    track=track,
                    call=call,
                    timeline=timeline,
                    on_close=_on_close,
                )
                # Said now: the frames wait in the track's output and the first goes out
                # as the caller subscribes, before the agent even hears that they joined;
                # the transcript waits until the caller is linked.
                session = prepared.session
                transcript = session.output.transcription
                if transcript is not None:
                    session.output.transcription = TextAfterCaller(
                        transcript, session.room_io.wait_for_ready
                    )
                prepared.greet()
        caller = await _wait_for_caller(ctx)
        if caller is None:
            return
        if slot.released:
            slot = capacity.CallSlot.claim(settings.max_concurrent_calls, settings.hold_slots)
        timeline.mark("caller_joined")
        call["caller"] = caller.identity
        # The call stops counting against capacity the moment its caller leaves. Not in
        # console mode (a fake job): its stand-in caller is never among the stand-in room's
        # participants, so the call ended as it began, before the greeting.
        if not ctx.is_fake_job():
            _release_when_gone(ctx.room, caller.identity, slot)
        capacity.observe_agent_wait(caller, ctx.room, job_dispatch_times(ctx).received_at)
        if prepared is not None and "first_frame" in timeline.marks:
            _report(timeline, call, reason="first word")
        if prepared is not None and slot.mode != "held":
            if slot.released:  # gone already: nobody to talk to
                ctx.shutdown(reason="caller left")
            else:
                recovery.track_call(ctx, str(call["account"]))
                # The greeting is out (or on its way): the handoff can be wired now.
                _attach_after_first_word(ctx, prepared.session, account, caller, slot)
            return
        resolution = resolve_account(await accounts, _caller_hints(ctx, caller))
    finally:
        if not accounts.done():
            accounts.cancel()
    greeted = prepared is not None
    if prepared is not None:
        # Every conversation slot was taken when the pre-dispatched caller came: they hear
        # the greeting already on its way, then the session made ahead stops and the call
        # goes on hold like any other.
        await prepared.close_after_greeting(_on_close)
        prepared = None
    account = resolution.account
    call.update(account=account.id, account_source=resolution.source)
    if slot.mode == "held":
        call["held"] = True
        if greeted:  # a fresh output for the hold: the session made ahead had this one
            await track.aclose(unpublish=True)
            track = AgentTrack(ctx.room)

        def _held_first_frame() -> None:
            # The held caller's first word (the greeting, or the hold line after a greeting
            # said ahead): their timeline line and TTFW now. A call promoted later keeps
            # this mark (the first mark of a stage wins) and its report (written once).
            timeline.mark("first_frame")
            _report(timeline, call, reason="first word (held)")

        promoted = await capacity.hold(
            ctx.room,
            caller,
            account,
            pool,
            slot,
            track.output.output,  # the call's track: the caller may be subscribed already
            max_calls=settings.max_concurrent_calls,
            max_hold_s=settings.max_hold_seconds,
            greeted=greeted,
            on_first_frame=_held_first_frame,
        )
        if not promoted:
            ctx.shutdown(reason="left hold" if slot.released else "held too long: handed off")
            return
    if slot.released:  # the caller left while the call was being set up
        ctx.shutdown(reason="caller left")
        return
    if track.closed:
        track = AgentTrack(ctx.room)
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
    prepared = await _prepare_session(
        ctx,
        account=account,
        first_line=first_line,
        caller_kind=caller.kind,
        track=track,
        call=call,
        timeline=timeline,
        on_close=_on_close,
    )
    prepared.greet()
    recovery.track_call(ctx, account.id)
    if phone.is_sip_caller(caller):
        call["sip"] = True
        phone.watch_answer(ctx.room, caller)
    # Wired after the first frame, off its path (it publishes the call's attributes).
    session, taken = prepared.session, slot
    # A promoted call's first frame was the hold's: its session's first line comes first.
    if "first_frame" in timeline.marks and not call.get("held"):
        _attach_after_first_word(ctx, session, account, caller, taken)
    else:
        attach_after_first_frame(
            session, lambda _event: _attach_after_first_word(ctx, session, account, caller, taken)
        )


def _attach_after_first_word(
    ctx: JobContext,
    session: AgentSession[Any],
    account: Account,
    caller: rtc.RemoteParticipant,
    slot: capacity.CallSlot,
) -> None:
    """The handoff to a person (agent/handoff.py; a call a person took stops counting) and
    the call's time limit (agent/call_limit.py; not for a call taken or left)."""
    settings = get_settings()
    handoffs = handoff.attach(session, ctx.room, account, caller, settings, on_taken=slot.release)
    ctx.add_shutdown_callback(handoffs.aclose)
    call_limit.attach(ctx, session, account, settings.max_call_seconds, taken=lambda: slot.released)


def _report(timeline: CallTimeline, call: dict[str, Any], *, reason: str) -> None:
    """The call's one timeline log line, and its metrics (once; later calls do nothing)."""
    if timeline.reported:
        return
    timeline.reported = True
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
