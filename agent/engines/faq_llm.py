"""An `llm.LLM` that answers only from the account's FAQs, by semantic retrieval.

It never generates text: it speaks the stored answer of the FAQ that best matches the
caller's last utterance, or, when none is close enough, the account's handoff phrase.
So it cannot invent a fact, which a small generative model does readily.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit.agents import APIConnectOptions, llm, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from ..accounts.models import FAQ, Account
from . import small_talk
from .embedder import Embedder

logger = logging.getLogger("firstword.faq")

# Below this many words an unmatched utterance is a "hello?", not a question to hand off.
_MIN_WORDS = 2
REPEAT_PHRASE = "Sorry, could you say that again?"
_WORD_BONUS = 0.08
_MAX_BONUS_WORDS = 2.0
_STOP = frozenset(
    "the and you your are can for how much what when where which who does with have has get any"
    " this that our there about from will would could should please tell want like need".split()
)


@dataclass(frozen=True)
class Match:
    faq: FAQ | None
    score: float
    phrasing: str


class FaqIndex:
    """The embedded phrasings and answers of one account's FAQs, plus their content words.

    Score of an FAQ = best cosine similarity between the question and any of its phrasings
    or its answer, plus a small bonus for distinctive words the question shares with the FAQ
    ("my tire is flat" reaches the tune-up FAQ, whose answer prices a flat tire, where the
    sentence embedding alone falls short). Words common to many FAQs of the account ("bike"
    in a bike shop) earn no bonus.
    """

    def __init__(
        self,
        embedder: Embedder,
        faqs: list[FAQ],
        *,
        match_answers: bool = True,
        word_bonus: float = _WORD_BONUS,
    ) -> None:
        self._embedder = embedder
        self._faqs = list(faqs)
        self._word_bonus = word_bonus
        owners: list[int] = []
        texts: list[str] = []
        for i, faq in enumerate(self._faqs):
            for text in (*faq.questions, faq.answer) if match_answers else faq.questions:
                owners.append(i)
                texts.append(text)
        self._owners = np.array(owners)
        self._texts = texts
        self._vectors = embedder.embed(texts)
        self._words = [
            set().union(*(_content_words(t) for t in (*f.questions, f.answer))) for f in self._faqs
        ]
        n = len(self._faqs)
        df: dict[str, int] = {}
        for words in self._words:
            for w in words:
                df[w] = df.get(w, 0) + 1
        # IDF scaled to [0, 1]: 1 for a word of one FAQ only, 0 for a word of every FAQ.
        self._idf = {w: (math.log(n / c) / math.log(n) if n > 1 else 1.0) for w, c in df.items()}

    def best(self, question: str) -> Match:
        """The best-scoring FAQ for `question`. Blocking (a few ms)."""
        similarities = self._vectors @ self._embedder.embed([question])[0]
        asked = _content_words(question)
        best = Match(None, -1.0, "")
        for i, faq in enumerate(self._faqs):
            mine = np.flatnonzero(self._owners == i)
            j = int(mine[np.argmax(similarities[mine])])
            shared = sum(self._idf[w] for w in asked & self._words[i])
            score = float(similarities[j]) + self._word_bonus * min(shared, _MAX_BONUS_WORDS)
            if score > best.score:
                best = Match(faq, score, self._texts[j])
        return best


_RECENT_MATCHES = 8


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class FaqLLM(llm.LLM):
    """Retrieval answerer for one account."""

    def __init__(self, account: Account, index: FaqIndex, *, min_score: float) -> None:
        super().__init__()
        self._account = account
        self._index = index
        self._min_score = min_score
        # Told every match (question, match) on the event loop; the early end of turn
        # listens (agent/call/turn_taking.py).
        self.on_match: Callable[[str, Match | None], None] | None = None
        # The last few matches (see `match`); lru_cache is thread-safe, and both the turn-taking
        # and the answer call `match` from worker threads.
        # (Closed over the index, not `self`: no reference cycle keeps a call's FaqLLM alive.)
        self._best = functools.lru_cache(maxsize=_RECENT_MATCHES)(lambda q: index.best(q))

    @property
    def account(self) -> Account:
        return self._account

    @property
    def model(self) -> str:
        return "faq-retrieval-minilm"

    @property
    def provider(self) -> str:
        return "firstword"

    def match(self, question: str) -> Match | None:
        """The best FAQ for `question` (None for no words). Blocking (an embedding).

        The last few matches are kept: the turn-taking matches a transcript the moment it
        is final (to decide the turn early) and the answer asks again for the same words.
        """
        question = _normalise(question)
        return self._best(question) if question else None

    def answer(self, question: str) -> tuple[str, Match | None]:
        """The text to speak for `question`, and the match it came from. Blocking."""
        question = _normalise(question)
        match = self.match(question)
        if match is not None and match.faq is not None and match.score >= self._min_score:
            return match.faq.answer, match
        # Not a question: "hold on", "thanks, bye", "hello?" (engines/small_talk.py).
        moved = small_talk.reply(question, self._account.business_name)
        if moved is not None:
            return moved, match
        if len(question.split()) < _MIN_WORDS:
            # "Hello?", "um": nothing was asked yet, so there is nothing to hand off.
            return REPEAT_PHRASE, match
        return self._account.handoff_phrase, match

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _FaqStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _FaqStream(llm.LLMStream):
    def __init__(self, faq_llm: FaqLLM, **kwargs: Any) -> None:
        super().__init__(faq_llm, **kwargs)
        self._faq_llm = faq_llm

    async def _run(self) -> None:
        question = ""
        for item in reversed(self._chat_ctx.items):
            if item.type == "message" and item.role == "user":
                question = item.text_content or ""
                break
        text, match = await asyncio.to_thread(self._faq_llm.answer, question)
        # Not the question: a caller's words reach the logs only with
        # FIRSTWORD_LOG_TRANSCRIPTS (agent/call/call_log.py), and never for an account that
        # keeps no record of its calls.
        logger.info(
            "faq answer",
            extra={
                "faq": match.faq.id if match and match.faq else None,
                "score": round(match.score, 3) if match else None,
                "handoff": text == self._faq_llm.account.handoff_phrase,
            },
        )
        if self._faq_llm.on_match is not None:
            self._faq_llm.on_match(question, match)
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=utils.shortuuid(),
                delta=llm.ChoiceDelta(role="assistant", content=text),
            )
        )
