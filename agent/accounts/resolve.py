"""Choosing the account of a call from what LiveKit tells us about it.

Sources, highest priority first: the job's dispatch metadata, the room's metadata, the
caller's attributes (`firstword.account`, or `sip.trunkPhoneNumber` for SIP callers) and
metadata, then the room name (`<account-id>` or `<account-id>-anything`). A source that names
an unknown account, or holds garbage, is skipped with a warning; if none names a known
account the registry's default answers, also with a warning.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .loader import AccountRegistry
from .models import ACCOUNT_ID_PATTERN, Account

logger = logging.getLogger("firstword.accounts")

ACCOUNT_ATTRIBUTE = "firstword.account"
SIP_TRUNK_NUMBER_ATTRIBUTE = "sip.trunkPhoneNumber"
_METADATA_KEYS = ("account", "account_id")
_ID_RE = re.compile(ACCOUNT_ID_PATTERN)


@dataclass(frozen=True)
class CallHints:
    """Everything about a call that may name its account."""

    job_metadata: str = ""
    room_metadata: str = ""
    room_name: str = ""
    participant_attributes: Mapping[str, str] = field(default_factory=dict)
    participant_metadata: str = ""


@dataclass(frozen=True)
class Resolution:
    account: Account
    source: str  # where the account came from, for the call's log line


def account_id_from_metadata(metadata: str, *, source: str) -> str | None:
    """The account id in a metadata string: JSON `{"account": "<id>"}` or a bare id."""
    text = metadata.strip()
    if not text:
        return None
    if _ID_RE.match(text):
        return text
    try:
        data = json.loads(text)
    except ValueError:
        logger.warning("ignoring %s: not JSON and not an account id (%.80r)", source, text)
        return None
    if not isinstance(data, dict):
        logger.warning("ignoring %s: expected a JSON object, got %s", source, type(data).__name__)
        return None
    for key in _METADATA_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, str) and _ID_RE.match(value):
            return value
        logger.warning("ignoring %s: %r is not a valid account id (%.80r)", source, key, value)
        return None
    return None  # JSON for someone else (no account key): nothing to say


def _from_room_name(registry: AccountRegistry, room_name: str) -> Account | None:
    # Longest id first so "acme-west" wins over "acme" for room "acme-west-42".
    for account_id in sorted(registry.accounts, key=len, reverse=True):
        if room_name == account_id or room_name.startswith(account_id + "-"):
            return registry.accounts[account_id]
    return None


def resolve_account(registry: AccountRegistry, hints: CallHints) -> Resolution:
    named: list[tuple[str, str | None]] = [
        ("job metadata", account_id_from_metadata(hints.job_metadata, source="job metadata")),
        ("room metadata", account_id_from_metadata(hints.room_metadata, source="room metadata")),
        (
            f"participant attribute {ACCOUNT_ATTRIBUTE}",
            hints.participant_attributes.get(ACCOUNT_ATTRIBUTE) or None,
        ),
    ]
    for source, account_id in named:
        if account_id is None:
            continue
        account = registry.get(account_id)
        if account is not None:
            return Resolution(account, source)
        logger.warning("unknown account %r in %s; trying the next source", account_id, source)

    trunk_number = hints.participant_attributes.get(SIP_TRUNK_NUMBER_ATTRIBUTE)
    if trunk_number:
        account = registry.by_phone_number(trunk_number)
        if account is not None:
            return Resolution(account, f"SIP trunk number {trunk_number}")
        logger.warning("no account owns SIP trunk number %s", trunk_number)

    participant_id = account_id_from_metadata(
        hints.participant_metadata, source="participant metadata"
    )
    if participant_id is not None:
        account = registry.get(participant_id)
        if account is not None:
            return Resolution(account, "participant metadata")
        logger.warning("unknown account %r in participant metadata", participant_id)

    account = _from_room_name(registry, hints.room_name)
    if account is not None:
        return Resolution(account, "room name")

    logger.warning(
        "no account named for room %r; using the default account %r",
        hints.room_name,
        registry.default_id,
    )
    return Resolution(registry.default, "default")
