"""Speculative recognition: start transcribing at the first ~100 ms of silence.

Whisper is not a streaming recogniser, so livekit-agents wraps it in a `StreamAdapter` that
transcribes an utterance only once the VAD has seen `min_silence_duration` of silence (0.25 s
or more: the local turn detector needs that much). The transcription (~60-110 ms on this
machine, more when it is busy) then sits on the path of every answer.

`SpeculativeSTT` is that adapter with one change: when the caller has been silent for
`speculate_after_s` (shorter than the VAD's silence), it starts transcribing what it has.
If the caller stays silent until the VAD ends the utterance, that transcript is kept and
given as the final one at once; if they speak again, it is dropped and the whole utterance
is transcribed again later (so a paused question is never cut into pieces by the
speculation). A kept speculation is also sent ahead as a `PREFLIGHT_TRANSCRIPT`, which is
the framework's own hook for recognisers that know the words before the end of the turn:
it starts preemptive generation (the FAQ match and its cached audio) while the VAD is
still waiting, and the final transcript, being the same text, keeps that generation.

Written by hand because the framework's `StreamAdapter` has no such hook; it mirrors
`livekit.agents.stt.stream_adapter.StreamAdapterWrapper` (1.8.9) otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils, vad
from livekit.agents.language import LanguageCode
from livekit.agents.stt import STTCapabilities
from livekit.agents.stt.stream_adapter import DEFAULT_STREAM_ADAPTER_API_CONNECT_OPTIONS
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

logger = logging.getLogger("firstword.speculative_stt")

# Measured when it was built: tiny.en on the short window took 60-110 ms for a 2-5 s question,
# so starting at 150 ms of silence left it the VAD's remaining 100-200 ms. Measured again on
# this machine (2026-12-02): 250-450 ms, so the kept speculation now finishes 0.3-0.6 s after
# the VAD's end of speech (README "The answer benchmark").
# 0.1 s since 2026-12-05 (with the VAD's silence at 0.25 s): measured, README.
DEFAULT_SPECULATE_AFTER_S = 0.1
# Most a final transcript is held for `before_final` (the FAQ match: ~10-30 ms).
BEFORE_FINAL_TIMEOUT_S = 0.25


@dataclass
class SpeculationStats:
    """Counts over every stream of one provider object (one call), for logs and tests."""

    started: int = 0
    kept: int = 0
    dropped: int = 0
    saved_s: list[float] = field(default_factory=list)  # EOS -> final, kept speculations


class SpeculativeSTT(stt.STT):
    """A streaming STT over a non-streaming one and a VAD, transcribing at the first pause."""

    def __init__(
        self,
        *,
        stt: stt.STT,
        vad: vad.VAD,
        speculate_after_s: float = DEFAULT_SPECULATE_AFTER_S,
    ) -> None:
        super().__init__(
            capabilities=STTCapabilities(streaming=True, interim_results=False),
        )
        self._stt = stt
        self._vad = vad
        self.speculate_after_s = speculate_after_s
        self.stats = SpeculationStats()
        # Told every transcript just before it is sent (final or preflight), on the event
        # loop: the turn-taking reads it (agent/call/turn_taking.py).
        self.on_transcript: Callable[[str], None] | None = None
        # Told True when speech starts that has no transcript yet, False when its transcript
        # is told (or it had no words): the turn-taking does not end a turn on an earlier
        # part's words while a later part is still being recognised.
        self.on_recognising: Callable[[bool], None] | None = None
        # Awaited with each final transcript before it is sent (at most
        # BEFORE_FINAL_TIMEOUT_S): the turn-taking matches it to the FAQs here, so that the
        # framework's turn decision, made as soon as the transcript arrives, already knows
        # whether the question is a confident match (agent/call/turn_taking.py).
        self.before_final: Callable[[str], Awaitable[None]] | None = None
        self._stt.on("metrics_collected", self._on_metrics_collected)

    @property
    def wrapped_stt(self) -> stt.STT:
        return self._stt

    @property
    def model(self) -> str:
        return self._stt.model

    @property
    def provider(self) -> str:
        return self._stt.provider

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        return await self._stt.recognize(
            buffer=buffer, language=language, conn_options=conn_options
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return _SpeculativeStream(self, language=language, conn_options=conn_options)

    def prewarm(self) -> None:
        self._stt.prewarm()

    def _on_metrics_collected(self, *args: object, **kwargs: object) -> None:
        self.emit("metrics_collected", *args, **kwargs)

    async def aclose(self) -> None:
        self._stt.off("metrics_collected", self._on_metrics_collected)


class _SpeculativeStream(stt.RecognizeStream):
    def __init__(
        self,
        owner: SpeculativeSTT,
        *,
        language: NotGivenOr[str],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(stt=owner, conn_options=DEFAULT_STREAM_ADAPTER_API_CONNECT_OPTIONS)
        self._owner = owner
        self._language = language
        self._wrapped_conn_options = conn_options
        # The utterance so far (the VAD's speech buffer at its start, then every window).
        self._frames: list[rtc.AudioFrame] = []
        self._speaking = False
        self._speculation: asyncio.Task[str] | None = None
        self._tasks: set[asyncio.Task[str]] = set()

    async def _metrics_monitor_task(self, event_aiter: AsyncIterable[stt.SpeechEvent]) -> None:
        async for _ in event_aiter:  # the wrapped STT reports its own metrics
            pass

    async def _transcribe(self, frames: list[rtc.AudioFrame]) -> str:
        event = await self._owner.wrapped_stt.recognize(
            buffer=utils.merge_frames(frames),
            language=self._language,
            conn_options=self._wrapped_conn_options,
        )
        return event.alternatives[0].text if event.alternatives else ""

    def _drop_speculation(self) -> None:
        # The thread running Whisper cannot be stopped; its result is simply not used.
        if self._speculation is not None:
            self._owner.stats.dropped += 1
            self._speculation = None
            logger.debug("speculative transcript dropped: the caller went on")

    def _busy(self) -> bool:
        """A dropped speculation still running: its Whisper call cannot be stopped and holds
        the model, so another would only queue behind it (one per pause of a long question,
        each delaying the final transcript). The next pause after it ends may speculate."""
        return any(not task.done() for task in self._tasks)

    def _speculate(self) -> None:
        stats = self._owner.stats
        stats.started += 1
        task = asyncio.create_task(self._transcribe(list(self._frames)), name="speculative-stt")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._on_speculated)
        self._speculation = task

    def _on_speculated(self, task: asyncio.Task[str]) -> None:
        if task is not self._speculation or task.cancelled() or task.exception() is not None:
            return
        text = task.result()
        if text and self._speaking:
            # Still silent: let preemptive generation start on these words now.
            self._tell(text)
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.PREFLIGHT_TRANSCRIPT,
                    alternatives=[stt.SpeechData(language=self._language_code(), text=text)],
                )
            )

    def _tell(self, text: str) -> None:
        if self._owner.on_transcript is not None:
            self._owner.on_transcript(text)

    def _recognising(self, busy: bool) -> None:
        if self._owner.on_recognising is not None:
            self._owner.on_recognising(busy)

    def _language_code(self) -> LanguageCode:
        wrapped = getattr(self._owner.wrapped_stt, "language", "en")
        language = self._language if isinstance(self._language, str) else wrapped
        return LanguageCode(str(language))

    async def _final(self, event: vad.VADEvent) -> None:
        speech_end_time = time.time() - event.silence_duration - event.inference_duration
        self._event_ch.send_nowait(
            stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH, speech_end_time=speech_end_time)
        )
        speculation, self._speculation = self._speculation, None
        text: str | None = None
        if speculation is not None:
            eos = time.perf_counter()
            try:
                text = await speculation
            except Exception:
                logger.warning("speculative transcription failed; transcribing again")
            else:
                waited = time.perf_counter() - eos
                self._owner.stats.kept += 1
                self._owner.stats.saved_s.append(waited)
                logger.debug(
                    "speculative transcript kept",
                    extra={"waited_after_eos_ms": round(waited * 1000, 1)},
                )
        if text is None:
            text = await self._transcribe(event.frames)
        if not text:
            self._recognising(False)  # noise: no words, and nothing more to wait for
            return
        if self._owner.before_final is not None:
            try:
                await asyncio.wait_for(self._owner.before_final(text), BEFORE_FINAL_TIMEOUT_S)
            except Exception:
                # A late or failed match only loses the early end of turn, never the words.
                logger.warning("before_final failed or was late; sending the transcript")
        self._tell(text)
        self._recognising(False)  # (not at a preflight: the framework decides on finals)
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                alternatives=[stt.SpeechData(language=self._language_code(), text=text)],
                speech_end_time=speech_end_time,
            )
        )

    async def _run(self) -> None:
        vad_stream = self._owner._vad.stream()

        async def _forward_input() -> None:
            async for frame in self._input_ch:
                if isinstance(frame, self._FlushSentinel):
                    vad_stream.flush()
                    continue
                vad_stream.push_frame(frame)
            vad_stream.end_input()

        async def _recognize() -> None:
            speculate_after = self._owner.speculate_after_s
            async for event in vad_stream:
                if event.type == vad.VADEventType.START_OF_SPEECH:
                    self._speaking = True
                    self._frames = list(event.frames)  # prefix padding + speech so far
                    self._drop_speculation()
                    self._recognising(True)
                    self._event_ch.send_nowait(
                        stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
                    )
                elif event.type == vad.VADEventType.INFERENCE_DONE and self._speaking:
                    self._frames.extend(event.frames)
                    if event.raw_accumulated_speech > 0 or event.raw_accumulated_silence == 0:
                        self._drop_speculation()  # the caller went on speaking
                    elif (
                        speculate_after > 0
                        and self._speculation is None
                        and not self._busy()
                        and event.raw_accumulated_silence >= speculate_after
                    ):
                        self._speculate()
                elif event.type == vad.VADEventType.END_OF_SPEECH:
                    self._speaking = False
                    self._frames = []
                    await self._final(event)

        tasks = [
            asyncio.create_task(_forward_input(), name="forward_input"),
            asyncio.create_task(_recognize(), name="recognize"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await utils.aio.cancel_and_wait(*tasks, *self._tasks)
            await vad_stream.aclose()
