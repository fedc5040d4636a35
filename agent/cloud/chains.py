"""A call's STT, LLM and TTS: its account's cloud engines first, the local engines last.

Each link is a livekit `FallbackAdapter`, so a provider that fails mid-call hands the next
request to the next provider. Each cloud provider sits behind its guard (breaker shared by
the process, operation timeouts, local rescue of the utterance or sentence in flight).

Connections are per call: aiohttp sessions and gRPC channels belong to one event loop, and
each call runs on its own (a job thread or process). They are opened while the call starts
and the greeting plays, off the path of the first word, and opened again when they sat idle
longer than `FIRSTWORD_REWARM_IDLE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from livekit.agents import llm, stt, tts

from ..accounts import Account
from ..accounts.models import CloudTTS
from ..settings import Settings
from . import hedge, plugins
from .breaker import breaker_for
from .caches import CloudCaches
from .choice import endpoint_name, usable_providers
from .guarded_llm import GuardedLLM
from .guarded_stt import GuardedSTT
from .guarded_tts import GuardedTTS
from .policy import Policy
from .response_cache import CachedLLM
from .voice_cache import CachedTTS

logger = logging.getLogger("firstword.cloud")


@dataclass
class CallChains:
    stt: stt.STT
    llm: llm.LLM
    tts: tts.TTS
    cloud: list[Any] = field(default_factory=list)  # the guarded providers, for warm-up
    session: aiohttp.ClientSession | None = None
    _warm_task: asyncio.Task[None] | None = None

    @property
    def names(self) -> list[str]:
        return [p.policy.name for p in self.cloud]

    def start_warming(self, idle_seconds: float) -> None:
        """Open the cloud connections now, and again whenever they sat idle."""
        if self.cloud and self._warm_task is None:
            self._warm_task = asyncio.create_task(self._keep_warm(idle_seconds))

    async def _keep_warm(self, idle_seconds: float) -> None:
        while True:
            for provider in self.cloud:
                try:
                    if isinstance(provider, GuardedLLM):
                        await provider.ready()  # its client, built in a thread the first time
                    provider.prewarm()
                except Exception as exc:  # a cold connection is slower, not broken
                    logger.warning("warming %s failed: %s", provider.policy.name, exc)
            await asyncio.sleep(idle_seconds)

    async def aclose(self) -> None:
        if self._warm_task is not None:
            self._warm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm_task
        for provider in (self.stt, self.llm, self.tts, *self.cloud):
            with contextlib.suppress(Exception):
                await provider.aclose()
        if self.session is not None:
            await self.session.close()


def _voice_id(choice: CloudTTS) -> str:
    """What sets a cloud voice's sound: the voice, and the model (ElevenLabs) and language."""
    model = choice.model if choice.engine == "elevenlabs" else ""
    return "/".join(part for part in (choice.voice, model, choice.language) if part)


def _policy(name: str, settings: Settings, first_timeout: float) -> Policy:
    return Policy(
        breaker=breaker_for(
            name, failures=settings.breaker_failures, cooldown=settings.breaker_cooldown
        ),
        first_timeout=first_timeout,
        total_timeout=settings.cloud_total_timeout,
        retries=settings.cloud_retries,
    )


def build_chains(
    account: Account,
    settings: Settings,
    *,
    local_stt: stt.STT,
    local_llm: llm.LLM,
    local_tts: tts.TTS,
    vad: Any,
    caches: CloudCaches | None = None,
    on_response_cache: Callable[[str], None] | None = None,
) -> CallChains:
    """The call's providers; the local ones alone when the account asks for no cloud.

    With `caches`, the cloud model sits behind the response cache and each cloud voice
    behind the audio cache (the local engines need neither); `on_response_cache` hears
    "hit" or "miss" for each cacheable question."""
    choices = usable_providers(account, settings)
    if not (choices.stt or choices.llm or choices.tts):
        return CallChains(stt=local_stt, llm=local_llm, tts=local_tts)

    session: aiohttp.ClientSession | None = None
    cloud: list[Any] = []

    stts: list[stt.STT] = []
    for stt_choice in choices.stt:
        stt_name = endpoint_name("google-stt", settings)
        guarded_stt = GuardedSTT(
            plugins.google_stt(stt_choice, settings),
            _policy(stt_name, settings, settings.stt_timeout),
            rescue=local_stt,
            hedge_after=settings.hedge_after_stt,
        )
        stts.append(guarded_stt)
        cloud.append(guarded_stt)
        hedge.start_series(stt_name)

    llms: list[llm.LLM] = []
    for llm_choice in choices.llm:
        guarded_llm = GuardedLLM(
            functools.partial(plugins.gemini_llm, llm_choice, settings),
            _policy(endpoint_name("gemini", settings), settings, settings.llm_first_token_timeout),
            model=llm_choice.model,
            provider=plugins.GEMINI_PROVIDER,
            local=local_llm,
            hedge_after=settings.hedge_after_llm,
        )
        llms.append(
            CachedLLM(guarded_llm, caches.responses, account, on_result=on_response_cache)
            # Not for an account that keeps nothing of its calls: the cache stores questions.
            if caches is not None and caches.responses is not None and account.recording
            else guarded_llm
        )
        cloud.append(guarded_llm)
        hedge.start_series(endpoint_name("gemini", settings))

    ttss: list[tts.TTS] = []
    for tts_choice in choices.tts:
        if tts_choice.engine == "elevenlabs":
            if session is None:
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit_per_host=4, keepalive_timeout=60),
                    timeout=aiohttp.ClientTimeout(
                        total=settings.cloud_total_timeout, sock_connect=settings.connect_timeout
                    ),
                )
            inner: tts.TTS = plugins.elevenlabs_tts(tts_choice, settings, session)
            name = endpoint_name("elevenlabs", settings)
        else:
            inner = plugins.google_tts(tts_choice, settings)
            name = endpoint_name("google-tts", settings)
        guarded_tts = GuardedTTS(
            inner,
            _policy(name, settings, settings.tts_first_byte_timeout),
            rescue=local_tts,
            hedge_after=settings.hedge_after_tts,
        )
        ttss.append(
            CachedTTS(guarded_tts, caches.voices, engine=name, voice=_voice_id(tts_choice))
            if caches is not None and caches.voices is not None
            else guarded_tts
        )
        cloud.append(guarded_tts)
        hedge.start_series(name)

    return CallChains(
        stt=stt.FallbackAdapter([*stts, local_stt], vad=vad, max_retry_per_stt=0)
        if stts
        else local_stt,
        llm=llm.FallbackAdapter(
            [*llms, local_llm],
            attempt_timeout=settings.cloud_total_timeout,
            max_retry_per_llm=0,
            # A model that stops mid-answer: the FAQ answerer still says something.
            retry_on_chunk_sent=True,
        )
        if llms
        else local_llm,
        tts=tts.FallbackAdapter([*ttss, local_tts], max_retry_per_tts=0) if ttss else local_tts,
        cloud=cloud,
        session=session,
    )
