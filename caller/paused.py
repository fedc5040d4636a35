"""Questions with a pause in the middle ("I'd like to know ... how much a cleaning costs").

A person who pauses mid-question keeps the rising, unfinished intonation of a sentence
that goes on; a first half synthesised on its own ends like a finished sentence, which is
not what a turn detector hears from a real caller. So the whole sentence is synthesised in
one go and the silence is put in at the gap between its two halves: the quietest 20 ms near
the point the first half's share of the text suggests.
"""

from __future__ import annotations

import numpy as np

from agent.engines.local_tts import LocalTTS


def split_point(audio: np.ndarray, rate: int, first: str, rest: str) -> int:
    """The sample where `first` ends inside `audio` (the whole sentence)."""
    frame = rate // 50
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    start, end = (int(loud[0]), int(loud[-1])) if loud.size else (0, audio.size)
    share = len(first) / (len(first) + 1 + len(rest))
    guess = start + int(share * (end - start))
    window = int(0.25 * rate)
    lo, hi = max(start, guess - window), min(end, guess + window)
    energies = [
        (float(np.sqrt(np.mean(audio[i : i + frame] ** 2))), i + frame // 2)
        for i in range(lo, max(lo + 1, hi - frame), frame // 2)
    ]
    return min(energies)[1] if energies else guess


def paused_question(voice: LocalTTS, first: str, rest: str, pause_s: float) -> np.ndarray:
    """`first rest` said in one go with `pause_s` of silence between the two (blocking)."""
    audio = voice.render(f"{first} {rest}")
    cut = split_point(audio, voice.sample_rate, first, rest)
    silence = np.zeros(int(pause_s * voice.sample_rate), dtype=np.float32)
    return np.concatenate([audio[:cut], silence, audio[cut:]])
