"""Greeting audio rendered ahead of time, so a call's first word needs no synthesis.

Audio is keyed by (engine, voice, text, sample rate): a changed greeting or voice is a new
key, never a stale hit. It is kept in memory and as WAV files on disk, so a restarted worker
does not synthesise again. A greeting that is not cached yet is synthesised sentence by
sentence while it plays, and cached once complete.

Leading silence is cut from cached audio: the TTS voices start with up to ~0.1 s of it,
which the caller would otherwise wait through before the first word.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from livekit import rtc

from .audio import float_to_int16_bytes
from .local_tts import LocalTTS

logger = logging.getLogger("firstword.greetings")

# Bump when the stored audio changes shape (trimming, format), so old files are not reused.
_FORMAT = 1
_LEADING_SILENCE = 300  # int16 amplitude, about -40 dBFS
_LEAD_IN_S = 0.01
_FRAME_S = 0.02
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class GreetingKey:
    engine: str
    voice: str
    text: str
    sample_rate: int

    @classmethod
    def for_voice(cls, voice: LocalTTS, text: str) -> GreetingKey:
        return cls(voice.engine, voice.voice, text, voice.sample_rate)

    def digest(self) -> str:
        fields = [_FORMAT, self.engine, self.voice, self.sample_rate, self.text]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:32]


def _first_loud(audio: np.ndarray) -> int | None:
    """Index of the first int16 sample above the silence threshold, or None."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > _LEADING_SILENCE)
    return int(loud[0]) if loud.size else None


