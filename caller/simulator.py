"""Drives one call: join, hear the greeting, ask questions, transcribe and time the answers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from livekit import api, rtc

from agent.accounts.resolve import ACCOUNT_ATTRIBUTE
from agent.settings import Settings
from agent.web.grants import caller_grants
from caller.mic import Microphone
from caller.recorder import RATE, Recorder, save_wav

# After a barge-in, agent audio within this long of its silence is its answer going on (a
# resumed sentence, or its reply to what the caller said).
RESUME_WITHIN_S = 4.0

logger = logging.getLogger("firstword.caller")

Transcribe = Callable[[np.ndarray, int], str]


@dataclass
class Question:
    text: str  # what the caller says (for WAV input: a label, transcribed later)
    audio: np.ndarray
    sample_rate: int


@dataclass
class Turn:
    question: str
    answer: str
    latency_s: float | None  # end of the caller's speech -> agent's first audible audio
    asked_at_s: float  # since the caller joined
    answer_audio_s: float
    # The agent spoke while the caller was still asking (cut off mid-question, or talked over).
    talked_over: bool = False


@dataclass
class CallReport:
    room: str
    connect_s: float  # time for room.connect() itself
    ttfw_s: float | None  # joined -> agent's first audible audio
    greeting: str
    turns: list[Turn] = field(default_factory=list)
    hung_up_mid_answer: bool = False
    # The caller left at `CallOptions.leave_at_s`, whatever was going on (a hang-up).
    hung_up: bool = False
    # --barge-in: the caller's first word over the first answer -> the agent's last audible frame.
    barge_in_s: float | None = None
    # After a barge-in: the agent's silence before its audio came back, and what it said.
    resumed_after_s: float | None = None
    heard_after: str = ""
    # When connect() returned, on time.perf_counter(): CLOCK_MONOTONIC on Linux, the clock
    # the worker's call timeline uses, so the two can be lined up.
    joined_at: float = 0.0
    # Seconds after joining (negative: before connect() returned) that the agent's track was
    # subscribed and its first frame of any loudness arrived: where the first word's time goes.
    subscribed_s: float | None = None
    first_audio_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallOptions:
    room: str = ""
    account: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    greeting_timeout_s: float = 20.0
    answer_timeout_s: float = 20.0
    end_silence_s: float = 1.2
    hang_up_mid_answer: bool = False  # leave as soon as the first answer starts
    # Leave this many seconds after joining, whatever was heard (a caller hanging up before
    # the first word when small); None: stay for the call.
    hang_up_after_s: float | None = None
    # Wait this long after the greeting before the first question (a caller on hold).
    pause_before_questions_s: float = 0.0
    # Seconds the caller thinks after each answer before asking the next question (one
    # value per gap, cycled; empty: ask at once), as a person on the phone does.
    think_s: tuple[float, ...] = ()
    # Hang up this many seconds after joining, whatever is going on (mid-greeting, mid-
    # question, mid-answer); what was measured until then is kept. None: stay for the call.
    leave_at_s: float | None = None
    barge_in: Question | None = None  # say this over the first answer, time the agent's stop
    barge_in_after_s: float = 0.5  # how far into the answer the caller starts speaking
    record_dir: Path | None = None  # where to save the agent's audio as <room>.wav
    # Join with a token from the web app (`POST /api/token`), whose room has the agent
    # pre-dispatched, instead of minting one for a new room.
    web_url: str | None = None
    # Seconds between getting that token and joining: a page asks for it when it opens, and
    # the caller clicks a moment later; the agent gets ready in between.
    web_lead_s: float = 0.0
    # Join as a SIP-kind participant (as LiveKit's SIP bridge does), with `sip.*` attributes.
    sip_trunk_number: str | None = None
    sip_caller_number: str = "+15035550123"
    # The microphone's silence between utterances: None for digital zeros (as before), or a
    # noise floor in dBFS RMS (a real line's, e.g. -65 quiet room, -50 phone hiss).
    noise_floor_dbfs: float | None = None


async def web_ticket(web_url: str, account: str | None) -> dict[str, str]:
    """Ask the web app for a caller token, as the call page does (the agent is dispatched then)."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(f"{web_url.rstrip('/')}/api/token", json={"account": account or ""}) as reply,
    ):
        body = await reply.json()
        if reply.status != 200:
            raise RuntimeError(f"the web app refused the token: {reply.status} {body}")
        return {key: str(value) for key, value in body.items()}


