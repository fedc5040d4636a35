"""Building one call's session: lease the engines, choose the cloud chains, build the
AgentSession on the call's published track, start it, and have the first line's audio at hand.

The worker's job (agent/worker/job.py) decides when: after the caller joined, or before it in
a room that names its account (a pre-dispatched room). Conversation logs and metrics
collectors are attached after the first greeting frame, off its path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, AgentStateChangedEvent, CloseEvent, JobContext, room_io
from livekit.agents.voice import SpeechHandle

from .. import metrics
from ..accounts import Account
from ..cloud.caches import CloudCaches
from ..cloud.chains import build_chains
from ..engines.answers import AnswerAudio
from ..engines.pools import EnginePool
from ..settings import get_settings
from .ahead import AgentTrack
from .assistant import Assistant
from .barge_in import OverlapFilter
from .call_log import attach_after_first_frame, attach_conversation_logs, logs_transcripts
from .noise import noise_filter
from .record import CallRecord
from .timeline import CallTimeline, report
from .turn_taking import turn_taking

logger = logging.getLogger("firstword.worker")


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


async def prepare_session(
    ctx: JobContext,
    *,
    account: Account,
    first_line: str,
    caller_kind: Any,
    track: AgentTrack,
    call: CallRecord,
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
        call.cloud = chains.names
    cached, greeting_audio = await pool.greetings.stream(pool.voice_for(account.voice), first_line)
    metrics.GREETING_CACHE.labels("hit" if cached else "miss").inc()
    call.greeting_cached = cached
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
    # What the caller says over the agent: a backchannel does not stop it (agent/call/barge_in.py).
    overlap = OverlapFilter({"room": ctx.room.name}, enabled=settings.backchannel_filter)
    overlap.attach(session)
    # The session closes when the caller leaves; end the job with it, so the agent leaves
    # the room and the process is freed now rather than when the server reaps the room.
    session.on("close", on_close)

    def _after_first_frame(_event: AgentStateChangedEvent) -> None:
        timeline.mark("first_frame")
        # A greeting said before the caller came can go out before the agent hears that
        # they joined; its timeline line waits for that (written at the caller's arrival).
        if not call.ahead or "caller_joined" in timeline.marks:
            report(timeline, call, reason="first word")
        transcripts = logs_transcripts(settings.log_transcripts, account)
        attach_conversation_logs(session, call, turn_notes, transcripts=transcripts)
        # The first answer is seconds away: time enough to open the cloud connections.
        chains.start_warming(settings.rewarm_idle_seconds)
        if caches is not None and chains.cloud:
            caches.shared.warm()

    attach_after_first_frame(session, _after_first_frame)

    # The track published at connect (agent/call/ahead.py) is the session's audio output.
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