def trim_leading_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop int16 samples before the first loud one, keeping a short lead-in."""
    first = _first_loud(audio)
    if first is None:
        return audio
    return audio[max(0, first - int(sample_rate * _LEAD_IN_S)) :]


class LeadingSilenceTrimmer:
    """`trim_leading_silence` for audio that arrives in chunks (a cloud voice's stream):
    chunks are held until the first loud sample, then passed on from the lead-in before it."""

    def __init__(self, sample_rate: int) -> None:
        self._lead_in = int(sample_rate * _LEAD_IN_S)
        self._held = np.zeros(0, dtype=np.int16)
        self.started = False

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        """What to play of `chunk` (int16): nothing while it is all quiet."""
        if self.started:
            return chunk
        # Only the lead-in's worth of quiet is kept in front of what comes next.
        held = np.concatenate([self._held, chunk])
        first = _first_loud(held)
        if first is None:
            self._held = held[-self._lead_in :] if self._lead_in else held[:0]
            return held[:0]
        self.started = True
        self._held = held[:0]
        return held[max(0, first - self._lead_in) :]

    def rest(self) -> np.ndarray:
        """The quiet held back, for a stream that never got loud (so it still plays something)."""
        return self._held


def to_frames(audio: np.ndarray, sample_rate: int) -> Iterator[rtc.AudioFrame]:
    """20 ms frames of int16 mono audio (the last may be shorter), made as they are taken:
    a call's first frame does not wait for the rest of the greeting to be cut."""
    step = int(sample_rate * _FRAME_S)
    for i in range(0, len(audio), step):
        chunk = audio[i : i + step]
        yield rtc.AudioFrame(chunk.tobytes(), sample_rate, 1, len(chunk))


async def each(frames: Iterable[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    """Frames made ahead, as the audio a session's `say` takes (a tone, a ring)."""
    for frame in frames:
        yield frame


class GreetingCache:
    """In-memory and on-disk greeting audio, shared by every call of a process.

    `max_memory_bytes` bounds what stays in memory (least recently used goes first; the
    disk keeps it): the cloud voices' cache (`agent.cloud.voice_cache`) holds whatever a
    cloud model said, so it needs a bound; the greetings and FAQ answers do not.
    """

    def __init__(self, directory: Path | None, *, max_memory_bytes: int | None = None) -> None:
        self._directory = directory
        self._memory: OrderedDict[GreetingKey, np.ndarray] = OrderedDict()
        self._max_memory_bytes = max_memory_bytes
        self._memory_bytes = 0
        # Calls may run as threads of one process, each with its own event loop.
        self._lock = threading.Lock()

    def cached(self, key: GreetingKey) -> np.ndarray | None:
        """The audio if it is in memory (never touches the disk: safe on the event loop)."""
        with self._lock:
            audio = self._memory.get(key)
            if audio is not None:
                self._memory.move_to_end(key)
            return audio

    def _remember(self, key: GreetingKey, audio: np.ndarray) -> None:
        with self._lock:
            old = self._memory.pop(key, None)
            self._memory_bytes += audio.nbytes - (old.nbytes if old is not None else 0)
            self._memory[key] = audio
            limit = self._max_memory_bytes
            while limit is not None and self._memory_bytes > limit and len(self._memory) > 1:
                _, dropped = self._memory.popitem(last=False)
                self._memory_bytes -= dropped.nbytes

    def load(self, key: GreetingKey) -> np.ndarray | None:
        """From memory, else from disk (blocking). A damaged file is removed and missed."""
        audio = self.cached(key)
        if audio is not None or self._directory is None:
            return audio
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with wave.open(str(path), "rb") as wav:
                if wav.getframerate() != key.sample_rate or wav.getnchannels() != 1:
                    raise ValueError(f"{wav.getframerate()} Hz, expected {key.sample_rate}")
                audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        except (OSError, EOFError, ValueError, wave.Error) as exc:
            logger.warning("greeting cache file %s is unusable (%s); synthesising again", path, exc)
            path.unlink(missing_ok=True)
            return None
        self._remember(key, audio)
        return audio

    def store(self, key: GreetingKey, audio: np.ndarray) -> None:
        """Keep the audio in memory and write it to disk (blocking)."""
        self._remember(key, audio)
        if self._directory is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader in another process never sees half a file.
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            with wave.open(str(tmp), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(key.sample_rate)
                wav.writeframes(audio.tobytes())
            tmp.replace(path)
        except OSError as exc:
            logger.warning("cannot write greeting cache file %s: %s", path, exc)

    def prepare(self, voice: LocalTTS, text: str) -> bool:
        """Make sure the greeting is cached (blocking); True if it had to be synthesised."""
        key = GreetingKey.for_voice(voice, text)
        if self.load(key) is not None:
            return False
        audio = _render(voice, text)
        self.store(key, trim_leading_silence(audio, voice.sample_rate))
        return True

    async def stream(
        self, voice: LocalTTS, text: str
    ) -> tuple[bool, AsyncIterator[rtc.AudioFrame]]:
        """(hit, frames): cached audio, or sentence-by-sentence synthesis that fills the cache."""
        key = GreetingKey.for_voice(voice, text)
        audio = self.cached(key)
        if audio is None and self._directory is not None:
            audio = await asyncio.to_thread(self.load, key)
        if audio is not None:
            return True, _iterate(to_frames(audio, key.sample_rate))
        return False, self._synthesise(voice, key)

    async def _synthesise(self, voice: LocalTTS, key: GreetingKey) -> AsyncIterator[rtc.AudioFrame]:
        parts: list[np.ndarray] = []
        for sentence in _SENTENCE_END.split(key.text.strip()):
            audio = await asyncio.to_thread(_render, voice, sentence)
            if not parts:
                audio = trim_leading_silence(audio, key.sample_rate)
            parts.append(audio)
            for frame in to_frames(audio, key.sample_rate):
                yield frame
        # Reached only when the whole greeting was rendered (a caller who hangs up
        # mid-greeting cancels the generator before this point).
        full = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        await asyncio.to_thread(self.store, key, full)

    def _path(self, key: GreetingKey) -> Path:
        assert self._directory is not None
        # Cloud voice names and endpoints ("elevenlabs@host:port") may hold any character.
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key.engine}-{key.voice}")[:80]
        return self._directory / f"{name}-{key.digest()}.wav"


def _render(voice: LocalTTS, text: str) -> np.ndarray:
    return np.frombuffer(float_to_int16_bytes(voice.render(text)), dtype=np.int16)


async def _iterate(frames: Iterator[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for frame in frames:
        yield frame
