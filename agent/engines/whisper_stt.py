"""Speech to text with faster-whisper (Whisper tiny.en, int8) on this machine.

Whisper is not a streaming recogniser: the session feeds it one utterance at a time,
cut by the VAD (livekit-agents wraps non-streaming STT in a `StreamAdapter`).
Inference runs in a worker thread so the event loop keeps moving audio.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from .audio import frame_to_float, resample
from .weights import WHISPER_TINY_EN, verified_path

WHISPER_RATE = 16000


def load_whisper(model_dir: Path | None, *, threads: int, verify: bool) -> WhisperModel:
    """Load the model (blocking: call from prewarm or a thread)."""
    if model_dir is None:
        for weight in WHISPER_TINY_EN.values():
            path = verified_path(weight, verify=verify)
        model_dir = path.parent
    # No warm-up transcription: measured here, the first one takes 0.48 s and the second
    # 0.45 s (the encoder always runs on a 30 s window), so warming would only lengthen
    # prewarm.
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)


class WhisperSTT(stt.STT):
    """A livekit-agents STT provider around a loaded `WhisperModel`."""

    def __init__(
        self, model: WhisperModel, *, language: str = "en", lock: threading.Lock | None = None
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._model = model
        self.language = language
        # CTranslate2 runs one request per replica; serialise so concurrent calls queue
        # instead of oversubscribing two cores. Leases share the lock of their model.
        self._lock = lock or threading.Lock()

    def lease(self) -> WhisperSTT:
        """A provider object for one call over the same model (see `LocalTTS.lease`)."""
        return WhisperSTT(self._model, language=self.language, lock=self._lock)

    @property
    def model(self) -> str:
        return "whisper-tiny.en-int8"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    def transcribe_pcm(self, samples: np.ndarray, sample_rate: int, language: str) -> str:
        """Blocking transcription of mono float32 audio."""
        audio = resample(samples, sample_rate, WHISPER_RATE)
        with self._lock:
            segments, _info = self._model.transcribe(
                audio,
                language=language,
                beam_size=1,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            return " ".join(s.text.strip() for s in segments).strip()

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        lang = language if isinstance(language, str) else self.language
        text = await asyncio.to_thread(
            self.transcribe_pcm, frame_to_float(frame), frame.sample_rate, lang
        )
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=LanguageCode(lang), text=text, confidence=1.0)],
        )
