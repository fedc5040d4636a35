"""The caller's microphone: a real-time audio track that carries speech or silence.

Like a real microphone it never stops sending: the agent's VAD needs the silence after a
question to see that the caller has finished. That silence is digital zeros unless a noise
floor is asked for: a real line always has one, and LiveKit's turn detector (v1-mini) reads the
same question as far less finished when the silence after it is zeros (benchmarks/RESULTS.md
"The turn-taking bench").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np
from livekit import rtc

from agent.engines.audio import float_to_int16_bytes, resample

RATE = 48000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000


# Seconds of noise the silence cycles through (distinct enough that no pattern is heard).
_NOISE_S = 2.0


class Microphone:
    def __init__(self, noise_dbfs: float | None = None) -> None:
        # A short queue: what we capture goes on the wire within a frame or two, so the
        # time we stop capturing speech is the time the caller stops talking.
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
        self._pending: deque[np.ndarray] = deque()
        self._spoken = asyncio.Event()
        self.last_speech_end = 0.0
        self._task: asyncio.Task[None] | None = None
        # The silence between utterances: zeros, or white noise at `noise_dbfs` RMS.
        self._silence: list[np.ndarray] = [np.zeros(FRAME_SAMPLES, dtype=np.float32)]
        if noise_dbfs is not None:
            noise = np.random.default_rng(0).standard_normal(round(_NOISE_S * RATE))
            noise = (noise * 10 ** (noise_dbfs / 20)).astype(np.float32)
            self._silence = [
                noise[i : i + FRAME_SAMPLES] for i in range(0, noise.size, FRAME_SAMPLES)
            ]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="caller-mic")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.source.aclose()

    async def say(self, samples: np.ndarray, sample_rate: int) -> float:
        """Speak `samples` in real time; returns the monotonic time the speech ended."""
        audio = resample(samples, sample_rate, RATE)
        pad = (-audio.size) % FRAME_SAMPLES
        audio = np.concatenate([audio, np.zeros(pad, dtype=np.float32)])
        self._spoken.clear()
        for i in range(0, audio.size, FRAME_SAMPLES):
            self._pending.append(audio[i : i + FRAME_SAMPLES])
        await self._spoken.wait()
        return self.last_speech_end

    async def _run(self) -> None:
        next_at = time.perf_counter()
        quiet = 0
        while True:
            speaking = bool(self._pending)
            if speaking:
                chunk = self._pending.popleft()
            else:
                chunk = self._silence[quiet % len(self._silence)]
                quiet += 1
            frame = rtc.AudioFrame(float_to_int16_bytes(chunk), RATE, 1, FRAME_SAMPLES)
            await self.source.capture_frame(frame)
            if speaking and not self._pending:
                self.last_speech_end = time.perf_counter()
                self._spoken.set()
            # Pace on a fixed clock so that drift does not accumulate.
            next_at += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
