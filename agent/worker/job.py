"""One call's job: what the worker does between the server's job request and the end of the
call — claim a slot (or hold), connect and publish, find the caller and their account, start
the session (agent/call/session.py) and greet; the handoff and the call's time limit are wired
after the first word.

A call does only what its first word needs before that word: the account cache's disk check
runs while the room connects, the session starts with engines leased from the prewarmed pool,
and the greeting is pre-rendered. The agent's track is published at connect, and in a room
made ahead of its caller (the web app's pre-dispatch) the session starts and says its greeting
before the caller comes, so the first frame goes out as the caller subscribes
(agent/call/ahead.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, CloseEvent, JobContext, JobRequest
from livekit.agents.job import DEFAULT_PARTICIPANT_KINDS

from .. import compat
from ..accounts import Account, AccountStore, CallHints, history_store, resolve_account
from ..call import call_limit, history, keypad, voicemail
from ..call.ahead import AgentTrack, TextAfterCaller, named_before_caller
from ..call.call_log import attach_after_first_frame
from ..call.handoff import core as handoff
from ..call.handoff import warm
from ..call.handoff.types import HandoffEnd, agent_joins
from ..call.record import CallRecord
from ..call.session import PreparedCall, prepare_session
from ..call.timeline import CallTimeline, report
from ..compat import job_dispatch_times
from ..engines.pools import EnginePool
from ..process_wide import process_wide
from ..settings import Settings, get_settings
from ..sip import phone
from . import capacity, native_memory, recovery, stalls

logger = logging.getLogger("firstword.worker")


def _call_pool() -> ThreadPoolExecutor:
    """The threads every call of this process hands blocking work to (`asyncio.to_thread`)."""
    return ThreadPoolExecutor(max_workers=32, thread_name_prefix="firstword-call")


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


def _room_hints(ctx: JobContext) -> CallHints:
    """What names the account before any caller is there: the dispatch and the room."""
    return CallHints(
        job_metadata=_text(ctx.job.metadata),
        room_metadata=_text(ctx.room.metadata),
        room_name=_text(ctx.room.name),
        participant_attributes={},
        participant_metadata="",
    )


async def on_request(request: JobRequest) -> None:
    """Which rooms the worker joins: every room but the desk's call-backs (a staff member and
    the caller they dialled: no agent there). With automatic dispatch (no FIRSTWORD_AGENT_NAME)
    LiveKit offers the worker every new room; the framework's default accepts them all."""
    if not agent_joins(request.room.name):
        await request.reject()
        return
    await request.accept()


