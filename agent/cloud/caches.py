"""The caches in front of a call's cloud engines, built once per worker process.

- `response_cache.ResponseCache`: the cloud model's answers by question (skips Gemini);
- `voice_cache.CloudVoiceCache`: the cloud voices' audio by sentence (skips the TTS);
- `agent.shared_cache.SharedCache`: Redis behind both, when `REDIS_URL` is set.
`chains.build_chains` puts them in front of the guarded cloud providers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.greetings import GreetingCache
from ..settings import Settings
from ..shared_cache import SharedCache
from .response_cache import Embed, ResponseCache
from .voice_cache import CloudVoiceCache


@dataclass
class CloudCaches:
    shared: SharedCache
    responses: ResponseCache | None
    voices: CloudVoiceCache | None


def build_cloud_caches(settings: Settings, embed: Embed) -> CloudCaches:
    """The process's caches, as the settings ask (nothing here touches the network)."""
    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    shared = SharedCache(
        url if settings.shared_cache else None,
        timeout=settings.redis_timeout,
        retry_after=settings.redis_retry_after,
    )
    responses = (
        ResponseCache(
            embed,
            shared,
            ttl_seconds=settings.response_cache_ttl,
            similarity=settings.response_cache_similarity,
        )
        if settings.response_cache
        else None
    )
    voices = (
        CloudVoiceCache(
            GreetingCache(
                settings.cache_dir / "voices",
                max_memory_bytes=settings.cloud_voice_cache_mb * 1024 * 1024,
            ),
            shared,
            ttl_seconds=settings.shared_audio_ttl,
            max_bytes=settings.shared_audio_max_kb * 1024,
        )
        if settings.cloud_voice_cache
        else None
    )
    return CloudCaches(shared=shared, responses=responses, voices=voices)
