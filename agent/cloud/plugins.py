"""The cloud engines as livekit plugin objects, built from an account's choice and settings.

Endpoints can be overridden (settings), so the same plugin code runs against a regional
endpoint, a proxy or the loopback stand-ins in `standins/`. Keys are read from `Settings`
(secrets) and handed to the plugin; nothing here logs them.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import speech_v1, texttospeech
from google.cloud.speech_v1.services.speech.transports.grpc_asyncio import (
    SpeechGrpcAsyncIOTransport,
)
from google.cloud.texttospeech_v1.services.text_to_speech.transports.grpc_asyncio import (
    TextToSpeechGrpcAsyncIOTransport,
)
from google.genai import types as genai_types
from livekit.plugins import elevenlabs, google
from livekit.plugins.google import llm as google_llm

from ..accounts.models import CloudLLM, CloudSTT, CloudTTS
from ..settings import Settings

# Raw PCM: nothing to decode on our side, and the same rate as the local hibari voice.
ELEVENLABS_ENCODING: Final = "pcm_24000"
GOOGLE_TTS_RATE = 24000


def _google_credentials(settings: Settings) -> dict[str, Any]:
    if settings.google_grpc_insecure:
        return {"credentials": AnonymousCredentials()}
    if settings.google_credentials_file is not None:
        return {"credentials_file": str(settings.google_credentials_file)}
    return {}


class _GoogleSTT(google.STT):
    """Google STT whose gRPC endpoint can be overridden."""

    def __init__(self, *, endpoint: str | None, insecure: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._endpoint = endpoint
        self._insecure = insecure

    async def _create_client(self, timeout: float) -> Any:  # noqa: ASYNC109 (plugin API)
        if self._endpoint is None:
            return await super()._create_client(timeout)
        if self._insecure:
            channel = grpc.aio.insecure_channel(self._endpoint)
            return speech_v1.SpeechAsyncClient(
                transport=SpeechGrpcAsyncIOTransport(channel=channel)
            )
        return speech_v1.SpeechAsyncClient(
            credentials=self._credentials if self._credentials else None,
            client_options=ClientOptions(api_endpoint=self._endpoint),
        )


class _GoogleTTS(google.TTS):
    """Google TTS whose gRPC endpoint can be overridden."""

    def __init__(self, *, endpoint: str | None, insecure: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._endpoint = endpoint
        self._insecure = insecure

    def _ensure_client(self) -> texttospeech.TextToSpeechAsyncClient:
        if self._endpoint is None or self._client is not None:
            return super()._ensure_client()
        if self._insecure:
            channel = grpc.aio.insecure_channel(self._endpoint)
            self._client = texttospeech.TextToSpeechAsyncClient(
                transport=TextToSpeechGrpcAsyncIOTransport(channel=channel)
            )
        else:
            self._client = texttospeech.TextToSpeechAsyncClient(
                client_options=ClientOptions(api_endpoint=self._endpoint)
            )
        return self._client

    def prewarm(self) -> None:
        self._ensure_client()


def google_stt(choice: CloudSTT, settings: Settings) -> google.STT:
    return _GoogleSTT(
        endpoint=settings.google_speech_endpoint,
        insecure=settings.google_grpc_insecure,
        model=choice.model,
        languages=choice.language,
        detect_language=False,
        interim_results=True,
        **_google_credentials(settings),
    )


def google_tts(choice: CloudTTS, settings: Settings) -> google.TTS:
    return _GoogleTTS(
        endpoint=settings.google_tts_endpoint,
        insecure=settings.google_grpc_insecure,
        voice_name=choice.voice,
        language=choice.language,
        sample_rate=GOOGLE_TTS_RATE,
        # One request a sentence; the session already feeds us sentences.
        use_streaming=False,
        **_google_credentials(settings),
    )


def elevenlabs_tts(
    choice: CloudTTS, settings: Settings, session: aiohttp.ClientSession
) -> elevenlabs.TTS:
    assert settings.eleven_api_key is not None
    return elevenlabs.TTS(
        voice_id=choice.voice,
        model=choice.model,
        encoding=ELEVENLABS_ENCODING,
        api_key=settings.eleven_api_key.get_secret_value(),
        base_url=settings.elevenlabs_base_url or elevenlabs.tts.API_BASE_URL_V1,
        http_session=session,
        auto_mode=True,
        language=choice.language.split("-")[0],
    )


def gemini_llm(choice: CloudLLM, settings: Settings) -> google.LLM:
    assert settings.google_api_key is not None
    # Thinking off: with it a first token takes seconds, not a few hundred milliseconds.
    thinking = (
        genai_types.ThinkingConfig(thinking_level=genai_types.ThinkingLevel.MINIMAL)
        if google_llm._supports_thinking_level(choice.model)
        else genai_types.ThinkingConfig(thinking_budget=0)
    )
    extra: dict[str, Any] = {}
    if settings.gemini_base_url:
        extra["http_options"] = genai_types.HttpOptions(base_url=settings.gemini_base_url)
    return google.LLM(
        model=choice.model,
        api_key=settings.google_api_key.get_secret_value(),
        temperature=choice.temperature,
        thinking_config=thinking,
        **extra,
    )
