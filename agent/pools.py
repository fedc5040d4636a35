"""The engines one worker process loads once (in prewarm) and shares across its calls.

Shared, stateless across calls: the Silero VAD model, the Whisper model (calls queue on a
lock), the TTS voices (calls queue on a lock), the MiniLM embedder and each account's FAQ
index. Per call: the `AgentSession`, the turn detector, and the `FaqLLM` wrapper (cheap).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from livekit.agents import vad as vad_base
from livekit.plugins import silero

from .accounts import Account, AccountRegistry
from .accounts.models import Voice
from .engines.embedder import Embedder, load_embedder
from .engines.faq_llm import FaqIndex, FaqLLM
from .engines.local_tts import LocalTTS, load_hibari, load_piper
from .engines.whisper_stt import WhisperSTT, load_whisper
from .settings import Settings

logger = logging.getLogger("firstword.pools")
T = TypeVar("T")


@dataclass
class EnginePool:
    settings: Settings
    vad: vad_base.VAD
    stt: WhisperSTT
    voices: dict[tuple[str, str], LocalTTS]
    embedder: Embedder
    faq_indexes: dict[str, FaqIndex] = field(default_factory=dict)

    def tts_for(self, voice: Voice) -> LocalTTS:
        """The account's voice, or the first loaded one (`load_pool` warned about it once)."""
        return self.voices.get((voice.engine, voice.name)) or next(iter(self.voices.values()))

    def llm_for(self, account: Account) -> FaqLLM:
        """A per-call answerer over the account's index (built at prewarm, shared)."""
        return FaqLLM(account, self.faq_indexes[account.id], min_score=self.settings.faq_min_score)


def load_pool(settings: Settings, registry: AccountRegistry) -> EnginePool:
    """Load every engine (blocking; runs in the prewarm of each job process)."""
    timings: dict[str, float] = {}

    def timed(name: str, load: Callable[[], T]) -> T:
        start = time.perf_counter()
        value = load()
        timings[name] = round(time.perf_counter() - start, 3)
        return value

    threads = settings.inference_threads
    verify = settings.verify_weights
    # 0.35 s of silence ends an utterance (default 0.55): the turn detector and the
    # endpointing delay, not the VAD, decide whether the caller has finished their turn.
    vad = timed("vad", lambda: silero.VAD.load(min_silence_duration=0.35))
    stt = WhisperSTT(
        timed(
            "stt", lambda: load_whisper(settings.whisper_model_dir, threads=threads, verify=verify)
        )
    )
    # hibari "heart" is always loaded: it is the voice of last resort.
    voices: dict[tuple[str, str], LocalTTS] = {
        ("hibari", "heart"): timed(
            "tts.hibari", lambda: load_hibari(threads=threads, verify=verify)
        )
    }
    if any(a.voice.engine == "piper" for a in registry.accounts.values()):
        piper = timed(
            "tts.piper",
            lambda: load_piper(settings.piper_voice_path, threads=threads, verify=verify),
        )
        voices[("piper", "joe")] = piper
    embedder = timed(
        "embedder", lambda: load_embedder(settings.embedding_model_path, verify=verify)
    )
    pool = EnginePool(settings=settings, vad=vad, stt=stt, voices=voices, embedder=embedder)
    for account in registry.accounts.values():
        if (account.voice.engine, account.voice.name) not in voices:
            logger.warning(
                "account %r asks for voice %s:%s, which is not available offline; it will use %s",
                account.id,
                account.voice.engine,
                account.voice.name,
                pool.tts_for(account.voice).model,
            )
        pool.faq_indexes[account.id] = FaqIndex(embedder, list(account.faqs))
    logger.info("engines loaded", extra={"load_seconds": timings})
    return pool
