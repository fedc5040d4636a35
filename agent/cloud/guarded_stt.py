"""A streaming `stt.STT` around a cloud recogniser: breaker, timeout after speech, rescue.

A streaming recogniser that hangs says nothing, and silence is also what it says while the
caller listens; so the wrapper watches the audio itself (a cheap energy gate, not a second
VAD model): when the caller has spoken and then paused, a final transcript must arrive
within the STT timeout. If it does not, or the stream fails, the utterance in flight is
transcribed by the local recogniser (the `rescue`, from the audio kept since the last
final transcript), so the caller's question is not lost; then the error is raised and the
fallback adapter sends the rest of the call to the next recogniser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, APITimeoutError, stt, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from .. import metrics
from .policy import Policy, as_api_error, failure_kind

logger = logging.getLogger("firstword.cloud")

# int16 RMS above which a 10-20 ms frame counts as speech (about -40 dBFS).
_SPEECH_RMS = 330.0
# This much quiet after speech means the caller paused: a transcript is now due.
_PAUSE_SECONDS = 0.5
# Audio kept for a rescue: one long utterance.
_MAX_KEPT_SECONDS = 30.0


class GuardedSTT(stt.STT):
    def __init__(self, inner: stt.STT, policy: Policy, *, rescue: stt.STT) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True, interim_results=inner.capabilities.interim_results
            )
        )
        self.inner = inner
        self.policy = policy
        self.rescue = rescue

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def prewarm(self) -> None:
        # Google's (see `agent.compat.GoogleSTTWithClient`) opens a pooled connection ahead.
        self.inner.prewarm()

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        self.policy.admit()
        try:
            event = await asyncio.wait_for(
                self.inner.recognize(buffer, language=language), self.policy.first_timeout
            )
        except Exception as exc:
            self.policy.breaker.record_failure(failure_kind(exc))
            raise as_api_error(exc, self.policy.name) from exc
        self.policy.breaker.record_success()
        return event

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return _GuardedStream(self, language=language, conn_options=conn_options)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Utterance:
    """The audio since the last final transcript, and whether a transcript is now due."""

    def __init__(self) -> None:
        self.frames: list[rtc.AudioFrame] = []
        self.seconds = 0.0
        self.spoke = False
        self.quiet_since: float | None = None

    def add(self, frame: rtc.AudioFrame, now: float) -> None:
        samples = np.frombuffer(frame.data, dtype=np.int16)
        rms = float(np.sqrt(np.mean(samples.astype(np.float32) ** 2))) if samples.size else 0.0
        if rms >= _SPEECH_RMS:
            self.spoke, self.quiet_since = True, None
        elif self.spoke and self.quiet_since is None:
            self.quiet_since = now
        if self.spoke:
            self.frames.append(frame)
            self.seconds += frame.duration
            while self.seconds > _MAX_KEPT_SECONDS and self.frames:
                self.seconds -= self.frames.pop(0).duration

    def due_since(self) -> float | None:
        """When the caller paused after speaking (a transcript is due from then)."""
        if self.spoke and self.quiet_since is not None:
            return self.quiet_since + _PAUSE_SECONDS
        return None

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


class _GuardedStream(stt.RecognizeStream):
    def __init__(
        self, guarded: GuardedSTT, *, language: NotGivenOr[str], conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=guarded, conn_options=conn_options)
        self._guarded = guarded
        self._language = language
        self._utterance = _Utterance()

    async def _run(self) -> None:
        policy = self._guarded.policy
        policy.admit()
        inner = self._guarded.inner.stream(
            language=self._language,
            conn_options=APIConnectOptions(
                max_retry=0, timeout=policy.total_timeout, retry_interval=0
            ),
        )
        utterance = self._utterance
        finals = 0

        async def forward() -> None:
            async for data in self._input_ch:
                if isinstance(data, rtc.AudioFrame):
                    utterance.add(data, time.monotonic())
                    inner.push_frame(data)
                else:
                    inner.flush()
            inner.end_input()

        async def relay() -> None:
            nonlocal finals
            async for event in inner:
                self._event_ch.send_nowait(event)
                if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                    finals += 1
                    if finals == 1:
                        policy.breaker.record_success()
                    utterance.clear()

        async def watchdog() -> None:
            while True:
                await asyncio.sleep(0.05)
                due = utterance.due_since()
                if due is None or time.monotonic() - due <= policy.first_timeout:
                    continue
                timeout = APITimeoutError(
                    f"{policy.name}: no transcript {policy.first_timeout:.2f} s "
                    "after the caller paused",
                    retryable=False,
                )
                # A cough or line noise also trips the energy gate, and the recogniser
                # rightly says nothing: only words it missed make it a failure.
                if await self._rescue(timeout):
                    raise timeout

        tasks = [asyncio.create_task(t()) for t in (forward, relay, watchdog)]
        failed = False
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the watchdog and errors raise here
            # relay ended: the inner stream closed; wait for the input to end too
            await tasks[0]
        except Exception as exc:
            failed = True
            policy.breaker.record_failure(failure_kind(exc))
            await self._rescue(exc)
            raise as_api_error(exc, policy.name) from exc
        finally:
            if finals == 0 and not failed:
                policy.breaker.release()
            await utils.aio.cancel_and_wait(*tasks)
            with contextlib.suppress(Exception):
                await inner.aclose()

    async def _rescue(self, exc: Exception) -> bool:
        """Transcribe the utterance in flight locally, so the caller need not repeat it.

        True when it held words (and they were sent as a final transcript)."""
        frames = list(self._utterance.frames)
        self._utterance.clear()
        if not frames:
            return False
        event = await self._guarded.rescue.recognize(frames)
        if not (event.alternatives and event.alternatives[0].text.strip()):
            return False
        name = self._guarded.policy.name
        metrics.RESCUES.labels(name).inc()
        logger.warning(
            "%s missed an utterance (%s); transcribed locally",
            name,
            exc,
            extra={"utterance_seconds": round(sum(f.duration for f in frames), 2)},
        )
        self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH))
        self._event_ch.send_nowait(event)
        self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH))
        return True
