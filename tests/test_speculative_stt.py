"""Speculative recognition: kept when the caller stays silent, dropped when they go on.

A scripted energy VAD (loud frame = speech, 10 ms windows, like Silero's events) and a
recogniser that says how much audio it was given drive `SpeculativeSTT` without models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils, vad
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from agent.engines.speculative_stt import SpeculativeSTT

RATE = 16000
WINDOW = RATE // 100  # 10 ms
MIN_SILENCE = 0.3


class EnergyVAD(vad.VAD):
    def __init__(self) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.01))

    def stream(self) -> vad.VADStream:
        return _EnergyStream(self)


class _EnergyStream(vad.VADStream):
    async def _main_task(self) -> None:
        speaking, silence, speech = False, 0.0, 0.0
        buffer: list[rtc.AudioFrame] = []
        async for frame in self._input_ch:
            if not isinstance(frame, rtc.AudioFrame):
                continue
            loud = bool(np.abs(np.frombuffer(frame.data, dtype=np.int16)).max() > 1000)
            self._event_ch.send_nowait(
                vad.VADEvent(
                    type=vad.VADEventType.INFERENCE_DONE,
                    samples_index=0,
                    timestamp=0.0,
                    speech_duration=speech,
                    silence_duration=silence,
                    frames=[frame],
                    speaking=speaking,
                    raw_accumulated_silence=silence,
                    raw_accumulated_speech=speech,
                )
            )
            if loud:
                speech, silence = speech + 0.01, 0.0
                if not speaking:
                    speaking = True
                    buffer = [frame]
                    self._event_ch.send_nowait(
                        vad.VADEvent(
                            type=vad.VADEventType.START_OF_SPEECH,
                            samples_index=0,
                            timestamp=0.0,
                            speech_duration=speech,
                            silence_duration=0.0,
                            frames=list(buffer),
                        )
                    )
                    continue
            else:
                silence, speech = silence + 0.01, 0.0
            if speaking:
                buffer.append(frame)
                if silence >= MIN_SILENCE:
                    speaking = False
                    self._event_ch.send_nowait(
                        vad.VADEvent(
                            type=vad.VADEventType.END_OF_SPEECH,
                            samples_index=0,
                            timestamp=0.0,
                            speech_duration=0.0,
                            silence_duration=silence,
                            frames=list(buffer),
                        )
                    )


class CountingSTT(stt.STT):
    """Says how many loud 10 ms windows it was given, after `delay` seconds."""

    def __init__(self, delay: float = 0.0, gate: asyncio.Event | None = None) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self.calls = 0
        self.delay = delay
        self.gate = gate  # when set: every recognition waits for it (a busy machine)

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.gate is not None:
            await self.gate.wait()
        samples = np.frombuffer(rtc.combine_audio_frames(buffer).data, dtype=np.int16)
        loud = int((np.abs(samples.reshape(-1, WINDOW)).max(axis=1) > 1000).sum())
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=LanguageCode("en"), text=f"{loud} loud.")],
        )


def _frames(pattern: list[tuple[bool, float]]) -> list[rtc.AudioFrame]:
    frames = []
    for loud, seconds in pattern:
        value = 8000 if loud else 0
        for _ in range(round(seconds * 100)):
            data = np.full(WINDOW, value, dtype=np.int16)
            frames.append(rtc.AudioFrame(data.tobytes(), RATE, 1, WINDOW))
    return frames


async def _run(
    pattern: list[tuple[bool, float]],
    before_final: Callable[[str], Awaitable[None]] | None = None,
    told: list[object] | None = None,
) -> tuple[list[stt.SpeechEvent], SpeculativeSTT]:
    recogniser = CountingSTT()
    speculative = SpeculativeSTT(stt=recogniser, vad=EnergyVAD(), speculate_after_s=0.1)
    speculative.before_final = before_final
    if told is not None:
        speculative.on_recognising = told.append
        speculative.on_transcript = told.append
    stream = speculative.stream()
    events: list[stt.SpeechEvent] = []

    async def read() -> None:
        async for event in stream:
            events.append(event)

    reader = asyncio.create_task(read())
    for frame in _frames(pattern):
        stream.push_frame(frame)
        await asyncio.sleep(0.002)  # paced, so the speculation can finish in the silence
    stream.end_input()
    await asyncio.wait_for(reader, 5)
    await stream.aclose()
    return events, speculative


def _texts(events: list[stt.SpeechEvent], kind: stt.SpeechEventType) -> list[str]:
    return [e.alternatives[0].text for e in events if e.type == kind]


async def test_a_speculation_is_kept_when_the_caller_stays_silent() -> None:
    events, speculative = await _run([(False, 0.1), (True, 0.5), (False, 0.6)])
    finals = _texts(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert finals == ["50 loud."]
    # Sent ahead as a preflight, so preemptive generation starts before the end of speech.
    assert _texts(events, stt.SpeechEventType.PREFLIGHT_TRANSCRIPT) == ["50 loud."]
    kinds = [e.type for e in events]
    assert kinds.index(stt.SpeechEventType.PREFLIGHT_TRANSCRIPT) < kinds.index(
        stt.SpeechEventType.FINAL_TRANSCRIPT
    )
    wrapped = speculative.wrapped_stt
    assert isinstance(wrapped, CountingSTT) and wrapped.calls == 1  # not transcribed twice
    assert speculative.stats.kept == 1 and speculative.stats.dropped == 0


async def test_the_endpointing_hears_when_speech_awaits_its_transcript() -> None:
    told: list[object] = []
    await _run([(False, 0.1), (True, 0.5), (False, 0.6)], told=told)
    # Busy from the start of speech until the final is sent (not at the preflight).
    assert told == [True, "50 loud.", "50 loud.", False]


async def test_a_speculation_is_dropped_when_the_caller_goes_on() -> None:
    # A 0.2 s pause: past the speculation point (0.1 s), short of the VAD's end (0.3 s).
    events, speculative = await _run(
        [(False, 0.1), (True, 0.3), (False, 0.2), (True, 0.4), (False, 0.6)]
    )
    # One final for the whole utterance (both halves), never one for the first half.
    assert _texts(events, stt.SpeechEventType.FINAL_TRANSCRIPT) == ["70 loud."]
    assert speculative.stats.dropped >= 1 and speculative.stats.kept == 1


async def test_pauses_do_not_queue_speculations_behind_a_slow_recogniser() -> None:
    gate = asyncio.Event()  # the recogniser is busy until every pause has gone by
    speculative = SpeculativeSTT(stt=CountingSTT(gate=gate), vad=EnergyVAD(), speculate_after_s=0.1)
    stream = speculative.stream()
    events: list[stt.SpeechEvent] = []

    async def read() -> None:
        async for event in stream:
            events.append(event)

    async def push(pattern: list[tuple[bool, float]]) -> None:
        for frame in _frames(pattern):
            stream.push_frame(frame)
            await asyncio.sleep(0.002)

    reader = asyncio.create_task(read())
    await push([(False, 0.1)] + [(True, 0.2), (False, 0.15)] * 4 + [(True, 0.2)])
    gate.set()
    await push([(False, 0.6)])
    stream.end_input()
    await asyncio.wait_for(reader, 10)
    await stream.aclose()
    # Four short pauses while the first speculation runs: no run queued per pause.
    assert speculative.stats.started <= 2, speculative.stats
    assert _texts(events, stt.SpeechEventType.FINAL_TRANSCRIPT) == ["100 loud."]


async def test_before_final_runs_before_the_final_transcript_is_sent() -> None:
    seen: list[tuple[str, int]] = []
    events: list[stt.SpeechEvent] = []

    async def before_final(text: str) -> None:
        # How many finals had been sent when the hook ran: none yet.
        finals = _texts(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
        seen.append((text, len(finals)))

    got, _ = await _run([(False, 0.1), (True, 0.5), (False, 0.6)], before_final)
    events.extend(got)
    assert seen == [("50 loud.", 0)]
    assert _texts(events, stt.SpeechEventType.FINAL_TRANSCRIPT) == ["50 loud."]


async def test_a_hanging_before_final_does_not_lose_the_transcript() -> None:
    async def never(text: str) -> None:
        await asyncio.Event().wait()

    events, _ = await _run([(False, 0.1), (True, 0.5), (False, 0.6)], never)
    assert _texts(events, stt.SpeechEventType.FINAL_TRANSCRIPT) == ["50 loud."]
