"""The cloud engines as livekit plugin objects, built from an account's choice and settings.

Endpoints can be overridden (settings), so the same plugin code runs against a regional
endpoint, a proxy or the loopback stand-ins in `standins/`. Keys are read from `Settings`
(secrets) and handed to the plugin; nothing here logs them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import certifi
import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import speech_v1, texttospeech
from google.cloud.speech_v1.services.speech.transports.grpc_asyncio import (
    SpeechGrpcAsyncIOTransport,
)
from google.cloud.texttospeech_v1.services.text_to_speech.transports.grpc_asyncio import (
    TextToSpeechGrpcAsyncIOTransport,
)
from google.genai import types as genai_types
from google.oauth2 import service_account
from livekit.plugins import elevenlabs, google

from ..accounts.models import CloudLLM, CloudSTT, CloudTTS
from ..compat import GoogleSTTWithClient, GoogleTTSWithClient, share_gemini_tls
from ..process_wide import process_wide
from ..settings import Settings

# Raw PCM: nothing to decode on our side, and the same rate as the local hibari voice.
ELEVENLABS_ENCODING: Final = "pcm_24000"
# What the Gemini plugin names itself (its `provider`) with an API key (not Vertex AI).
GEMINI_PROVIDER: Final = "Gemini"
GOOGLE_TTS_RATE = 24000
_SCOPES: Final = ["https://www.googleapis.com/auth/cloud-platform"]


def _google_credentials(settings: Settings) -> dict[str, Any]:
    """The plugin's own credential arguments (used where the plugin builds its client)."""
    if settings.google_grpc_insecure:
        return {"credentials": AnonymousCredentials()}
    if settings.google_credentials_file is not None:
        return {"credentials_file": str(settings.google_credentials_file)}
    return {}


def _file_credentials(settings: Settings) -> Credentials | None:
    """The service account of GOOGLE_APPLICATION_CREDENTIALS, for clients we build ourselves.

    Blocking (reads the file); None means the client's Application Default Credentials."""
    if settings.google_credentials_file is None:
        return None
    return service_account.Credentials.from_service_account_file(
        str(settings.google_credentials_file), scopes=_SCOPES
    )


def _speech_client_factory(
    settings: Settings,
) -> Callable[[], Awaitable[speech_v1.SpeechAsyncClient]] | None:
    endpoint = settings.google_speech_endpoint
    if endpoint is None:
        return None

    async def make() -> speech_v1.SpeechAsyncClient:
        if settings.google_grpc_insecure:
            channel = grpc.aio.insecure_channel(endpoint)
            return speech_v1.SpeechAsyncClient(
                transport=SpeechGrpcAsyncIOTransport(channel=channel)
            )
        return speech_v1.SpeechAsyncClient(
            credentials=await asyncio.to_thread(_file_credentials, settings),
            client_options=ClientOptions(api_endpoint=endpoint),
        )

    return make


def _tts_client_factory(
    settings: Settings,
) -> Callable[[], texttospeech.TextToSpeechAsyncClient] | None:
    endpoint = settings.google_tts_endpoint
    if endpoint is None:
        return None

    def make() -> texttospeech.TextToSpeechAsyncClient:
        if settings.google_grpc_insecure:
            channel = grpc.aio.insecure_channel(endpoint)
            return texttospeech.TextToSpeechAsyncClient(
                transport=TextToSpeechGrpcAsyncIOTransport(channel=channel)
            )
        return texttospeech.TextToSpeechAsyncClient(
            credentials=_file_credentials(settings),
            client_options=ClientOptions(api_endpoint=endpoint),
        )

    return make


def google_stt(choice: CloudSTT, settings: Settings) -> google.STT:
    return GoogleSTTWithClient(
        client_factory=_speech_client_factory(settings),
        model=choice.model,
        languages=choice.language,
        detect_language=False,
        interim_results=True,
        **_google_credentials(settings),
    )


def google_tts(choice: CloudTTS, settings: Settings) -> google.TTS:
    return GoogleTTSWithClient(
        client_factory=_tts_client_factory(settings),
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


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context for HTTPS clients we build (CA bundle loaded once).

    The CA files are the ones the Google SDK itself would load: SSL_CERT_FILE / SSL_CERT_DIR
    when set (a proxy's own CA), certifi's bundle otherwise."""
    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )


def gemini_llm(choice: CloudLLM, settings: Settings) -> google.LLM:
    assert settings.google_api_key is not None
    # One TLS context for every call's client instead of three per call (agent/compat.py).
    process_wide("gemini_tls", lambda: share_gemini_tls(tls_context()))
    # Thinking off: with it a first token takes seconds, not a few hundred milliseconds.
    # Both fields: the plugin sends the level to models that take one (Gemini 3 and newer)
    # and the budget to the others (2.5 and older), so we need not know which is which.
    thinking = genai_types.ThinkingConfig(
        thinking_budget=0, thinking_level=genai_types.ThinkingLevel.MINIMAL
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
