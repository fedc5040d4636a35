"""Noise cancellation of the caller's audio, per account, where the server offers it.

LiveKit's BVC filters (BVCTelephony for SIP callers) run only against LiveKit Cloud. On
any other server the account's setting is dropped with one warning at start-up (see
`startup_warning`) and the call hears the caller unfiltered; it never fails the call.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from livekit import rtc

from ..accounts import Account, AccountRegistry
from ..settings import Settings

logger = logging.getLogger("firstword.noise")
_SIP = rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def server_has_noise_cancellation(settings: Settings) -> bool:
    if settings.noise_cancellation != "auto":
        return settings.noise_cancellation == "on"
    host = urlparse(settings.livekit_url).hostname or ""
    return host.endswith(".livekit.cloud")


def startup_warning(registry: AccountRegistry, settings: Settings) -> str | None:
    wanting = sorted(a.id for a in registry.accounts.values() if a.noise_cancellation != "off")
    if not wanting or server_has_noise_cancellation(settings):
        return None
    return (
        f"accounts {', '.join(wanting)} ask for noise cancellation, which needs LiveKit Cloud; "
        f"{settings.livekit_url} is not, so their callers are heard unfiltered "
        "(FIRSTWORD_NOISE_CANCELLATION=on forces it)"
    )


def noise_filter(account: Account, caller_kind: Any, settings: Settings) -> Any | None:
    """The filter for this caller, or None (off, unavailable, or failed to load)."""
    if account.noise_cancellation == "off" or not server_has_noise_cancellation(settings):
        return None
    try:
        from livekit.plugins import noise_cancellation

        mode = account.noise_cancellation
        if mode == "bvc_telephony" or (mode == "auto" and caller_kind == _SIP):
            return noise_cancellation.BVCTelephony()
        return noise_cancellation.BVC()
    except Exception as exc:  # the filter is an improvement, never a reason to fail a call
        logger.warning("noise cancellation unavailable, audio stays unfiltered: %s", exc)
        return None
