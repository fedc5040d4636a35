"""Inbound trunks and dispatch rules for every account, through LiveKit's server API.

`python -m agent.sip.provision` (run by `scripts/sip.sh start`) makes, for each account with
`phone_numbers`, one inbound trunk named `firstword-<account>` holding those numbers and one
dispatch rule named `firstword-<account>` on that trunk: each call gets its own `call-…` room
(individual rule) and the SIP participant carries `firstword.account` (the rule's attributes),
so the agent knows the account without a lookup; `sip.trunkPhoneNumber` stays the fallback.
With `FIRSTWORD_AGENT_NAME` set the rule's room configuration dispatches that agent by name.

Who may call a trunk: the carrier's addresses (FIRSTWORD_SIP_ALLOWED_ADDRESSES) and/or digest
credentials (FIRSTWORD_SIP_AUTH_USERNAME / FIRSTWORD_SIP_AUTH_PASSWORD), set on every firstword
trunk when configured. A trunk with neither takes calls from anyone who can reach the SIP
bridge: provisioning says so, once per trunk.

Call-backs (the desk dialling a caller back, agent/web/desk.py) and warm transfers (the agent
dialling the person, agent/call/handoff/warm.py): with
FIRSTWORD_SIP_OUTBOUND_ADDRESS set, one outbound trunk named `firstword-outbound` to that
address, holding every account's numbers (the caller ID a call-back shows) and the carrier's
credentials (FIRSTWORD_SIP_OUTBOUND_USERNAME / _PASSWORD); without it, that trunk is removed.

Idempotent: a trunk or rule whose name exists is updated only when it differs; ones named
`firstword-<id>` whose account is gone are deleted. An existing trunk is updated field by
field (LiveKit's `UpdateSIPInboundTrunk` with an update, not a replacement), and only in the
fields firstword owns: numbers, metadata, and the restrictions above when they are
configured. What an operator set by hand (allowed addresses or numbers, credentials, headers,
media encryption) survives re-provisioning. Anything not named `firstword-…` is left alone,
so a business's own trunks on the same server are safe.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

from livekit import api
from livekit.api.sip_service import SipService

from ..accounts import Account, AccountFileError, load_accounts
from ..accounts.resolve import ACCOUNT_ATTRIBUTE
from ..server_api import server_api
from ..settings import Settings, get_settings

logger = logging.getLogger("firstword.sip")

PREFIX = "firstword-"
# The outbound trunk (a list of its own on the server: no clash with an account's inbound one).
OUTBOUND_TRUNK = PREFIX + "outbound"
ROOM_PREFIX = "call-"
TIMEOUT_S = 10.0


async def outbound_trunk_id(sip: SipService) -> str | None:
    """The id of the `firstword-outbound` trunk (call-backs and warm transfers dial through it),
    or None when it is not provisioned."""
    listed = await sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())
    return next((t.sip_trunk_id for t in listed.items if t.name == OUTBOUND_TRUNK), None)


@dataclass(frozen=True)
class Provisioned:
    account: str
    trunk_id: str
    rule_id: str
    changed: bool


@dataclass(frozen=True)
class Restrictions:
    """Who may call firstword's trunks, from the settings (empty: nothing configured)."""

    allowed_addresses: tuple[str, ...] = ()
    auth_username: str = ""
    auth_password: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Restrictions:
        addresses = tuple(a.strip() for a in settings.sip_allowed_addresses.split(",") if a.strip())
        password = settings.sip_auth_password
        return cls(
            addresses,
            settings.sip_auth_username or "",
            password.get_secret_value() if password is not None else "",
        )


def _wanted_trunk(
    account: Account, restrictions: Restrictions = Restrictions()
) -> api.SIPInboundTrunkInfo:
    return api.SIPInboundTrunkInfo(
        name=PREFIX + account.id,
        numbers=list(account.phone_numbers),
        metadata=f'{{"account": "{account.id}"}}',
        allowed_addresses=list(restrictions.allowed_addresses),
        auth_username=restrictions.auth_username,
        auth_password=restrictions.auth_password,
    )


def _wanted_rule(account: Account, trunk_id: str, agent_name: str) -> api.SIPDispatchRuleInfo:
    rule = api.SIPDispatchRuleInfo(
        name=PREFIX + account.id,
        trunk_ids=[trunk_id],
        rule=api.SIPDispatchRule(
            dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix=ROOM_PREFIX)
        ),
        attributes={ACCOUNT_ATTRIBUTE: account.id},
        metadata=f'{{"account": "{account.id}"}}',
    )
    if agent_name:
        rule.room_config.agents.append(
            api.RoomAgentDispatch(agent_name=agent_name, metadata=f'{{"account": "{account.id}"}}')
        )
    return rule


def _same_trunk(have: api.SIPInboundTrunkInfo, want: api.SIPInboundTrunkInfo) -> bool:
    """Equal in what firstword owns (restrictions only where configured: `want` has them)."""
    return (
        sorted(have.numbers) == sorted(want.numbers)
        and have.metadata == want.metadata
        and (
            not want.allowed_addresses or set(have.allowed_addresses) == set(want.allowed_addresses)
        )
        and (not want.auth_username or have.auth_username == want.auth_username)
        # The server does not return a trunk's password: a configured one is always sent.
        and not want.auth_password
    )


async def _update_trunk(
    sip: SipService, trunk_id: str, want: api.SIPInboundTrunkInfo
) -> api.SIPInboundTrunkInfo:
    """Update firstword's fields of an existing trunk and leave the others as they are."""
    return await sip.update_inbound_trunk_fields(
        trunk_id,
        numbers=list(want.numbers),
        metadata=want.metadata,
        allowed_addresses=list(want.allowed_addresses) or None,
        auth_username=want.auth_username or None,
        auth_password=want.auth_password or None,
    )


