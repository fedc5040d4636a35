"""Small PCM helpers shared by the engines and the caller simulator."""

from __future__ import annotations

import numpy as np
from livekit import rtc


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample mono float32 audio with an anti-aliasing filter (soxr, in livekit.rtc).

    Whisper hears 16 kHz; speech arrives at 24 or 48 kHz, and dropping samples by linear
    interpolation folds everything above 8 kHz back into the band Whisper listens to. One
    utterance at a time: a fresh resampler, pushed once and flushed (about a millisecond
    for 3 s of speech, see the README)."""
    if src_rate == dst_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    resampler = rtc.AudioResampler(src_rate, dst_rate, quality=rtc.AudioResamplerQuality.MEDIUM)
    pcm = bytearray(float_to_int16_bytes(samples))
    frames = [*resampler.push(pcm), *resampler.flush()]
    if not frames:
        return np.zeros(0, dtype=np.float32)
    out = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
    return out.astype(np.float32) / 32768.0


def frame_to_float(frame: rtc.AudioFrame) -> np.ndarray:
    """Mono float32 in [-1, 1] from an int16 frame (channels are averaged)."""
    pcm = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
    if frame.num_channels > 1:
        pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1)
    return pcm


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def float_to_int16_bytes(samples: np.ndarray) -> bytes:
    return float_to_int16(samples).tobytes()


def tone(
    rate: int, hz: tuple[float, ...], seconds: float, *, amplitude: float, fade_s: float
) -> np.ndarray:
    """A sum of sines (a beep, a ringback) faded in and out, float samples at `rate`."""
    t = np.arange(int(rate * seconds)) / rate
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / fade_s)
    return amplitude * sum(np.sin(2 * np.pi * f * t) for f in hz) * envelope


def rms_dbfs(samples: np.ndarray) -> float:
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-6))
