"""What the benchmark's workers share: the same server options as firstword's worker, and the
session the two baselines build."""

from __future__ import annotations

from typing import Any

from faster_whisper import WhisperModel
from livekit.agents import AgentSession, inference, vad

from agent.accounts import Account
from agent.engines.faq_llm import FaqIndex, FaqLLM
from agent.engines.local_tts import LocalTTS, load_hibari, load_piper
from agent.engines.whisper_stt import WhisperSTT
from agent.settings import get_settings


def worker_options() -> dict[str, Any]:
    settings = get_settings()
    return {
        "ws_url": settings.livekit_url,
        "api_key": settings.livekit_api_key,
        "api_secret": settings.livekit_api_secret.get_secret_value(),
        "port": settings.http_port,
        "load_fnc": lambda _server: 0.0,  # never refuse a benchmark call
        "load_threshold": 1.0,
        "initialize_process_timeout": 60.0,
        "max_retry": 2,
    }


def account_voice(account: Account) -> LocalTTS:
    """The account's local voice, loaded (blocking: seconds)."""
    if account.voice.engine == "piper":
        return load_piper(None, threads=2, verify=False)
    return load_hibari(threads=2, verify=False)


def local_session(
    account: Account, *, vad: vad.VAD, whisper: WhisperModel, voice: LocalTTS, index: FaqIndex
) -> AgentSession[Any]:
    """The session both baselines build from loaded engines, as a LiveKit user would: the
    framework's defaults but the same engines and turn detector as firstword."""
    return AgentSession(
        vad=vad,
        stt=WhisperSTT(whisper),
        llm=FaqLLM(account, index, min_score=get_settings().faq_min_score),
        tts=voice,
        turn_handling={
            "turn_detection": inference.TurnDetector(version="v1-mini"),
            "interruption": {"mode": "vad"},
        },
    )