async def entrypoint(ctx: JobContext) -> None:
    """One call: connect and publish, find the caller and their account, start the session,
    greet. In a room that names its account and has no caller yet (pre-dispatched), the
    session is started before the caller comes and the greeting goes out as they join."""
    timeline = _timeline(ctx)
    store: AccountStore = ctx.proc.userdata["accounts"]
    pool: EnginePool = ctx.proc.userdata["pool"]
    settings = get_settings()
    slot = capacity.CallSlot.claim(settings.max_concurrent_calls, settings.hold_slots)
    call = CallRecord(room=ctx.room.name, started_at=time.time())
    account_of_call: Account | None = None  # once resolved: the call history needs it
    track: AgentTrack | None = None
    prepared: PreparedCall | None = None

    async def _end_of_call(reason: str) -> None:
        slot.release()
        report(timeline, call, reason=reason)  # unless written at the first word
        if settings.call_history and account_of_call is not None:
            await _keep_in_history(call, account_of_call, timeline, reason)
        if settings.gc_tuning and settings.gc_refreeze:  # the last call gone: nobody stalls
            stalls.refreeze_if_idle(lambda: capacity.current_counts() == capacity.CallCounts(0, 0))
        if settings.malloc_trim:  # what the call freed goes back to the system
            await asyncio.wait_for(asyncio.to_thread(native_memory.give_back), 5.0)

    def _on_close(event: CloseEvent) -> None:
        slot.release()
        ctx.shutdown(reason=f"session closed: {event.reason.value}")

    async def _close_track() -> None:
        if track is not None:
            await track.aclose()

    if settings.inline_vad:  # VAD windows on this loop, thread work in one shared pool
        asyncio.get_running_loop().set_default_executor(
            compat.InlineVadExecutor(process_wide("call_pool", _call_pool))
        )
    # This call's loop lag, for the stalls a caller hears (agent/worker/stalls.py).
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
        # Published now, while the rest is made ready (agent/call/ahead.py).
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
                account = account_of_call = named.account
                call.account, call.account_source, call.ahead = account.id, named.source, True
                prepared = await prepare_session(
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
        call.caller = caller.identity
        call.caller_number = phone.caller_number(caller)
        # The call stops counting against capacity the moment its caller leaves. Not in
        # console mode (a fake job): its stand-in caller is never among the stand-in room's
        # participants, so the call ended as it began, before the greeting.
        if not ctx.is_fake_job():
            _release_when_gone(ctx.room, caller.identity, slot)
        capacity.observe_agent_wait(caller, ctx.room, job_dispatch_times(ctx).received_at)
        if prepared is not None and "first_frame" in timeline.marks:
            report(timeline, call, reason="first word")
        if prepared is not None and slot.mode != "held":
            if slot.released:  # gone already: nobody to talk to
                ctx.shutdown(reason="caller left")
            else:
                recovery.track_call(ctx, account.id)
                # The greeting is out (or on its way): the handoff can be wired now.
                _attach_after_first_word(ctx, prepared.session, account, caller, slot, call)
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
    account = account_of_call = resolution.account
    call.account, call.account_source = account.id, resolution.source
    if slot.mode == "held":
        call.held = True
        if greeted:  # a fresh output for the hold: the session made ahead had this one
            await track.aclose(unpublish=True)
            track = AgentTrack(ctx.room)

        def _held_first_frame() -> None:
            # The held caller's first word (the greeting, or the hold line after a greeting
            # said ahead): their timeline line and TTFW now. A call promoted later keeps
            # this mark (the first mark of a stage wins) and its report (written once).
            timeline.mark("first_frame")
            report(timeline, call, reason="first word (held)")

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
    call.resumed = resumed
    if resumed:
        first_line = settings.resume_line
    elif call.held:
        first_line = capacity.PROMOTED_LINE
    else:
        first_line = account.greeting
    prepared = await prepare_session(
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
        call.sip = True
        phone.watch_answer(ctx.room, caller)
    # Wired after the first frame, off its path (it publishes the call's attributes).
    session, taken = prepared.session, slot
    # A promoted call's first frame was the hold's: its session's first line comes first.
    if "first_frame" in timeline.marks and not call.held:
        _attach_after_first_word(ctx, session, account, caller, taken, call)
    else:
        attach_after_first_frame(
            session,
            lambda _event: _attach_after_first_word(ctx, session, account, caller, taken, call),
        )


async def _keep_in_history(
    call: CallRecord, account: Account, timeline: CallTimeline, ended: str
) -> None:
    """The call's record in the account's call history (agent/call/history.py); a failure to
    write it is logged and costs the caller nothing (the call is over)."""
    record = history.entry(
        call,
        handoff_phrase=account.handoff_phrase,
        ended_at=time.time(),
        ended=ended,
        ttfw_s=timeline.time_to_first_frame(),
    )
    settings = get_settings()
    if not account.recording:
        return  # the account keeps nothing of its calls
    book = history_store.shared(settings.call_history_where, settings.call_history_days)
    try:
        await asyncio.wait_for(asyncio.to_thread(book.append, record), 5.0)
    except Exception:
        logger.exception("could not keep the call in the history", extra={"room": call.room})


def _attach_after_first_word(
    ctx: JobContext,
    session: AgentSession[Any],
    account: Account,
    caller: rtc.RemoteParticipant,
    slot: capacity.CallSlot,
    call: CallRecord,
) -> None:
    """The handoff to a person (agent/call/handoff/core.py; a call a person took stops counting;
    a phone call of a `handoff_transfer: warm` account first tries agent/call/handoff/warm.py),
    a phone's keys (agent/call/keypad.py) and the call's time limit (agent/call/call_limit.py;
    not for a call taken or left)."""
    settings = get_settings()
    first_ends: list[HandoffEnd] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    if phone.is_sip_caller(caller) and account.handoff_transfer == "warm":
        pool: EnginePool = ctx.proc.userdata["pool"]
        consult = warm.LiveKitConsult(
            ctx.room,
            session,
            account,
            caller.identity,
            settings,
            pool.voice_for(account.voice),
            end_call=ctx.delete_room,
        )
        first_ends.append(warm.end_for(account, consult, settings))
        closers.append(consult.aclose)
    handoffs = handoff.attach(
        session,
        ctx.room,
        account,
        caller,
        settings,
        on_taken=slot.release,
        on_state=lambda state, taken_by: _note_handoff(call, state, taken_by),
        messages=_voice_mail(ctx, session, account, caller, settings),
        first_ends=first_ends,
        closers=closers,
    )
    ctx.add_shutdown_callback(handoffs.aclose)
    if phone.is_sip_caller(caller):  # the phone's keys: 0 for a person, the account's answers
        keypad.attach(ctx.room, caller, keypad.Keypad(account, session, handoffs))
    call_limit.attach(ctx, session, account, settings.max_call_seconds, taken=lambda: slot.released)


def _note_handoff(call: CallRecord, state: str, taken_by: str | None) -> None:
    """The handoff's state and who took it, for the call history."""
    call.handoff = state
    call.taken_by = taken_by


def _voice_mail(
    ctx: JobContext,
    session: AgentSession[Any],
    account: Account,
    caller: rtc.RemoteParticipant,
    settings: Settings,
) -> voicemail.VoiceMail | None:
    """The call's voice message after a handoff nobody took (agent/call/voicemail.py), over
    the process's loaded engines (Silero's VAD, Whisper); only objects are made per call."""
    if not settings.voice_messages or not account.recording:
        return None
    pool: EnginePool = ctx.proc.userdata["pool"]

    async def end_call() -> None:
        await ctx.delete_room()
        ctx.shutdown(reason="voice message taken")

    return voicemail.VoiceMail(
        session=session,
        caller=caller,
        account=account,
        book=voicemail.MessageBook(settings.voice_messages_dir),
        # The process's loaded VAD itself: a message opens a stream of its own on it (each
        # stream keeps its own state), and nothing subscribes to its events, so no per-call
        # copy is made for the calls that never leave a message.
        vad=pool.vad,
        transcriber=pool.stt,
        limits=voicemail.MessageLimits(
            max_s=settings.voice_message_max_seconds,
            silence_s=settings.voice_message_silence_seconds,
            start_s=settings.voice_message_start_seconds,
        ),
        voice_rate=pool.voice_for(account.voice).sample_rate,
        end_call=end_call,
    )
