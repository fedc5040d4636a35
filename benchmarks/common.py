"""What the benchmark's workers share: the same server options as firstword's worker."""

from __future__ import annotations

from typing import Any

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
