"""A streaming `stt.STT` around a cloud recogniser: breaker, hedge, timeout, rescue.

A streaming recogniser that hangs says nothing, and silence is also what it says while the
caller listens; so the wrapper watches the audio itself (a cheap energy gate, not a second
VAD model): when the caller has spoken and then paused, a final transcript must arrive
within the STT timeout. If it does not, or the stream fails, the utterance in flight is
transcribed by the local recogniser (the `rescue`, from the audio kept since the last
final transcript), so the caller's question is not lost; then the error is raised and the
fallback adapter sends the rest of the call to the next recogniser.

Hedging (`hedge_after`, well under the timeout): when the cloud's final transcript is that
late after the pause, the kept audio of the utterance is transcribed locally at once, and
whichever transcript is ready first is the utterance's one final transcript: a cloud final
arriving first cancels the local one; a local one arriving first is sent, and the cloud's
late final for that utterance is dropped when it comes (the cloud must still deliver it
within the timeout, or the stream fails over as above). Whisper runs only on a late
utterance, never while the cloud keeps time, so a healthy cloud costs nothing extra.
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
# How often the watchdog looks at the clock: a hedge starts at most this late.
_WATCH_SECONDS = 0.02


class GuardedSTT(stt.STT):
    def __init__(
        self, inner: stt.STT, policy: Policy, *, rescue: stt.STT, hedge_after: float = 0.0
    ) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True, interim_results=inner.capabilities.interim_results
            )
        )
        self.inner = inner
        self.policy = policy
        self.rescue = rescue
        # The local recogniser races a final later than this after the pause; 0: never.
        self.hedge_after = hedge_after if 0 < hedge_after < policy.first_timeout else 0.0
        # A stream of this call failed, and no cloud final came since: the next streams
        # are the fallback adapter's recovery probes (the caller hears the next recogniser
        # meanwhile), so they neither hedge nor rescue: that would run Whisper a second
        # time on each utterance, and a local transcript would pass for a recovered cloud.
        self.probing = False

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
        # The local recogniser was started on this utterance (it is hedged once).
        self.hedged = False

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

    def drop_first(self, count: int, now: float) -> None:
        """Forget the first `count` frames (transcribed); what came after starts afresh."""
        rest = self.frames[count:]
        self.clear()
        for frame in rest:
            self.add(frame, now)


class _GuardedStream(stt.RecognizeStream):
    def __init__(
        self, guarded: GuardedSTT, *, language: NotGivenOr[str], conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=guarded, conn_options=conn_options)
        self._guarded = guarded
        self._language = language
        self._utterance = _Utterance()

    async def _run(self) -> None:
        guarded = self._guarded
        policy = guarded.policy
        policy.admit()
        probing = guarded.probing
        hedge_after = 0.0 if probing else guarded.hedge_after
        inner = guarded.inner.stream(
            language=self._language,
            conn_options=APIConnectOptions(
                max_retry=0, timeout=policy.total_timeout, retry_interval=0
            ),
        )
        utterance = self._utterance
        finals = 0
        # The local transcription racing the cloud on a late utterance, while it runs.
        local: asyncio.Task[None] | None = None
        # When each utterance answered locally became due; the cloud's final for it is
        # still to come (and is dropped when it does: the caller's words were sent once).
        owed: list[float] = []

        def cloud_answered() -> None:
            nonlocal finals
            finals += 1
            guarded.probing = False
            if finals == 1:
                policy.breaker.record_success()

        async def forward() -> None:
            async for data in self._input_ch:
                if isinstance(data, rtc.AudioFrame):
                    utterance.add(data, time.monotonic())
                    inner.push_frame(data)
                else:
                    inner.flush()
            inner.end_input()

        async def relay() -> None:
            nonlocal local
            async for event in inner:
                final = event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
                if owed and event.type != stt.SpeechEventType.RECOGNITION_USAGE:
                    # The cloud's late take on an utterance already answered locally
                    # (Google sends an utterance's events in order, its final last).
                    if final:
                        owed.pop(0)
                        cloud_answered()
                    continue
                if final and utterance.hedged:
                    if local is not None:  # the cloud won the race: the local one is dropped
                        local.cancel()
                        local = None
                    metrics.HEDGES.labels(policy.name, "cloud").inc()
                self._event_ch.send_nowait(event)
                if final:
                    cloud_answered()
                    utterance.clear()

        async def hedge(frames: list[rtc.AudioFrame], due: float) -> None:
            nonlocal local
            event = await self._local_final(frames)
            # Not cancelled by a cloud final (relay runs on this loop): local won.
            local = None
            utterance.drop_first(len(frames), time.monotonic())
            if event is None:
                return  # noise to Whisper; the cloud, if it heard words, is still relayed
            metrics.HEDGES.labels(policy.name, "local").inc()
            owed.append(due)
            logger.info(
                "%s was late; the local transcript was used (%.2f s after the pause)",
                policy.name,
                time.monotonic() - due,
                extra={"provider": policy.name, "hedge_winner": "local"},
            )
            self._send_local(event)

        async def watchdog() -> None:
            nonlocal local
            while True:
                await asyncio.sleep(_WATCH_SECONDS)
                now = time.monotonic()
                if owed and now - owed[0] > policy.first_timeout:
                    # Heard locally already: the cloud failed that utterance.
                    raise APITimeoutError(
                        f"{policy.name}: no transcript {policy.first_timeout:.2f} s "
                        "after the caller paused (answered from the local transcript)",
                        retryable=False,
                    )
                due = utterance.due_since()
                if due is None or local is not None:
                    continue  # the local transcription in flight stands in for a rescue
                if hedge_after and not utterance.hedged and now - due > hedge_after:
                    utterance.hedged = True
                    local = asyncio.create_task(hedge(list(utterance.frames), due))
                    continue
                if now - due <= policy.first_timeout or utterance.hedged:
                    continue
                timeout = APITimeoutError(
                    f"{policy.name}: no transcript {policy.first_timeout:.2f} s "
                    "after the caller paused",
                    retryable=False,
                )
                # A cough or line noise also trips the energy gate, and the recogniser
                # rightly says nothing: only words it missed make it a failure. A probe
                # has no rescue to tell them apart, and fails.
                if probing or await self._rescue(timeout):
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
            guarded.probing = True
            policy.breaker.record_failure(failure_kind(exc))
            if local is not None:  # its transcript is the rescue of what it holds
                await asyncio.wait({local})
            if not probing:
                await self._rescue(exc)
            raise as_api_error(exc, policy.name) from exc
        finally:
            if finals == 0 and not failed:
                policy.breaker.release()
            await utils.aio.cancel_and_wait(*tasks, *([local] if local is not None else []))
            with contextlib.suppress(Exception):
                await inner.aclose()

    async def _local_final(self, frames: list[rtc.AudioFrame]) -> stt.SpeechEvent | None:
        """The local recogniser's final transcript of `frames`, or None if it held no words."""
        if not frames:
            return None
        event = await self._guarded.rescue.recognize(frames)
        if not (event.alternatives and event.alternatives[0].text.strip()):
            return None
        return event

    def _send_local(self, event: stt.SpeechEvent) -> None:
        self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH))
        self._event_ch.send_nowait(event)
        self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH))

    async def _rescue(self, exc: Exception) -> bool:
        """Transcribe the utterance in flight locally, so the caller need not repeat it.

        True when it held words (and they were sent as a final transcript)."""
        frames = list(self._utterance.frames)
        self._utterance.clear()
        event = await self._local_final(frames)
        if event is None:
            return False
        name = self._guarded.policy.name
        metrics.RESCUES.labels(name).inc()
        logger.warning(
            "%s missed an utterance (%s); transcribed locally",
            name,
            exc,
            extra={"utterance_seconds": round(sum(f.duration for f in frames), 2)},
        )
        self._send_local(event)
        return True
