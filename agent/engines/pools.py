"""The engines a worker process loads once, and the per-call providers it lends over them.

Shared by every call of the process (loaded once in prewarm; stateless or serialised):
  - Silero's ONNX session (each VAD stream keeps its own state),
  - the Whisper model (one transcription at a time, behind a lock),
  - each TTS voice, keyed by (engine, voice) (one synthesis at a time per voice),
  - the MiniLM embedder and each account's FAQ index (read-only once built),
  - the greeting and answer audio cache (see `agent.engines.greetings`, `agent.engines.answers`),
  - the local turn-detector weights (livekit's process-wide singleton).
Leased one per call, because a session subscribes to its providers' events and concurrent
calls must not hear each other's: the `silero.VAD`, `WhisperSTT`, `LocalTTS` and `FaqLLM`
objects, and the turn detector. They are thin wrappers; making one costs microseconds.

With the thread executor every call of the worker shares one pool (`shared_pool`); with the
process executor each job process loads its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from livekit.agents import inference
from livekit.agents import vad as vad_api
from livekit.plugins import silero

from ..accounts import Account, AccountRegistry
from ..accounts.models import FAQ, Voice
from ..compat import silero_vad_sharing_model
from ..settings import Settings
from .answers import prepare_answers
from .embedder import Embedder, load_embedder
from .faq_llm import FaqIndex, FaqLLM
from .greetings import GreetingCache
from .local_tts import LocalTTS, load_hibari, load_piper
from .shared_vad import SharedVAD
from .whisper_stt import WhisperSTT, load_whisper

logger = logging.getLogger("firstword.pools")
T = TypeVar("T")

# The voice of last resort: always loaded, and the only hibari voice inside its wheel.
FALLBACK_VOICE = ("hibari", "heart")


@dataclass
class CallEngines:
    """What one call's `AgentSession` is built from."""

    vad: vad_api.VAD  # the call's one VAD stream, shared (engines/shared_vad.py)
    stt: WhisperSTT
    llm: FaqLLM
    tts: LocalTTS
    turn_detector: inference.TurnDetector


