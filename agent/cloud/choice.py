"""Which cloud engines an account really gets: those it asks for whose credentials are set.

Decided once per process from the settings; the worker's main process logs one warning per
account and engine that falls back for lack of credentials (see `startup_warnings`).
"""

from __future__ import annotations

from urllib.parse import urlparse

from ..accounts import Account, AccountRegistry
from ..accounts.models import Providers
from ..settings import Settings


def missing_credentials(engine: str, settings: Settings) -> str | None:
    """What `engine` lacks to run, or None when it can."""
    if engine == "gemini":
        return None if settings.google_api_key else "GOOGLE_API_KEY is not set"
    if engine == "elevenlabs":
        return None if settings.eleven_api_key else "ELEVEN_API_KEY is not set"
    if engine == "google":
        if settings.google_grpc_insecure or settings.google_credentials_file:
            return None
        return "GOOGLE_APPLICATION_CREDENTIALS is not set"
    return f"unknown engine {engine!r}"


def usable_providers(account: Account, settings: Settings) -> Providers:
    """The account's cloud engines that can run here, in its order."""
    if settings.providers == "local":
        return Providers()
    wanted = account.providers
    return Providers(
        stt=[c for c in wanted.stt if missing_credentials(c.engine, settings) is None],
        llm=[c for c in wanted.llm if missing_credentials(c.engine, settings) is None],
        tts=[c for c in wanted.tts if missing_credentials(c.engine, settings) is None],
    )


def startup_warnings(registry: AccountRegistry, settings: Settings) -> list[str]:
    """One line per account and cloud engine that will run locally instead."""
    lines = []
    for account in registry.accounts.values():
        for role, choices in (
            ("stt", account.providers.stt),
            ("llm", account.providers.llm),
            ("tts", account.providers.tts),
        ):
            for choice in choices:
                if settings.providers == "local":
                    why: str | None = "FIRSTWORD_PROVIDERS=local"
                else:
                    why = missing_credentials(choice.engine, settings)
                if why:
                    lines.append(
                        f"account {account.id!r} asks for {choice.engine} ({role}) but {why}; "
                        "its calls use the local engine"
                    )
    return lines


def endpoint_name(engine: str, settings: Settings) -> str:
    """The breaker key of an engine: one per provider endpoint."""
    endpoints = {
        "gemini": settings.gemini_base_url or "https://generativelanguage.googleapis.com",
        "elevenlabs": settings.elevenlabs_base_url or "https://api.elevenlabs.io",
        "google-stt": settings.google_speech_endpoint or "speech.googleapis.com",
        "google-tts": settings.google_tts_endpoint or "texttospeech.googleapis.com",
    }
    where = endpoints[engine]
    host = urlparse(where).netloc if "://" in where else where
    return f"{engine}@{host}"
