"""A semantic cache of the cloud model's answers, so a repeated question skips Gemini.

Question → answer, per account. The question is normalised (lower case, no punctuation)
and embedded with the MiniLM embedder the FAQ answerer already loaded (~5 ms, in a thread).
A cached answer is used when its question is close enough (cosine ≥
`FIRSTWORD_RESPONSE_CACHE_SIMILARITY`, 0.92 by default) AND one question's content words
contain the other's. The second test is needed because MiniLM scores "are you open on
weekends" and "are you open on sundays" 0.91, as close as true paraphrases ("how much is a
teeth cleaning" / "how much does a teeth cleaning cost", 0.97): a wrong answer costs more
than a miss.

Entries live `FIRSTWORD_RESPONSE_CACHE_TTL` seconds and belong to one version of the
account: a hash of its whole YAML content (facts, instructions, handoff phrase...) and the
model, so any edit of the account makes every earlier answer unreachable at once (they
expire from Redis with their TTL).

What is never cached (neither looked up nor stored), and why:
- a turn whose last item is not the caller's words (a tool's result, after a handoff):
  that reply depends on the tool, not on a question;
- a reply in which the model called a tool (the handoff): the tool must run every time;
- a reply the cloud model did not give whole (the local answerer won a hedge, or the
  model failed and the FAQ answerer spoke): that one is not Gemini's answer;
- caller-specific questions: any digit (phone numbers, dates, times, amounts, booking
  references), an e-mail address, "my name", "this is ..." (a caller introducing
  themself): the answer may repeat what is personal to that caller;
- questions that lean on the conversation: fewer than three words ("and on saturday?") or
  a word that points back (it, that, those, them, same, else, ...): the same words mean
  something else in another call;
- an answer holding a number that is not in the account's own text: such a number did
  not come from the business's facts (a guess, or something the caller said);
- an answer given with anything of the caller's in the conversation but the question
  itself (an earlier turn: a name, a number, "from now on tell everyone ..."): the model
  read it, so the reply may carry it. Only the answer to a caller's first words is stored;
  a later question can still be answered from what was stored (issue 20: otherwise one
  caller could put words in another caller's answer).
What remains is a self-contained question about the business, answered from its facts
without a tool: the same question gets the same answer from any caller.

With Redis (`agent.shared_cache`), entries are shared by every worker: a hash per account
version, one field per question; a memory miss reads it (bounded by the Redis timeout).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit.agents import APIConnectOptions, llm, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from .. import metrics
from ..accounts import Account
from ..shared_cache import PREFIX, SharedCache

logger = logging.getLogger("firstword.response_cache")

Embed = Callable[[list[str]], np.ndarray]
# Most entries kept per account in memory (oldest go first).
MAX_ENTRIES = 512
_MIN_WORDS = 3
_PERSONAL = re.compile(r"\d|@|\bmy name\b|\bthis is\b", re.IGNORECASE)
_POINTING_BACK = frozenset(
    "it its that those these them they he she him her same else another other one ones".split()
)
_STOP = frozenset(
    "the and you your are can for how much what when where which who does with have has get any"
    " this that our there about from will would could should please tell want like need is do"
    " a an of to in on at i me we us um uh hi hello hey so just also be".split()
)


def normalise(question: str) -> str:
    """Lower case, letters, digits and apostrophes only, single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]+", " ", question.lower())).strip()


def content_words(normalised: str) -> frozenset[str]:
    return frozenset(w for w in normalised.split() if len(w) > 2 and w not in _STOP)


def why_not_cacheable(question: str) -> str | None:
    """None when the question may be cached, else the reason (see the module doc)."""
    if _PERSONAL.search(question):
        return "caller-specific"
    words = normalise(question).split()
    if len(words) < _MIN_WORDS:
        return "too short"
    if any(w in _POINTING_BACK for w in words):
        return "refers back"
    return None


def answer_is_safe(answer: str, account: Account) -> bool:
    """Every number in the answer appears in the account's own text."""
    numbers = re.findall(r"\d+", answer)
    if not numbers:
        return True
    text = account.model_dump_json()
    return all(n in text for n in numbers)


