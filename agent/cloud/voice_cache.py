"""Cloud voices' audio, cached by (engine, voice, text, sample rate) like the local voices'.

A cloud voice (ElevenLabs, Google TTS) is asked one sentence at a time (the session splits
replies into sentences for a non-streaming TTS). `CachedTTS` sits in front of the guarded
cloud voice: a sentence spoken before in that voice plays from the cache and no request is
sent; otherwise the cloud voice speaks it as before and, once it has spoken the WHOLE
sentence itself (no rescue, no lost hedge; nothing partial), what it streamed is kept.
Repeated texts are what this pays for: the handoff phrase, the answers a model gives again
and again, and every answer replayed by the response cache (`response_cache.py`).

Where the audio is kept: memory (`FIRSTWORD_CLOUD_VOICE_CACHE_MB`, least recently used
first out), WAV files under `<cache dir>/voices` (the greetings' format, `agent.engines.greetings`),
and Redis when configured (`agent.shared_cache`: blobs up to
`FIRSTWORD_SHARED_AUDIO_MAX_KB`, kept `FIRSTWORD_SHARED_AUDIO_TTL` seconds), so every
worker reuses what one rendered. Lookups: memory (no wait), disk (a thread), Redis (bounded
by its timeout, skipped while it is down); writes happen after the sentence, in the
background. The greeting is not here: it is played from the local voice's cache before
anything else, and nothing of this module runs in front of the first word.

The key's engine is the provider's endpoint (`elevenlabs@api.elevenlabs.io`), so audio from
a stand-in is never played as the real provider's; the voice includes the model and
language, which change the sound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from livekit.agents import APIConnectOptions, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from .. import metrics
from ..engines.greetings import (
    GreetingCache,
    GreetingKey,
    LeadingSilenceTrimmer,
    trim_leading_silence,
)
from ..shared_cache import PREFIX, SharedCache

logger = logging.getLogger("firstword.voice_cache")


class CloudVoiceCache:
    """Cloud voices' sentences: memory + disk (per worker) and Redis (every worker)."""

    def __init__(
        self, store: GreetingCache, shared: SharedCache, *, ttl_seconds: float, max_bytes: int
    ) -> None:
        self.store = store
        self._shared = shared
        self._ttl = ttl_seconds
        self._max_bytes = max_bytes

    @staticmethod
    def redis_key(key: GreetingKey) -> str:
        return f"{PREFIX}:voice:{key.digest()}"

    async def find(self, key: GreetingKey) -> np.ndarray | None:
        audio = self.store.cached(key)
        if audio is not None:
            return audio
        audio = await asyncio.to_thread(self.store.load, key)
        if audio is not None or not self._shared.available:
            return audio
        raw = await self._shared.run("read audio", lambda r: r.get(self.redis_key(key)))
        if not isinstance(raw, bytes) or not raw or len(raw) % 2:
            return None
        audio = np.frombuffer(raw, dtype=np.int16)
        # Kept here too, so the next call of this worker does not ask Redis again.
        await asyncio.to_thread(self.store.store, key, audio)
        return audio

    async def keep(self, key: GreetingKey, audio: np.ndarray) -> None:
        """Memory and disk now (a thread); Redis in the background."""
        await asyncio.to_thread(self.store.store, key, audio)
        if audio.nbytes > self._max_bytes:
            return
        blob, name, ttl = audio.tobytes(), self.redis_key(key), max(1, int(self._ttl))
        self._shared.write_soon("store audio", lambda r: r.set(name, blob, ex=ttl))


class CachedTTS(tts.TTS):
    """A (guarded) cloud voice behind the audio cache; `voice` names it in the key."""

    def __init__(self, inner: tts.TTS, cache: CloudVoiceCache, *, engine: str, voice: str) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=inner.sample_rate,
            num_channels=1,
        )
        self.inner = inner
        self.cache = cache
        self.engine = engine
        self.voice = voice

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def key(self, text: str) -> GreetingKey:
        return GreetingKey(self.engine, self.voice, text.strip(), self.sample_rate)

    def prewarm(self) -> None:
        self.inner.prewarm()

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _CachedSentence(tts=self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CachedSentence(tts.ChunkedStream):
    def __init__(self, *, tts: CachedTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._cached = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        cached = self._cached
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=cached.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        key = cached.key(self.input_text)
        audio = await cached.cache.find(key) if key.text else None
        metrics.CLOUD_VOICE_CACHE.labels("hit" if audio is not None else "miss").inc()
        if audio is not None:
            # Audio kept before trimming was added starts with the voice's quiet lead-in.
            output_emitter.push(trim_leading_silence(audio, cached.sample_rate).tobytes())
            output_emitter.flush()
            return
        # Cloud voices start a sentence with up to a few hundred ms of near-silence; the
        # caller hears the answer that much later, so it is dropped as it streams (the
        # local voices' stored audio is trimmed the same way, `agent.engines.greetings`).
        trimmer = LeadingSilenceTrimmer(cached.sample_rate)
        parts: list[bytes] = []
        stream: Any
        async with cached.inner.synthesize(
            self.input_text, conn_options=self._conn_options
        ) as stream:
            async for synthesized in stream:
                played = trimmer.feed(np.frombuffer(synthesized.frame.data, dtype=np.int16))
                if played.size:
                    data = played.tobytes()
                    parts.append(data)
                    output_emitter.push(data)
        if not trimmer.started and trimmer.rest().size:
            # All quiet: a sentence with no audio is an error to the framework.
            parts.append(trimmer.rest().tobytes())
            output_emitter.push(parts[-1])
        output_emitter.flush()
        # Only what the cloud voice said whole, itself (see the module doc).
        if key.text and parts and getattr(stream, "served_by_cloud", False):
            await cached.cache.keep(key, np.frombuffer(b"".join(parts), dtype=np.int16))
