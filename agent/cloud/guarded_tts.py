"""A sentence-at-a-time `tts.TTS` around a cloud voice: breaker, first-byte timeout, rescue.

The fallback adapter around it fails over only while nothing was heard yet; once a cloud
voice has spoken part of a sentence and drops, livekit's adapter gives up on the rest of
the reply. This wrapper closes that gap: the dropped sentence is spoken again from its
start by the local voice (the `rescue`), so the caller hears every sentence of the
answer. Working a sentence at a time (the session feeds a non-streaming TTS sentence by
sentence) also bounds what a failure can cost to one sentence.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from livekit import rtc
from livekit.agents import APIConnectOptions, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from .. import metrics
from . import hedge
from .policy import Policy, as_api_error, failure_kind, first_item

logger = logging.getLogger("firstword.cloud")


class GuardedTTS(tts.TTS):
    def __init__(
        self, inner: tts.TTS, policy: Policy, *, rescue: tts.TTS, hedge_after: float = 0.0
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=inner.sample_rate,
            num_channels=1,
        )
        self.inner = inner
        self.policy = policy
        self.rescue = rescue
        # Seconds without a first byte before the local voice races the cloud; 0: never.
        self.hedge_after = hedge_after

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def prewarm(self) -> None:
        self.inner.prewarm()

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _GuardedSentence(tts=self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def _frames(
    voice: tts.TTS, text: str, limit: float
) -> AsyncIterator[AsyncIterator[rtc.AudioFrame]]:
    """The frames of `text` from `voice`: over its streaming connection when it has one
    (ElevenLabs' WebSocket stays open between sentences), else one request."""
    options = APIConnectOptions(max_retry=0, timeout=limit, retry_interval=0)
    stream: tts.SynthesizeStream | tts.ChunkedStream
    if voice.capabilities.streaming:
        stream = voice.stream(conn_options=options)
        stream.push_text(text)
        stream.end_input()
    else:
        stream = voice.synthesize(text, conn_options=options)

    async def frames() -> AsyncIterator[rtc.AudioFrame]:
        async for audio in stream:
            yield audio.frame

    try:
        yield frames()
    finally:
        await stream.aclose()


class _GuardedSentence(tts.ChunkedStream):
    def __init__(self, *, tts: GuardedTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._guarded = tts
        # True once the cloud voice spoke the whole sentence (no hedge lost, no rescue):
        # only such audio is cached as that voice's (agent/cloud/voice_cache.py).
        self.served_by_cloud = False

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        guarded = self._guarded
        policy = guarded.policy
        policy.admit()
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=guarded.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        for attempt in range(policy.retries + 1):
            heard = False
            try:
                async with _frames(guarded.inner, self.input_text, policy.total_timeout) as frames:
                    cloud_first = first_item(frames, policy.first_timeout, policy.name)
                    if 0 < guarded.hedge_after < policy.first_timeout and attempt == 0:
                        local = self._local_frames()
                        winner, first = await hedge.race(
                            cloud_first, functools.partial(anext, local), after=guarded.hedge_after,
                            name=policy.name,
                        )  # fmt: skip
                        if winner == "local":
                            # The cloud was late: it counts against its breaker, and the
                            # local voice says the whole sentence (the cloud's is dropped).
                            policy.breaker.record_failure("timeout")
                            output_emitter.push(first.data.tobytes())
                            async for frame in local:
                                output_emitter.push(frame.data.tobytes())
                            output_emitter.flush()
                            return
                        await local.aclose()
                        frame = first
                    else:
                        frame = await cloud_first
                    output_emitter.push(frame.data.tobytes())
                    heard = True
                    async with asyncio.timeout(policy.total_timeout):
                        async for frame in frames:
                            output_emitter.push(frame.data.tobytes())
                policy.breaker.record_success()
                self.served_by_cloud = True
                output_emitter.flush()
                return
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    policy.breaker.release()
                    raise
                policy.breaker.record_failure("dropped" if heard else failure_kind(exc))
                if heard:
                    await self._rescue(exc, output_emitter)
                    return
                if attempt == policy.retries or not policy.breaker.allow():
                    raise as_api_error(exc, policy.name) from exc
                logger.warning("%s failed (%s), retrying", policy.name, exc)

    async def _local_frames(self) -> AsyncGenerator[rtc.AudioFrame]:
        """The sentence in the local voice, at the cloud voice's sample rate."""
        guarded = self._guarded
        resampler = (
            rtc.AudioResampler(
                input_rate=guarded.rescue.sample_rate, output_rate=guarded.sample_rate
            )
            if guarded.rescue.sample_rate != guarded.sample_rate
            else None
        )
        async with guarded.rescue.synthesize(self.input_text) as stream:
            async for audio in stream:
                for frame in resampler.push(audio.frame) if resampler else [audio.frame]:
                    yield frame
        for frame in resampler.flush() if resampler else []:
            yield frame

    async def _rescue(self, exc: Exception, output_emitter: tts.AudioEmitter) -> None:
        """Say the whole sentence again in the local voice, so none of it is lost."""
        guarded = self._guarded
        metrics.RESCUES.labels(guarded.policy.name).inc()
        logger.warning(
            "%s dropped mid-sentence (%s); the local voice says the sentence again",
            guarded.policy.name,
            exc,
        )
        resampler = (
            rtc.AudioResampler(
                input_rate=guarded.rescue.sample_rate, output_rate=guarded.sample_rate
            )
            if guarded.rescue.sample_rate != guarded.sample_rate
            else None
        )
        async for audio in guarded.rescue.synthesize(self.input_text):
            frames = resampler.push(audio.frame) if resampler else [audio.frame]
            for frame in frames:
                output_emitter.push(frame.data.tobytes())
        for frame in resampler.flush() if resampler else []:
            output_emitter.push(frame.data.tobytes())
        output_emitter.flush()
