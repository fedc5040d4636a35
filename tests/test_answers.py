"""Answer audio cache: answers pre-rendered at prewarm, played from the cache with no synthesis."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import Agent, ModelSettings

from agent import metrics
from agent.accounts import AccountRegistry
from agent.call.assistant import Assistant
from agent.engines.answers import AnswerAudio, answer_texts, prepare_answers
from agent.engines.greetings import GreetingCache, GreetingKey
from agent.engines.local_tts import LocalTTS


def _count(result: str) -> float:
    return metrics.ANSWER_CACHE.labels(result)._value.get()


async def _text(*chunks: str) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk


async def _pcm(frames: AsyncIterable[rtc.AudioFrame]) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) async for f in frames])


def test_every_answer_is_rendered_at_prewarm_and_reloaded_from_disk(
    tmp_path: Path, registry: AccountRegistry, hibari: LocalTTS
) -> None:
    cache = GreetingCache(tmp_path)
    texts = {t for a in registry.accounts.values() for t in answer_texts(a)}
    made = prepare_answers(cache, lambda _voice: hibari, registry)
    assert made == len(texts) > 5
    assert all(cache.cached(GreetingKey.for_voice(hibari, t)) is not None for t in texts)
    # A restarted worker loads them from disk and renders nothing.
    assert prepare_answers(GreetingCache(tmp_path), lambda _voice: hibari, registry) == 0


async def test_matched_answer_plays_from_cache_without_synthesis(
    tmp_path: Path, registry: AccountRegistry, hibari: LocalTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = next(iter(registry.accounts.values()))
    cache = GreetingCache(tmp_path)
    prepare_answers(cache, lambda _voice: hibari, registry)
    answer = account.faqs[0].answer
    expected = cache.cached(GreetingKey.for_voice(hibari, answer))
    assert expected is not None

    def no_synthesis(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a cached answer must not be synthesised")

    monkeypatch.setattr(hibari, "render", no_synthesis)
    monkeypatch.setattr(Agent.default, "tts_node", no_synthesis)
    agent = Assistant(account, answer_audio=AnswerAudio(cache, hibari))
    hits = _count("hit")
    audio = await _pcm(agent.tts_node(_text(answer), ModelSettings()))
    assert np.array_equal(audio, expected)
    assert _count("hit") == hits + 1


async def test_changed_answer_text_is_a_miss_and_is_synthesised(
    tmp_path: Path, registry: AccountRegistry, hibari: LocalTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = next(iter(registry.accounts.values()))
    cache = GreetingCache(tmp_path)
    prepare_answers(cache, lambda _voice: hibari, registry)
    changed = account.faqs[0].answer + " Prices changed this week."
    spoken: list[str] = []

    async def synthesise(
        _agent: Agent, text: AsyncIterable[str], _settings: ModelSettings
    ) -> AsyncIterator[rtc.AudioFrame]:
        spoken.append("".join([chunk async for chunk in text]))
        yield rtc.AudioFrame(b"\x01\x00" * 240, 24000, 1, 240)

    monkeypatch.setattr(Agent.default, "tts_node", synthesise)
    agent = Assistant(account, answer_audio=AnswerAudio(cache, hibari))
    misses = _count("miss")
    audio = await _pcm(agent.tts_node(_text(changed[:10], changed[10:]), ModelSettings()))
    assert audio.size == 240 and spoken == [changed]  # the whole text reached the TTS
    assert _count("miss") == misses + 1
