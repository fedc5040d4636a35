"""Records the agent's audio as it arrives and finds where its speech starts and stops."""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc

from agent.engines.audio import float_to_int16_bytes, frame_to_float, rms_dbfs

RATE = 16000
# WebRTC delivers comfort silence between utterances; real speech from our voices is far
# louder than this.
AUDIBLE_DBFS = -45.0

logger = logging.getLogger("firstword.caller")


@dataclass
class Recorder:
    """Agent audio with the monotonic arrival time of each 10 ms frame."""

    chunks: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    audible: list[bool] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def consume(self, track: rtc.Track) -> None:
        try:
            stream = rtc.AudioStream.from_track(track=track, sample_rate=RATE, num_channels=1)
        except Exception as error:
            # The track went away between its subscription and this task (the agent or the
            # caller left at that moment: the soak's early hang-ups); livekit-rtc then fails
            # on the dead handle (an AssertionError). Nothing to record.
            logger.debug("track gone before it could be recorded: %r", error)
            return
        try:
            async for event in stream:
                samples = frame_to_float(event.frame)
                self.chunks.append(samples)
                self.times.append(time.perf_counter())
                self.audible.append(rms_dbfs(samples) > AUDIBLE_DBFS)
                self._changed.set()
        finally:
            await stream.aclose()

    def add(self, samples: np.ndarray, at: float | None = None) -> None:
        """One frame received by other means than a LiveKit track (a SIP phone's RTP)."""
        self.chunks.append(samples)
        self.times.append(time.perf_counter() if at is None else at)
        self.audible.append(rms_dbfs(samples) > AUDIBLE_DBFS)
        self._changed.set()

    async def _wait_frame(self, deadline: float) -> bool:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - time.perf_counter()))
        except TimeoutError:
            return False
        return True

    async def wait_speech_start(self, after: float, within_s: float) -> tuple[int, float] | None:
        """Index and arrival time of the first audible frame that arrived after `after`."""
        deadline = time.perf_counter() + within_s
        i = 0
        while True:
            while i < len(self.times):
                if self.times[i] >= after and self.audible[i]:
                    return i, self.times[i]
                i += 1
            if not await self._wait_frame(deadline):
                return None

    async def wait_speech_end(self, start: int, silence_s: float, within_s: float) -> int:
        """Index one past the last audible frame, once `silence_s` of quiet has followed it."""
        deadline = time.perf_counter() + within_s
        last_audible = start
        while True:
            for i in range(last_audible, len(self.times)):
                if self.audible[i]:
                    last_audible = i
            now = time.perf_counter()
            if now - self.times[last_audible] >= silence_s or now >= deadline:
                return last_audible + 1
            await self._wait_frame(min(deadline, self.times[last_audible] + silence_s + 0.05))

    def audible_between(self, start: float, end: float) -> bool:
        """Whether any audible frame arrived between the monotonic times `start` and `end`."""
        return any(a and start <= t <= end for t, a in zip(self.times, self.audible, strict=True))

    def audio(self, start: int, end: int) -> np.ndarray:
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.chunks[start:end])


def save_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(float_to_int16_bytes(samples))