def caller_token(
    settings: Settings, room: str, identity: str, attributes: dict[str, str], *, sip: bool = False
) -> str:
    token = (
        api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(identity)
        .with_name("firstword caller simulator")
        .with_attributes(attributes)
        .with_grants(caller_grants(room))
    )
    if sip:
        # The token's `kind` claim; the server reports it as the participant's kind.
        token = token.with_kind("sip")
    return token.to_jwt()


def sip_attributes(trunk_number: str, caller_number: str) -> dict[str, str]:
    """The attributes LiveKit's SIP bridge sets on an inbound caller."""
    return {
        "sip.trunkPhoneNumber": trunk_number,
        "sip.phoneNumber": caller_number,
        "sip.callStatus": "active",
    }


async def run_call(
    settings: Settings,
    questions: list[Question],
    transcribe: Transcribe | None,
    options: CallOptions,
) -> CallReport:
    """One call. Without `transcribe` it only times the first word, then hangs up."""
    url = settings.livekit_url
    if options.web_url:
        ticket = await web_ticket(options.web_url, options.account)
        room_name, token, url = ticket["room"], ticket["token"], ticket["url"]
        await asyncio.sleep(options.web_lead_s)
    else:
        room_name = options.room or f"call-{uuid.uuid4().hex[:8]}"
        attributes = dict(options.attributes)
        if options.account:
            attributes[ACCOUNT_ATTRIBUTE] = options.account
        sip = options.sip_trunk_number is not None
        if options.sip_trunk_number is not None:
            attributes.update(sip_attributes(options.sip_trunk_number, options.sip_caller_number))
        identity = f"{'sip' if sip else 'caller'}-{uuid.uuid4().hex[:6]}"
        token = caller_token(settings, room_name, identity, attributes, sip=sip)

    room = rtc.Room()
    recorder = Recorder()
    tasks: set[asyncio.Task[None]] = set()
    subscribed: list[float] = []

    @room.on("track_subscribed")
    def _on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            subscribed.append(time.perf_counter())
            task = asyncio.create_task(recorder.consume(track), name=f"record-{p.identity}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    mic = Microphone(options.noise_floor_dbfs)
    t_connect = time.perf_counter()
    await room.connect(url, token)
    joined = time.perf_counter()
    try:
        track = rtc.LocalAudioTrack.create_audio_track("microphone", mic.source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        mic.start()

        report = CallReport(
            room=room_name, connect_s=joined - t_connect, ttfw_s=None, greeting="", joined_at=joined
        )
        if options.leave_at_s is not None:
            try:
                async with asyncio.timeout(options.leave_at_s - (time.perf_counter() - joined)):
                    await _converse(
                        report, questions, transcribe, options, mic, recorder, subscribed, joined
                    )
            except TimeoutError:
                report.hung_up = True
            return report
        await _converse(report, questions, transcribe, options, mic, recorder, subscribed, joined)
        return report
    finally:
        if options.record_dir is not None and recorder.chunks:
            path = options.record_dir / f"{room_name}.wav"
            await asyncio.to_thread(save_wav, path, recorder.audio(0, len(recorder.chunks)), RATE)
        await mic.aclose()
        await room.disconnect()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _converse(
    report: CallReport,
    questions: list[Question],
    transcribe: Transcribe | None,
    options: CallOptions,
    mic: Microphone,
    recorder: Recorder,
    subscribed: list[float],
    joined: float,
) -> None:
    """The call after joining: the greeting, then each question and its answer."""
    if options.hang_up_after_s is not None:
        start = await recorder.wait_speech_start(joined, options.hang_up_after_s)
        report.ttfw_s = None if start is None else start[1] - joined
        await asyncio.sleep(max(0.0, joined + options.hang_up_after_s - time.perf_counter()))
        return
    start = await recorder.wait_speech_start(joined, options.greeting_timeout_s)
    if start is None:
        logger.error("no greeting within %.0f s", options.greeting_timeout_s)
        return
    first, first_at = start
    report.ttfw_s = first_at - joined
    report.subscribed_s = subscribed[0] - joined if subscribed else None
    report.first_audio_s = recorder.times[0] - joined if recorder.times else None
    if transcribe is None:
        return
    end = await recorder.wait_speech_end(first, options.end_silence_s, 30.0)
    report.greeting = await asyncio.to_thread(transcribe, recorder.audio(first, end), RATE)
    if options.pause_before_questions_s:
        await asyncio.sleep(options.pause_before_questions_s)

    for index, question in enumerate(questions):
        if index and options.think_s:
            await asyncio.sleep(options.think_s[(index - 1) % len(options.think_s)])
        ended = await mic.say(question.audio, question.sample_rate)
        # From the caller's first sound (after the clip's lead-in) to the end of the clip:
        # an answer heard in between is an answer to part of the question.
        said_from = ended - question.audio.size / question.sample_rate + 0.2
        talked_over = recorder.audible_between(said_from, ended)
        start = await recorder.wait_speech_start(ended, options.answer_timeout_s)
        if start is None:
            report.turns.append(Turn(question.text, "", None, ended - joined, 0.0))
            continue
        first, first_at = start
        if options.hang_up_mid_answer:
            report.hung_up_mid_answer = True
            report.turns.append(Turn(question.text, "", first_at - ended, ended - joined, 0))
            break
        if options.barge_in is not None:
            await _barge_in(mic, recorder, options, report, transcribe)
            report.turns.append(Turn(question.text, "", first_at - ended, ended - joined, 0))
            break
        end = await recorder.wait_speech_end(first, options.end_silence_s, 60.0)
        audio = recorder.audio(first, end)
        answer = await asyncio.to_thread(transcribe, audio, RATE)
        report.turns.append(
            Turn(
                question.text,
                answer,
                first_at - ended,
                ended - joined,
                audio.size / RATE,
                talked_over=talked_over,
            )
        )


async def _barge_in(
    mic: Microphone,
    recorder: Recorder,
    options: CallOptions,
    report: CallReport,
    transcribe: Transcribe | None,
) -> None:
    """Speak over the agent's answer. `report.barge_in_s`: seconds from the caller's first
    word to the agent's last audible frame before a silence (None if it never stopped within
    10 s); `report.resumed_after_s`: how long that silence lasted when the agent's audio came
    back within `RESUME_WITHIN_S` (its sentence resumed, or a reply to what was said),
    and `report.heard_after` what it said then (with `transcribe`)."""
    assert options.barge_in is not None
    await asyncio.sleep(options.barge_in_after_s)
    audio = options.barge_in.audio
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    audio = audio[int(loud[0]) :] if loud.size else audio  # the first word, not the lead-in
    cut = max(0, len(recorder.times) - 1)
    said_at = time.perf_counter()
    speaking = asyncio.create_task(mic.say(audio, options.barge_in.sample_rate))
    try:
        # The agent's answer stops; a short gap is all it leaves before answering again.
        end = await recorder.wait_speech_end(cut, 0.3, 10.0)
        if time.perf_counter() - said_at >= 10.0:
            return
        silent_at = recorder.times[end - 1]
        report.barge_in_s = max(0.0, silent_at - said_at)
        # Whatever the caller still has to say is said before the agent may go on.
        await speaking
        back = await recorder.wait_speech_start(silent_at + 0.3, RESUME_WITHIN_S)
        if back is None:
            return
        report.resumed_after_s = back[1] - silent_at
        if transcribe is not None:
            stop = await recorder.wait_speech_end(back[0], 1.5, 30.0)
            report.heard_after = await asyncio.to_thread(
                transcribe, recorder.audio(back[0], stop), RATE
            )
    finally:
        if not speaking.done():
            await speaking
