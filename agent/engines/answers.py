"""Answer audio rendered ahead of time, so a matched FAQ answer starts with no synthesis.

The FAQ answerer speaks fixed texts: each FAQ's stored answer, the account's handoff phrase
and the "say that again" phrase. They are rendered in the account's voice at prewarm and
kept in the greetings' audio cache (`agent.engines.greetings`: memory + disk, keyed by engine,
voice, text and sample rate), so a changed answer is a new key, never a stale hit.

`Assistant.tts_node` asks `AnswerAudio.frames` for the whole reply text; on a miss (a text
that is not a stored answer, or one not rendered yet) it synthesises as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from livekit import rtc

from ..accounts import Account, AccountRegistry
from ..accounts.models import Voice
from . import small_talk
from .faq_llm import REPEAT_PHRASE
from .greetings import GreetingCache, GreetingKey, to_frames
from .local_tts import LocalTTS


def answer_texts(account: Account) -> list[str]:
    """Every text the FAQ answerer can speak for `account`, each once, in a stable order."""
    texts = [faq.answer for faq in account.faqs] + [account.handoff_phrase, REPEAT_PHRASE]
    texts += [
        small_talk.HOLD_REPLY,
        small_talk.PRESENCE_REPLY,
        small_talk.closing_reply(account.business_name),
    ]
    return list(dict.fromkeys(texts))


def prepare_answers(
    cache: GreetingCache,
    voice_for: Callable[[Voice], LocalTTS],
    registry: AccountRegistry,
    more: Callable[[Account], list[str]] | None = None,
) -> int:
    """Render (or load from disk) every known account's answers (blocking); the count rendered.
    `more`: other fixed lines of an account the call says (the voice-message lines)."""
    made = 0
    for account in registry.accounts.values():
        voice = voice_for(account.voice)
        for text in answer_texts(account) + (more(account) if more is not None else []):
            made += cache.prepare(voice, text)
    return made


class AnswerAudio:
    """The pre-rendered answers of one call's voice."""

    def __init__(self, cache: GreetingCache, voice: LocalTTS) -> None:
        self._cache = cache
        self._voice = voice

    def frames(self, text: str) -> Iterator[rtc.AudioFrame] | None:
        """The cached audio of exactly `text`, or None. Memory only: safe on the event loop."""
        audio = self._cache.cached(GreetingKey.for_voice(self._voice, text.strip()))
        if audio is None:
            return None
        return to_frames(audio, self._voice.sample_rate)