@dataclass
class EnginePool:
    settings: Settings
    vad: silero.VAD
    stt: WhisperSTT
    voices: dict[tuple[str, str], LocalTTS]
    embedder: Embedder
    greetings: GreetingCache
    _faq: dict[str, tuple[tuple[FAQ, ...], FaqIndex]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def voice_for(self, voice: Voice) -> LocalTTS:
        """The shared voice of an account, or the fallback (`load_pool` warned about it)."""
        return self.voices.get((voice.engine, voice.name)) or self.voices[FALLBACK_VOICE]

    def _cached_index(self, account: Account) -> FaqIndex | None:
        with self._lock:
            cached = self._faq.get(account.id)
        return cached[1] if cached is not None and cached[0] == tuple(account.faqs) else None

    def has_index(self, account: Account) -> bool:
        return self._cached_index(account) is not None

    def faq_index(self, account: Account) -> FaqIndex:
        """The account's index, built now (blocking) if its FAQs are new or changed."""
        index = self._cached_index(account)
        if index is None:
            index = FaqIndex(self.embedder, list(account.faqs))
            with self._lock:
                self._faq[account.id] = (tuple(account.faqs), index)
        return index

    async def for_call(self, account: Account, *, phone: bool = False) -> CallEngines:
        """Per-call providers; only an account whose FAQs changed since prewarm waits.

        `phone`: the caller is on a phone line (a SIP participant): the VAD takes the phone
        thresholds (settings: band-limited speech)."""
        index = self._cached_index(account)
        if index is None:
            index = await asyncio.to_thread(self.faq_index, account)
        return CallEngines(
            vad=call_vad(self.vad, self.settings, phone=phone),
            stt=self.stt.lease(),
            llm=FaqLLM(account, index, min_score=self.settings.faq_min_score),
            tts=self.voice_for(account.voice).lease(),
            turn_detector=turn_detector(self.settings.turn_threshold),
        )

    def prepare_answers(
        self, accounts: AccountRegistry, more: Callable[[Account], list[str]] | None = None
    ) -> int:
        """Render every known account's FAQ answers (and `more` of its lines) not yet cached
        (blocking); the count."""
        return prepare_answers(self.greetings, self.voice_for, accounts, more)

    def prepare_greetings(self, accounts: AccountRegistry) -> int:
        """Synthesise every known account's greeting not yet cached (blocking); the count."""
        made = 0
        for account in accounts.accounts.values():
            made += self.greetings.prepare(self.voice_for(account.voice), account.greeting)
        return made


def call_vad(loaded: silero.VAD, settings: Settings, *, phone: bool) -> vad_api.VAD:
    """One call's VAD over the loaded model; a phone caller's with the phone thresholds."""
    # Silero keeps its state per stream; the loaded model is what we share (each call its
    # own options). Within the call, the session and the recogniser share one stream.
    vad = silero_vad_sharing_model(loaded)
    if phone:
        vad.update_options(
            activation_threshold=settings.phone_vad_activation,
            deactivation_threshold=settings.phone_vad_deactivation,
        )
    return SharedVAD(vad) if settings.shared_vad else vad


def load_vad(settings: Settings) -> silero.VAD:
    """Silero with the worker's settings (blocking: loads the ONNX model)."""
    # `VAD.load` is typed as returning the base class; it builds a `silero.VAD`.
    return silero.VAD.load(  # type: ignore[return-value]
        min_silence_duration=settings.vad_min_silence,
        max_buffered_speech=settings.vad_max_speech,
        activation_threshold=settings.vad_activation,
        deactivation_threshold=settings.vad_deactivation,
    )


def load_pool(settings: Settings, registry: AccountRegistry) -> EnginePool:
    """Load every engine, two at a time (blocking; runs in prewarm)."""
    timings: dict[str, float] = {}

    def timed(name: str, load: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            start = time.perf_counter()
            value = load()
            timings[name] = round(time.perf_counter() - start, 3)
            return value

        return run

    threads = settings.inference_threads
    verify = settings.verify_weights
    loaders: dict[str, Callable[[], Any]] = {
        # 0.3 s of silence (FIRSTWORD_VAD_MIN_SILENCE) ends an utterance (default 0.55):
        # the turn detector and the endpointing delay, not the VAD, decide whether the
        # caller has finished.
        # FIRSTWORD_VAD_MAX_SPEECH bounds the per-call speech buffer; the thresholds (and
        # a phone caller's own, applied per call in `call_vad`): see settings.
        "vad": timed("vad", lambda: load_vad(settings)),
        "stt": timed(
            "stt", lambda: load_whisper(settings.whisper_model_dir, threads=threads, verify=verify)
        ),
        "tts.hibari": timed("tts.hibari", lambda: load_hibari(threads=threads, verify=verify)),
        "embedder": timed(
            "embedder",
            lambda: load_embedder(settings.embedding_model_path, verify=verify, threads=threads),
        ),
        "turn_detector": timed("turn_detector", _load_turn_detector),
    }
    if any(a.voice.engine == "piper" for a in registry.accounts.values()):
        loaders["tts.piper"] = timed(
            "tts.piper",
            lambda: load_piper(settings.piper_voice_path, threads=threads, verify=verify),
        )
    # Most of each load is native code that releases the GIL (file reads, ONNX session
    # set-up, warm-up inference); two at once keeps both cores busy.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="firstword-load") as executor:
        futures = {name: executor.submit(load) for name, load in loaders.items()}
        loaded = {name: future.result() for name, future in futures.items()}

    voices: dict[tuple[str, str], LocalTTS] = {FALLBACK_VOICE: loaded["tts.hibari"]}
    if "tts.piper" in loaded:
        voices[("piper", "joe")] = loaded["tts.piper"]
    pool = EnginePool(
        settings=settings,
        vad=loaded["vad"],
        stt=WhisperSTT(loaded["stt"], mode=settings.whisper_mode),
        voices=voices,
        embedder=loaded["embedder"],
        greetings=GreetingCache(settings.cache_dir / "greetings"),
    )
    start = time.perf_counter()
    for account in registry.accounts.values():
        if (account.voice.engine, account.voice.name) not in voices:
            logger.warning(
                "account %r asks for voice %s:%s, which is not available offline; it will use %s",
                account.id,
                account.voice.engine,
                account.voice.name,
                pool.voice_for(account.voice).model,
            )
        pool.faq_index(account)
    timings["faq_indexes"] = round(time.perf_counter() - start, 3)
    logger.info("engines loaded", extra={"load_seconds": timings})
    return pool


class _ThresholdWarnedOnce(logging.Filter):
    """livekit-agents warns at every detector built with a threshold of its own ("the
    server provides calibrated defaults"): one per call. The operator chose it
    (FIRSTWORD_TURN_THRESHOLD), so the warning is kept once per process, not per call."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("a non-default turn detection threshold"):
            return True
        seen, _ThresholdWarnedOnce.seen = _ThresholdWarnedOnce.seen, True
        return not seen


def turn_detector(threshold: float) -> inference.TurnDetector:
    """The local v1-mini model (the default would call LiveKit's hosted detector), with
    `threshold` as its unlikely-threshold when above 0."""
    if threshold <= 0:
        return inference.TurnDetector(version="v1-mini")
    livekit_logger = logging.getLogger("livekit.agents")
    if not any(isinstance(f, _ThresholdWarnedOnce) for f in livekit_logger.filters):
        livekit_logger.addFilter(_ThresholdWarnedOnce())
    return inference.TurnDetector(version="v1-mini", unlikely_threshold=threshold)


def _load_turn_detector() -> None:
    # livekit keeps the v1-mini weights in a process-wide singleton; the forkserver
    # usually preloads them, this covers the other start methods.
    import livekit.local_inference as local_inference

    local_inference.init_eot()
