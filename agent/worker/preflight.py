"""Checks run before the worker starts, so that set-up mistakes give one clear message."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

from ..accounts import AccountFileError, load_accounts
from ..settings import Settings


class PreflightError(RuntimeError):
    """The worker cannot start; the message says why and what to do."""


def startup_warnings(settings: Settings) -> list[str]:
    """What the accounts ask for that this worker will not give them (said once)."""
    from ..call import noise
    from ..cloud import choice

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


# LiveKit's development key pair (`livekit-server --dev`): anyone may know it.
DEV_KEY_PAIR = ("devkey", "secret")
# LiveKit's own minimum for an API secret (the server refuses shorter ones in production).
MIN_API_SECRET = 32


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secrets(settings: Settings) -> None:
    """Refuse to start with secrets anyone can guess (never printing them).

    The development key pair, or an API secret under 32 characters, is fine against a
    LiveKit server on this machine and refused against any other: with it anyone could mint
    tokens for every room. The desk's old shared password is refused: staff log in with
    their own names now."""
    secret = settings.livekit_api_secret.get_secret_value()
    if not _loopback(settings.livekit_url):
        if (settings.livekit_api_key, secret) == DEV_KEY_PAIR:
            raise PreflightError(
                f"LIVEKIT_URL={settings.livekit_url} is not on this machine, and "
                "LIVEKIT_API_KEY/LIVEKIT_API_SECRET are LiveKit's development pair: set the "
                "server's own key and secret"
            )
        if len(secret) < MIN_API_SECRET:
            raise PreflightError(
                f"LIVEKIT_API_SECRET is shorter than {MIN_API_SECRET} characters, against a "
                f"server that is not on this machine ({settings.livekit_url})"
            )
    if settings.desk_secret is not None:
        raise PreflightError(
            "FIRSTWORD_DESK_SECRET (one password for every business) was replaced by staff "
            "logins: unset it and give each person their own with "
            "`python -m agent.web add-staff NAME --accounts ACCOUNT[,ACCOUNT...]`"
        )


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
