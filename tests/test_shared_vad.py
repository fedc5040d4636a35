"""One VAD stream per call: the session and the speculative recogniser hear the same events.

The scripted energy VAD of the speculative-recognition tests counts the frames it analyses,
so a test can tell one stream doing the work from two; one test runs the real Silero model
on a rendered question.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import vad
from livekit.plugins import silero

from agent.engines.local_tts import LocalTTS
from agent.engines.shared_vad import SharedVAD
from tests.test_speculative_stt import RATE, WINDOW, EnergyVAD, _EnergyStream


class CountingVAD(EnergyVAD):
    """The energy VAD, counting the streams opened and the frames they analysed."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.frames = 0

    def stream(self) -> vad.VADStream:
        self.opened += 1
        return _CountingStream(self)


class _CountingStream(_EnergyStream):
    def push_frame(self, frame: rtc.AudioFrame) -> None:
        assert isinstance(self._vad, CountingVAD)
        self._vad.frames += 1
        super().push_frame(frame)


def _frames(pattern: str) -> list[rtc.AudioFrame]:
    """'s' = 10 ms of loud audio, '.' = 10 ms of silence."""
    frames = []
    for ch in pattern:
        level = 8000 if ch == "s" else 0
        samples = np.full(WINDOW, level, dtype=np.int16)
        frames.append(rtc.AudioFrame(samples.tobytes(), RATE, 1, WINDOW))
    return frames


async def _collect(stream: vad.VADStream, until: int) -> list[vad.VADEventType]:
    """Speech starts and ends heard by one listener, until `until` of them."""
    seen: list[vad.VADEventType] = []
    async for event in stream:
        if event.type != vad.VADEventType.INFERENCE_DONE:
            seen.append(event.type)
            if len(seen) >= until:
                break
    return seen


SPEECH = "s" * 30 + "." * 40 + "s" * 20 + "." * 40  # two utterances, each ended by 0.4 s quiet
TWO_UTTERANCES = [vad.VADEventType.START_OF_SPEECH, vad.VADEventType.END_OF_SPEECH] * 2


async def test_two_listeners_hear_every_event_from_one_stream() -> None:
    wrapped = CountingVAD()
    shared = SharedVAD(wrapped)
    session_side, recogniser_side = shared.stream(), shared.stream()
    heard = asyncio.gather(_collect(session_side, 4), _collect(recogniser_side, 4))
    for frame in _frames(SPEECH):  # the framework pushes each frame to both
        session_side.push_frame(frame)
        recogniser_side.push_frame(frame)
    session_events, recogniser_events = await asyncio.wait_for(heard, 5)
    assert session_events == TWO_UTTERANCES
    assert recogniser_events == TWO_UTTERANCES
    # One stream analysed each frame once (two streams would have analysed it twice).
    assert wrapped.opened == 1 and shared.real_streams_opened == 1
    assert wrapped.frames == len(SPEECH)
    await session_side.aclose()
    await recogniser_side.aclose()


async def test_when_the_feeder_closes_the_other_listener_feeds() -> None:
    wrapped = CountingVAD()
    shared = SharedVAD(wrapped)
    first, second = shared.stream(), shared.stream()
    for frame in _frames("s" * 10):
        first.push_frame(frame)
        second.push_frame(frame)
    await asyncio.sleep(0.05)
    await first.aclose()  # e.g. the framework restarted its recognition
    heard = asyncio.create_task(_collect(second, 2))
    for frame in _frames("s" * 10 + "." * 40):
        second.push_frame(frame)
    assert await asyncio.wait_for(heard, 5) == [
        vad.VADEventType.START_OF_SPEECH,
        vad.VADEventType.END_OF_SPEECH,
    ]
    assert wrapped.frames == 60  # 10 from the first, then 50 from the second
    await second.aclose()


async def test_the_last_listener_closing_closes_the_stream_and_a_new_one_reopens() -> None:
    wrapped = CountingVAD()
    shared = SharedVAD(wrapped)
    only = shared.stream()
    only.push_frame(_frames("s")[0])
    await asyncio.sleep(0.05)
    await only.aclose()
    assert shared._real is None  # closed with its last listener
    again = shared.stream()
    heard = asyncio.create_task(_collect(again, 2))
    for frame in _frames("s" * 10 + "." * 40):
        again.push_frame(frame)
    assert len(await asyncio.wait_for(heard, 5)) == 2
    assert wrapped.opened == 2
    await again.aclose()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_silero_through_the_shared_stream_hears_a_question(hibari: LocalTTS) -> None:
    audio = hibari.render("What are your opening hours?")
    pcm = (np.concatenate([audio, np.zeros(hibari.sample_rate)]) * 32767).astype(np.int16)
    shared = SharedVAD(silero.VAD.load(min_silence_duration=0.25))
    session_side, recogniser_side = shared.stream(), shared.stream()
    heard = asyncio.gather(_collect(session_side, 2), _collect(recogniser_side, 2))
    step = hibari.sample_rate // 50  # 20 ms frames, as the room delivers them
    for start in range(0, pcm.size - step, step):
        frame = rtc.AudioFrame(pcm[start : start + step].tobytes(), hibari.sample_rate, 1, step)
        session_side.push_frame(frame)
        recogniser_side.push_frame(frame)
    expected = [vad.VADEventType.START_OF_SPEECH, vad.VADEventType.END_OF_SPEECH]
    assert await asyncio.wait_for(heard, 20) == [expected, expected]
    assert shared.real_streams_opened == 1
    await session_side.aclose()
    await recogniser_side.aclose()
