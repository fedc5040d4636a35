"""Time to resample a 3 s utterance to Whisper's 16 kHz, before and after.

Before: linear interpolation (numpy). After: `agent.engines.audio.resample`, soxr through
`livekit.rtc.AudioResampler` (anti-aliased). Run: `.venv/bin/python -m benchmarks.resample`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from agent.engines.audio import resample

WHISPER_RATE = 16000
SECONDS = 3
RUNS = 200


def linear(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """The resampling Whisper's input had before (no anti-aliasing filter)."""
    n_out = round(samples.size * dst_rate / src_rate)
    positions = np.linspace(0, samples.size - 1, n_out)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


def _times_ms(
    fn: Callable[[np.ndarray, int, int], np.ndarray], x: np.ndarray, rate: int
) -> list[float]:
    fn(x, rate, WHISPER_RATE)  # warm-up
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn(x, rate, WHISPER_RATE)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)


def main() -> None:
    rng = np.random.default_rng(0)
    for rate in (24000, 48000):
        x = (rng.standard_normal(SECONDS * rate) * 0.1).astype(np.float32)
        p50s = {}
        for name, fn in (("linear (before)", linear), ("rtc.AudioResampler (after)", resample)):
            t = _times_ms(fn, x, rate)
            p50s[name] = t[len(t) // 2]
            print(
                f"{rate} -> {WHISPER_RATE} Hz, {SECONDS} s, {name:27s} "
                f"p50 {t[len(t) // 2]:.2f} ms  p90 {t[int(0.9 * len(t))]:.2f}  "
                f"p99 {t[int(0.99 * len(t))]:.2f}"
            )
        ratio = p50s["rtc.AudioResampler (after)"] / p50s["linear (before)"]
        print(f"  after / before (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
