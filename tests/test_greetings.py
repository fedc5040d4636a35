"""The greeting audio cache: hits, restarts, changed text, empty cache, damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from livekit import rtc

from agent.engines.greetings import (
    GreetingCache,
    GreetingKey,
    LeadingSilenceTrimmer,
    trim_leading_silence,
)
from agent.engines.local_tts import LocalTTS
from agent.engines.whisper_stt import WhisperSTT
from tests.helpers import similarity

GREETING = "Thank you for calling. How can I help?"


def _wavs(directory: Path) -> list[Path]:
    return list(directory.glob("*.wav"))


async def _play(cache: GreetingCache, voice: LocalTTS, text: str) -> tuple[bool, np.ndarray]:
    hit, frames = await cache.stream(voice, text)
    audio = [np.frombuffer(f.data, dtype=np.int16) async for f in frames]
    return hit, np.concatenate(audio)


async def test_empty_cache_still_greets_then_serves_from_memory_and_disk(
    tmp_path: Path, hibari: LocalTTS
) -> None:
    cache = GreetingCache(tmp_path)
    hit, first = await _play(cache, hibari, GREETING)
    assert not hit and first.size > hibari.sample_rate  # synthesised while streaming
    assert len(_wavs(tmp_path)) == 1  # and stored once complete

    hit, second = await _play(cache, hibari, GREETING)
    assert hit and np.array_equal(first, second)

    # A new process (a restarted worker) finds it on disk without synthesising.
    restarted = GreetingCache(tmp_path)
    key = GreetingKey.for_voice(hibari, GREETING)
    assert restarted.cached(key) is None
    hit, third = await _play(restarted, hibari, GREETING)
    assert hit and np.array_equal(first, third)


async def test_cached_greeting_is_the_spoken_text(
    tmp_path: Path, hibari: LocalTTS, whisper: WhisperSTT
) -> None:
    cache = GreetingCache(tmp_path)
    cache.prepare(hibari, GREETING)
    _, audio = await _play(cache, hibari, GREETING)
    frame = rtc.AudioFrame(audio.tobytes(), hibari.sample_rate, 1, audio.size)
    event = await whisper.recognize([frame])
    assert similarity(event.alternatives[0].text, GREETING) > 0.85


async def test_changed_greeting_text_is_not_served_stale(tmp_path: Path, hibari: LocalTTS) -> None:
    cache = GreetingCache(tmp_path)
    assert cache.prepare(hibari, GREETING) is True
    assert cache.prepare(hibari, GREETING) is False
    hit, _ = await _play(cache, hibari, GREETING + " We are open today.")
    assert not hit
    assert len(_wavs(tmp_path)) == 2


def test_key_separates_voices_and_rates() -> None:
    keys = {
        GreetingKey("hibari", "heart", GREETING, 24000).digest(),
        GreetingKey("piper", "joe", GREETING, 24000).digest(),
        GreetingKey("hibari", "heart", GREETING, 16000).digest(),
        GreetingKey("hibari", "heart", GREETING + ".", 24000).digest(),
    }
    assert len(keys) == 4


async def test_damaged_cache_file_is_replaced_not_played(
    tmp_path: Path, hibari: LocalTTS, caplog: pytest.LogCaptureFixture
) -> None:
    cache = GreetingCache(tmp_path)
    cache.prepare(hibari, GREETING)
    (path,) = _wavs(tmp_path)
    path.write_bytes(b"RIFF not really")
    fresh = GreetingCache(tmp_path)
    hit, audio = await _play(fresh, hibari, GREETING)
    assert not hit and audio.size > hibari.sample_rate
    assert "unusable" in caplog.text and str(path) in caplog.text


def test_leading_silence_is_trimmed_to_a_short_lead_in() -> None:
    rate = 24000
    audio = np.concatenate([np.zeros(rate // 5, np.int16), np.full(rate, 5000, np.int16)])
    trimmed = trim_leading_silence(audio, rate)
    assert trimmed.size == rate + rate // 100


def test_a_stream_is_trimmed_as_the_whole_would_be() -> None:
    # A cloud voice's sentence arrives in chunks; its quiet start is dropped as it streams.
    rate = 16000
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(rate // 4) * 50).astype(np.int16)  # 0.25 s near-silence
    audio = np.concatenate([quiet, np.full(rate // 2, 5000, np.int16), quiet])
    trimmer = LeadingSilenceTrimmer(rate)
    played = [trimmer.feed(audio[i : i + 1600]) for i in range(0, audio.size, 1600)]
    assert [p.size for p in played[:2]] == [0, 0]  # nothing plays while it is all quiet
    assert np.array_equal(np.concatenate(played), trim_leading_silence(audio, rate))
    assert trimmer.started


def test_a_stream_that_never_gets_loud_keeps_a_little_to_play() -> None:
    trimmer = LeadingSilenceTrimmer(16000)
    assert trimmer.feed(np.zeros(3200, np.int16)).size == 0
    assert not trimmer.started and trimmer.rest().size == 160
