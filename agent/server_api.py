"""The LiveKit server's API (rooms, dispatches, SIP), reached the same way from every room.

The settings name the server and its key; each user says how long one request may take, so
no request waits on a default it never chose.
"""

from __future__ import annotations

import aiohttp
from livekit import api

from .settings import Settings


def http_url(ws_url: str) -> str:
    """The server's HTTP address for its `ws(s)://` one (the API is plain HTTP)."""
    return ws_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)


def server_api(settings: Settings, *, timeout_s: float) -> api.LiveKitAPI:
    """A client of the server's API with this worker's (or web app's) key; close it with
    `aclose()` or use it as an async context manager."""
    return api.LiveKitAPI(
        url=http_url(settings.livekit_url),
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    )
