"""Security headers on every response of the web app (call page, desk, API, static files).

A page that shows calls or mints rooms should not be framed by another site (clickjacking),
should not have its scripts or JSON sniffed as another type, and should only talk to this
origin and the LiveKit server. The Content-Security-Policy names the LiveKit server's
address (the only other origin the call page connects to: its signalling WebSocket and
livekit-client's HTTP fallback for the same host); the pages' own styles are inline (one
<style> block each), their scripts are files.
"""

from __future__ import annotations

from urllib.parse import urlparse

from aiohttp import web


def livekit_origins(url: str) -> list[str]:
    """The WebSocket and HTTP origins of a LiveKit URL (ws://h:p -> ws://h:p and http://h:p)."""
    parsed = urlparse(url)
    secure = parsed.scheme in ("wss", "https")
    host = parsed.netloc
    return [f"{'wss' if secure else 'ws'}://{host}", f"{'https' if secure else 'http'}://{host}"]


def content_security_policy(livekit_url: str) -> str:
    connect = " ".join(["'self'", *livekit_origins(livekit_url)])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            f"connect-src {connect}",
            "img-src 'self' data:",
            "media-src 'self' blob:",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def install(app: web.Application, livekit_url: str) -> None:
    """Add the headers to every response the app prepares (errors and static files too)."""
    headers = {
        "Content-Security-Policy": content_security_policy(livekit_url),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        # The call page needs the microphone (for itself only); nothing needs the rest.
        "Permissions-Policy": "microphone=(self), camera=(), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
    }

    async def add(_request: web.Request, response: web.StreamResponse) -> None:
        for name, value in headers.items():
            response.headers.setdefault(name, value)

    app.on_response_prepare.append(add)