def _warn_if_open(trunk: api.SIPInboundTrunkInfo) -> None:
    if not trunk.allowed_addresses and not trunk.auth_username:
        logger.warning(
            "trunk %s takes calls from anyone who can reach the SIP bridge: set"
            " FIRSTWORD_SIP_ALLOWED_ADDRESSES (the carrier's addresses) and/or"
            " FIRSTWORD_SIP_AUTH_USERNAME / FIRSTWORD_SIP_AUTH_PASSWORD",
            trunk.name,
        )


def _same_rule(have: api.SIPDispatchRuleInfo, want: api.SIPDispatchRuleInfo) -> bool:
    return (
        list(have.trunk_ids) == list(want.trunk_ids)
        and have.rule == want.rule
        and dict(have.attributes) == dict(want.attributes)
        and have.room_config == want.room_config
        and have.metadata == want.metadata
    )


async def provision(settings: Settings, accounts: list[Account]) -> list[Provisioned]:
    """Make the server's trunks and dispatch rules match `accounts`."""
    restrictions = Restrictions.from_settings(settings)
    async with server_api(settings, timeout_s=TIMEOUT_S) as lk:
        sip = lk.sip
        trunks = {
            t.name: t
            for t in (await sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
            if t.name.startswith(PREFIX)
        }
        rules = {
            r.name: r
            for r in (await sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
            if r.name.startswith(PREFIX)
        }
        done: list[Provisioned] = []
        wanted_names = {PREFIX + a.id for a in accounts if a.phone_numbers}
        # Rules first (they name trunks), then trunks, of accounts that are gone.
        for name, rule in rules.items():
            if name not in wanted_names:
                await sip.delete_dispatch_rule(
                    api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=rule.sip_dispatch_rule_id)
                )
                logger.info("deleted dispatch rule %s", name)
        for name, trunk in trunks.items():
            if name not in wanted_names:
                await sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=trunk.sip_trunk_id))
                logger.info("deleted trunk %s", name)

        for account in accounts:
            if not account.phone_numbers:
                continue
            changed = False
            want_trunk = _wanted_trunk(account, restrictions)
            found_trunk = trunks.get(want_trunk.name)
            if found_trunk is None:
                trunk = await sip.create_inbound_trunk(
                    api.CreateSIPInboundTrunkRequest(trunk=want_trunk)
                )
                changed = True
            elif not _same_trunk(found_trunk, want_trunk):
                trunk = await _update_trunk(sip, found_trunk.sip_trunk_id, want_trunk)
                changed = True
            else:
                trunk = found_trunk
            _warn_if_open(trunk)
            want_rule = _wanted_rule(account, trunk.sip_trunk_id, settings.agent_name)
            found_rule = rules.get(want_rule.name)
            if found_rule is None:
                rule = await sip.create_dispatch_rule(
                    api.CreateSIPDispatchRuleRequest(dispatch_rule=want_rule)
                )
                changed = True
            elif not _same_rule(found_rule, want_rule):
                rule = await sip.update_dispatch_rule(found_rule.sip_dispatch_rule_id, want_rule)
                changed = True
            else:
                rule = found_rule
            done.append(
                Provisioned(account.id, trunk.sip_trunk_id, rule.sip_dispatch_rule_id, changed)
            )
        await _provision_outbound(sip, wanted_outbound(settings, accounts))
        return done


def wanted_outbound(settings: Settings, accounts: list[Account]) -> api.SIPOutboundTrunkInfo | None:
    """The call-backs' trunk, or None when call-backs are not configured."""
    if not settings.sip_outbound_address:
        return None
    password = settings.sip_outbound_password
    return api.SIPOutboundTrunkInfo(
        name=OUTBOUND_TRUNK,
        address=settings.sip_outbound_address,
        numbers=sorted({n for a in accounts for n in a.phone_numbers}),
        auth_username=settings.sip_outbound_username or "",
        auth_password=password.get_secret_value() if password is not None else "",
    )


async def _provision_outbound(sip: SipService, want: api.SIPOutboundTrunkInfo | None) -> None:
    listed = await sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())
    found = [t for t in listed.items if t.name == OUTBOUND_TRUNK]
    fields = ("address", "auth_username", "auth_password")
    if (
        want is not None
        and len(found) == 1
        and all(getattr(found[0], f) == getattr(want, f) for f in fields)
        and sorted(found[0].numbers) == list(want.numbers)
    ):
        return
    # Changed or gone: replaced whole (nothing of it is set by hand; its id is looked up by
    # name whenever a call-back is placed).
    for trunk in found:
        await sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=trunk.sip_trunk_id))
    if want is None:
        if found:
            logger.info(
                "deleted outbound trunk %s (no FIRSTWORD_SIP_OUTBOUND_ADDRESS)", OUTBOUND_TRUNK
            )
        return
    await sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=want))
    logger.info("outbound trunk %s to %s", OUTBOUND_TRUNK, want.address)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    try:
        registry = load_accounts(settings.accounts_dir, settings.default_account)
    except AccountFileError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 2
    done = asyncio.run(provision(settings, list(registry.accounts.values())))
    for item in done:
        numbers = ", ".join(registry.accounts[item.account].phone_numbers)
        state = "created/updated" if item.changed else "unchanged"
        print(
            f"sip: {item.account}: trunk {item.trunk_id} ({numbers}), "
            f"dispatch rule {item.rule_id} -> {ROOM_PREFIX}* rooms [{state}]"
        )
    if not done:
        print("sip: no account has phone_numbers; nothing to provision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
