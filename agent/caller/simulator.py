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

import numpy as np
from livekit import api, rtc

from ..accounts.resolve import ACCOUNT_ATTRIBUTE
from ..settings import Settings
from .mic import Microphone
from .recorder import RATE, Recorder, save_wav

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


@dataclass
class CallReport:
    room: str
    connect_s: float  # time for room.connect() itself
    ttfw_s: float | None  # joined -> agent's first audible audio
    greeting: str
    turns: list[Turn] = field(default_factory=list)
    hung_up_mid_answer: bool = False
    # --barge-in: the caller's first word over the first answer -> the agent's last audible frame.
    barge_in_s: float | None = None
    # When connect() returned, on time.perf_counter(): CLOCK_MONOTONIC on Linux, the clock
    # the worker's call timeline uses, so the two can be lined up.
    joined_at: float = 0.0

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
    barge_in: Question | None = None  # say this over the first answer, time the agent's stop
    barge_in_after_s: float = 0.5  # how far into the answer the caller starts speaking
    record_dir: Path | None = None  # where to save the agent's audio as <room>.wav


def caller_token(settings: Settings, room: str, identity: str, attributes: dict[str, str]) -> str:
    return (
        api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(identity)
        .with_name("firstword caller simulator")
        .with_attributes(attributes)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


async def run_call(
    settings: Settings,
    questions: list[Question],
    transcribe: Transcribe | None,
    options: CallOptions,
) -> CallReport:
    """One call. Without `transcribe` it only times the first word, then hangs up."""
    room_name = options.room or f"call-{uuid.uuid4().hex[:8]}"
    attributes = dict(options.attributes)
    if options.account:
        attributes[ACCOUNT_ATTRIBUTE] = options.account
    token = caller_token(settings, room_name, f"caller-{uuid.uuid4().hex[:6]}", attributes)

    room = rtc.Room()
    recorder = Recorder()
    tasks: set[asyncio.Task[None]] = set()

    @room.on("track_subscribed")
    def _on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            task = asyncio.create_task(recorder.consume(track), name=f"record-{p.identity}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    mic = Microphone()
    t_connect = time.perf_counter()
    await room.connect(settings.livekit_url, token)
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
        start = await recorder.wait_speech_start(joined, options.greeting_timeout_s)
        if start is None:
            logger.error("no greeting within %.0f s", options.greeting_timeout_s)
            return report
        first, first_at = start
        report.ttfw_s = first_at - joined
        if transcribe is None:
            return report
        end = await recorder.wait_speech_end(first, options.end_silence_s, 30.0)
        report.greeting = await asyncio.to_thread(transcribe, recorder.audio(first, end), RATE)

        for question in questions:
            ended = await mic.say(question.audio, question.sample_rate)
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
                report.barge_in_s = await _barge_in(mic, recorder, options)
                report.turns.append(Turn(question.text, "", first_at - ended, ended - joined, 0))
                break
            end = await recorder.wait_speech_end(first, options.end_silence_s, 60.0)
            audio = recorder.audio(first, end)
            answer = await asyncio.to_thread(transcribe, audio, RATE)
            report.turns.append(
                Turn(question.text, answer, first_at - ended, ended - joined, audio.size / RATE)
            )
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


async def _barge_in(mic: Microphone, recorder: Recorder, options: CallOptions) -> float | None:
    """Speak over the agent's answer; seconds from the caller's first word to the agent's
    last audible frame (its silence), both as heard/sent by the caller. None if it never
    stopped within 10 s."""
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
            return None
        return max(0.0, recorder.times[end - 1] - said_at)
    finally:
        await speaking