def account_version(account: Account, model: str) -> str:
    """A hash of the account's whole content and the model: any change is a new version."""
    content = json.dumps([account.model_dump(mode="json"), model], sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    question: str  # normalised
    answer: str
    created: float  # unix seconds (shared between workers through Redis)
    vector: np.ndarray

    def to_json(self) -> bytes:
        vector = base64.b64encode(self.vector.astype(np.float32).tobytes()).decode()
        data = {"q": self.question, "a": self.answer, "t": self.created, "v": vector}
        return json.dumps(data).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Entry:
        data = json.loads(raw)
        vector = np.frombuffer(base64.b64decode(data["v"]), dtype=np.float32)
        return cls(str(data["q"]), str(data["a"]), float(data["t"]), vector)


class ResponseCache:
    """Answers by account version, in memory (per process) and in Redis (every worker)."""

    def __init__(
        self,
        embed: Embed,
        shared: SharedCache,
        *,
        ttl_seconds: float,
        similarity: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._embed = embed
        self._shared = shared
        self._ttl = ttl_seconds
        self._similarity = similarity
        self._clock = clock
        self._lock = threading.Lock()
        # account id -> (version, entries); a new version replaces the old one's entries.
        self._memory: dict[str, tuple[str, list[Entry]]] = {}

    @staticmethod
    def redis_key(account_id: str, version: str) -> str:
        return f"{PREFIX}:response:{account_id}:{version}"

    def _fresh(self, entry: Entry) -> bool:
        return self._clock() - entry.created < self._ttl

    def _entries(self, account_id: str, version: str) -> list[Entry]:
        with self._lock:
            held = self._memory.get(account_id)
            if held is None or held[0] != version:
                return []
            fresh = [e for e in held[1] if self._fresh(e)]
            self._memory[account_id] = (version, fresh)
            return fresh

    def _add(self, account_id: str, version: str, entries: list[Entry]) -> None:
        with self._lock:
            held = self._memory.get(account_id)
            current = held[1] if held is not None and held[0] == version else []
            known = {e.question for e in current}
            current = current + [e for e in entries if e.question not in known]
            self._memory[account_id] = (version, current[-MAX_ENTRIES:])

    def _best(self, entries: list[Entry], question: str, vector: np.ndarray) -> Entry | None:
        if not entries:
            return None
        scores = np.stack([e.vector for e in entries]) @ vector
        asked = content_words(question)
        for i in np.argsort(-scores):
            if scores[i] < self._similarity:
                break
            known = content_words(entries[i].question)
            if asked <= known or known <= asked:
                return entries[i]
        return None

    async def lookup(
        self, account_id: str, version: str, question: str
    ) -> tuple[str | None, np.ndarray]:
        """(cached answer or None, the question's vector). `question` is normalised."""
        vector = (await asyncio.to_thread(self._embed, [question]))[0]
        hit = self._best(self._entries(account_id, version), question, vector)
        if hit is None and self._shared.available:
            raw = await self._shared.run(
                "read answers", lambda r: r.hgetall(self.redis_key(account_id, version))
            )
            if raw:
                # Decoding a few hundred entries takes milliseconds: not on the event loop.
                shared = await asyncio.to_thread(self._decode, raw.values(), vector.shape)
                self._add(account_id, version, shared)
                hit = self._best(shared, question, vector)
        return (hit.answer if hit is not None else None), vector

    def _decode(self, values: Iterable[bytes | str], shape: tuple[int, ...]) -> list[Entry]:
        entries = []
        for value in values:
            try:
                entry = Entry.from_json(value)
            except (ValueError, KeyError, TypeError):
                continue  # written by another version of firstword: ignored
            if self._fresh(entry) and entry.vector.shape == shape:
                entries.append(entry)
        return entries

    def store(
        self, account_id: str, version: str, question: str, vector: np.ndarray, answer: str
    ) -> None:
        """Keep the answer in memory now, and in Redis in the background (on the event loop)."""
        entry = Entry(question, answer, self._clock(), vector)
        self._add(account_id, version, [entry])
        if not self._shared.available:
            return
        key = self.redis_key(account_id, version)
        field = hashlib.sha256(question.encode()).hexdigest()[:20]
        ttl = max(1, int(self._ttl))

        async def write(r: Any) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hset(key, field, entry.to_json())
                pipe.expire(key, ttl)
                await pipe.execute()

        self._shared.write_soon("store an answer", write)


def _last_question(chat_ctx: llm.ChatContext) -> str | None:
    """The caller's words, if they are the conversation's last item; else None."""
    for item in reversed(chat_ctx.items):
        if item.type == "message" and item.role in ("system", "developer"):
            continue
        if item.type == "message" and item.role == "user":
            return item.text_content or ""
        return None  # the assistant's words or a tool's result come last
    return None


def _only_caller_words_are_the_question(chat_ctx: llm.ChatContext) -> bool:
    """True when the caller said nothing in this conversation but its last question.

    Everything else in the context is the account's (instructions, greeting, the agent's
    own lines): a reply to it depends on the question and the business only. An earlier
    turn of the caller's (a name, a number, "from now on say ...") or a tool's result can
    shape the reply, so such a reply is never stored for other callers."""
    said = 0
    for item in chat_ctx.items:
        if item.type in ("function_call", "function_call_output"):
            return False
        if item.type == "message" and item.role == "user":
            said += 1
    return said == 1


class CachedLLM(llm.LLM):
    """The cloud model behind the response cache: a hit answers without calling it."""

    def __init__(
        self,
        inner: llm.LLM,
        cache: ResponseCache,
        account: Account,
        *,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.cache = cache
        self.account = account
        self.version = account_version(account, f"{inner.provider}/{inner.model}")
        # Told "hit" or "miss" for each cacheable turn (the call's turn log line).
        self.on_result = on_result

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def prewarm(self, *, loop: Any = None) -> None:
        self.inner.prewarm()

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
        return _CachedStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            tool_choice=tool_choice,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CachedStream(llm.LLMStream):
    def __init__(
        self, cached: CachedLLM, *, tool_choice: NotGivenOr[llm.ToolChoice], **kwargs: Any
    ) -> None:
        super().__init__(cached, **kwargs)
        self._cached = cached
        self._tool_choice = tool_choice

    def _result(self, result: str) -> None:
        metrics.RESPONSE_CACHE.labels(result).inc()
        if self._cached.on_result is not None:
            self._cached.on_result(result)

    async def _run(self) -> None:
        cached = self._cached
        asked = _last_question(self._chat_ctx)
        reason = "not a question" if asked is None else why_not_cacheable(asked)
        question = normalise(asked or "")
        vector: np.ndarray | None = None
        if reason is None:
            answer, vector = await cached.cache.lookup(cached.account.id, cached.version, question)
            if answer is not None:
                self._result("hit")
                logger.info(
                    "response cache hit", extra={"account": cached.account.id, "question": asked}
                )
                self._event_ch.send_nowait(
                    llm.ChatChunk(
                        id=utils.shortuuid(),
                        delta=llm.ChoiceDelta(role="assistant", content=answer),
                    )
                )
                return
            self._result("miss")
        else:
            logger.debug("response cache skipped: %s", reason, extra={"account": cached.account.id})

        text: list[str] = []
        tool_called = False
        async with cached.inner.chat(
            chat_ctx=self._chat_ctx,
            tools=self._tools,
            tool_choice=self._tool_choice,
            conn_options=self._conn_options,
        ) as stream:
            async for chunk in stream:
                if chunk.delta is not None:
                    text.append(chunk.delta.content or "")
                    tool_called = tool_called or bool(chunk.delta.tool_calls)
                self._event_ch.send_nowait(chunk)
        answer = "".join(text).strip()
        # `served_by_cloud`: the guard's word that the cloud model gave this reply whole.
        if (
            vector is not None
            and answer
            and not tool_called
            and getattr(stream, "served_by_cloud", False)
            and answer_is_safe(answer, cached.account)
            and _only_caller_words_are_the_question(self._chat_ctx)
        ):
            cached.cache.store(cached.account.id, cached.version, question, vector, answer)
