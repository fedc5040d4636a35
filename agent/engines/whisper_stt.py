"""Speech to text with faster-whisper (Whisper tiny.en, int8) on this machine.

Whisper is not a streaming recogniser: the session feeds it one utterance at a time,
cut by the VAD (livekit-agents wraps non-streaming STT in a `StreamAdapter`).
Inference runs in a worker thread so the event loop keeps moving audio.

Two paths (`FIRSTWORD_WHISPER_MODE`):
  - `short` (default): the utterance's log-Mel features are padded to a short window
    (`SHORT_WINDOW_S`, or the utterance plus a margin when longer) and handed straight to
    CTranslate2's Whisper encoder, then decoded greedily without timestamps. faster-whisper
    itself pads every segment to 30 s, and the encoder is ~80 % of tiny.en's time; a 10 s
    window makes a 2-5 s question ~4x faster. Below ~6 s of window the decoder loops
    (repeated text), so the window never goes under `MIN_WINDOW_S`, the tokens are bounded by
    the utterance's length, and a transcript that hits the bound or repeats itself is
    redone on the full 30 s window (logged and counted in `fallbacks`).
  - `full`: faster-whisper's own `transcribe` on the 30 s window, as before.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from .audio import frame_to_float, resample
from .weights import WHISPER_TINY_EN, verified_path

logger = logging.getLogger("firstword.whisper")

WHISPER_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's log-Mel hop is 10 ms
FULL_WINDOW_S = 30.0
# Measured on tiny.en: padded to 8-10 s, 2-5 s questions are transcribed as well as on 30 s;
# under ~6 s the decoder starts repeating itself. 10 s keeps a margin over that threshold.
SHORT_WINDOW_S = 10.0
MIN_WINDOW_S = 6.0
# Silence kept after the speech inside the window, so the last word is not at the edge.
WINDOW_MARGIN_S = 1.0
# Fast speech is ~4 words/s, ~1.3 tokens a word: 8 tokens per second of audio (+ a floor
# for one-word answers) is far above any real utterance and stops a loop early.
TOKENS_PER_SECOND = 8.0
MIN_TOKENS = 12
# Whisper's own loop check: text that compresses this well is repetition, not speech.
MAX_COMPRESSION_RATIO = 2.4

WhisperMode = Literal["short", "full"]


def load_whisper(model_dir: Path | None, *, threads: int, verify: bool) -> WhisperModel:
    """Load the model (blocking: call from prewarm or a thread)."""
    if model_dir is None:
        for weight in WHISPER_TINY_EN.values():
            path = verified_path(weight, verify=verify)
        model_dir = path.parent
    # No warm-up transcription: the short path's first run costs ~0.1 s more than later
    # ones, less than a warm-up would add to prewarm.
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)


@dataclass
class _Shared:
    """What every lease of one model shares: the lock and the fallback count."""

    lock: threading.Lock
    tokenizer: Tokenizer | None = None
    suppress: tuple[int, ...] = ()
    fallbacks: int = 0
    short_runs: int = 0


def _repeats(text: str) -> bool:
    """True when the text loops: Whisper's compression-ratio test, or a word 3-gram x3."""
    if len(text) >= 24 and len(text.encode()) / len(zlib.compress(text.encode())) > (
        MAX_COMPRESSION_RATIO
    ):
        return True
    words = re.findall(r"[\w']+", text.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return any(grams.count(g) >= 3 for g in set(grams))


def _guard(text: str, n_tokens: int, max_tokens: int) -> str | None:
    """Why a short-window transcript cannot be trusted, or None when it can."""
    if n_tokens >= max_tokens:
        return "hit the token bound"
    if _repeats(text):
        return "repeats itself"
    # tiny.en ends every sentence it heard to the end with punctuation; on the short
    # window it sometimes stops before the last word ("...while I"), and then it has none.
    if text and text[-1] not in ".?!":
        return "stops mid-sentence"
    return None


class WhisperSTT(stt.STT):
    """A livekit-agents STT provider around a loaded `WhisperModel`."""

    def __init__(
        self,
        model: WhisperModel,
        *,
        language: str = "en",
        mode: WhisperMode = "short",
        short_window_s: float = SHORT_WINDOW_S,
        lock: threading.Lock | None = None,
        shared: _Shared | None = None,
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._model = model
        self.language = language
        self.mode: WhisperMode = mode
        # Tests force a too-short window to trip the repetition guard; below MIN_WINDOW_S
        # only through this argument, never through settings.
        self.short_window_s = short_window_s
        # CTranslate2 runs one request per replica; serialise so concurrent calls queue
        # instead of oversubscribing two cores. Leases share the lock of their model.
        self._shared = shared or _Shared(lock=lock or threading.Lock())
        self._lock = self._shared.lock

    def lease(self) -> WhisperSTT:
        """A provider object for one call over the same model (see `LocalTTS.lease`)."""
        return WhisperSTT(
            self._model,
            language=self.language,
            mode=self.mode,
            short_window_s=self.short_window_s,
            shared=self._shared,
        )

    @property
    def model(self) -> str:
        return "whisper-tiny.en-int8"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    @property
    def fallbacks(self) -> int:
        """Short-window transcriptions redone on the full window (all leases of the model)."""
        return self._shared.fallbacks

    def transcribe_pcm(
        self,
        samples: np.ndarray,
        sample_rate: int,
        language: str,
        *,
        mode: WhisperMode | None = None,
    ) -> str:
        """Blocking transcription of mono float32 audio."""
        audio = resample(samples, sample_rate, WHISPER_RATE)
        with self._shared.lock:
            if (mode or self.mode) == "short":
                text = self._transcribe_short(audio, language)
                if text is not None:
                    return text
            return self._transcribe_full(audio, language)

    def _transcribe_full(self, audio: np.ndarray, language: str) -> str:
        segments, _info = self._model.transcribe(
            audio,
            language=language,
            beam_size=1,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def _transcribe_short(self, audio: np.ndarray, language: str) -> str | None:
        """The short-window transcript, or None when it must be redone on the full window."""
        duration = audio.size / WHISPER_RATE
        window_s = max(self.short_window_s, duration + WINDOW_MARGIN_S)
        if window_s >= FULL_WINDOW_S:
            return None  # as long as the full window anyway
        shared = self._shared
        if shared.tokenizer is None:
            shared.tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self._model.model.is_multilingual,
                task="transcribe",
                language=language,
            )
            shared.suppress = tuple(get_suppressed_tokens(shared.tokenizer, (-1,)) or ())
        tokenizer = shared.tokenizer
        # Pad the audio, not the features: Whisper was trained on log-Mel spectra of
        # zero-padded audio (silence sits at the spectrum's floor); faster-whisper pads
        # the features with zeros instead, which on a short window made tiny.en end early.
        n_frames = round(window_s * FRAMES_PER_SECOND)
        padded = np.zeros(n_frames * WHISPER_RATE // FRAMES_PER_SECOND, dtype=np.float32)
        padded[: audio.size] = audio
        features = self._model.feature_extractor(padded, padding=0)[:, :n_frames]
        encoded = self._model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
            to_cpu=False,
        )
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        max_new = max(MIN_TOKENS, int(TOKENS_PER_SECOND * duration))
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=len(prompt) + max_new,
            suppress_blank=True,
            suppress_tokens=list(shared.suppress),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        shared.short_runs += 1
        reason = _guard(text, len(result.sequences_ids[0]), max_new)
        if reason:
            shared.fallbacks += 1
            logger.warning(
                "short-window transcript %s; redoing it on the full window",
                reason,
                extra={
                    "window_s": window_s,
                    "audio_s": round(duration, 2),
                    "tokens": len(tokens),
                    "fallbacks": shared.fallbacks,
                },
            )
            return None
        return text

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
