"""Checks run before the worker starts, so that set-up mistakes give one clear message."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from .accounts import AccountFileError, load_accounts
from .settings import Settings


class PreflightError(RuntimeError):
    """The worker cannot start; the message says why and what to do."""


def startup_warnings(settings: Settings) -> list[str]:
    """What the accounts ask for that this worker will not give them (said once)."""
    from . import noise
    from .cloud import choice

    registry = load_accounts(settings.accounts_dir, settings.default_account)
    lines = choice.startup_warnings(registry, settings)
    if (line := noise.startup_warning(registry, settings)) is not None:
        lines.append(line)
    return lines


def check_accounts(settings: Settings) -> None:
    try:
        load_accounts(settings.accounts_dir, settings.default_account)
    except AccountFileError as exc:
        raise PreflightError(f"cannot start: broken account configuration: {exc}") from exc


def check_server_reachable(settings: Settings, timeout: float = 3.0) -> None:
    url = urlparse(settings.livekit_url)
    if url.scheme not in ("ws", "wss", "http", "https") or not url.hostname:
        raise PreflightError(f"LIVEKIT_URL={settings.livekit_url!r} is not a ws:// or wss:// URL")
    port = url.port or (443 if url.scheme in ("wss", "https") else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise PreflightError(
            f"cannot reach the LiveKit server at {settings.livekit_url} ({exc.strerror or exc}). "
            "Start the local one with `scripts/livekit-server.sh start`, or set LIVEKIT_URL."
        ) from exc
