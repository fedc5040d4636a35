"""Inbound trunks and dispatch rules for every account, through LiveKit's server API.

`python -m agent.sip.provision` (run by `scripts/sip.sh start`) makes, for each account with
`phone_numbers`, one inbound trunk named `firstword-<account>` holding those numbers and one
dispatch rule named `firstword-<account>` on that trunk: each call gets its own `call-…` room
(individual rule) and the SIP participant carries `firstword.account` (the rule's attributes),
so the agent knows the account without a lookup; `sip.trunkPhoneNumber` stays the fallback.
With `FIRSTWORD_AGENT_NAME` set the rule's room configuration dispatches that agent by name.

Idempotent: a trunk or rule whose name exists is replaced only when it differs; ones named
`firstword-<id>` whose account is gone are deleted. Anything not named `firstword-…` is left
alone, so a business's own trunks on the same server are safe.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

import aiohttp
from livekit import api

from ..accounts import Account, AccountFileError, load_accounts
from ..accounts.resolve import ACCOUNT_ATTRIBUTE
from ..settings import Settings, get_settings

logger = logging.getLogger("firstword.sip")

PREFIX = "firstword-"
ROOM_PREFIX = "call-"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Provisioned:
    account: str
    trunk_id: str
    rule_id: str
    changed: bool


def _wanted_trunk(account: Account) -> api.SIPInboundTrunkInfo:
    return api.SIPInboundTrunkInfo(
        name=PREFIX + account.id,
        numbers=list(account.phone_numbers),
        metadata=f'{{"account": "{account.id}"}}',
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
    return sorted(have.numbers) == sorted(want.numbers) and have.metadata == want.metadata


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
    async with api.LiveKitAPI(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
    ) as lk:
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
            want_trunk = _wanted_trunk(account)
            found_trunk = trunks.get(want_trunk.name)
            if found_trunk is None:
                trunk = await sip.create_inbound_trunk(
                    api.CreateSIPInboundTrunkRequest(trunk=want_trunk)
                )
                changed = True
            elif not _same_trunk(found_trunk, want_trunk):
                trunk = await sip.update_inbound_trunk(found_trunk.sip_trunk_id, want_trunk)
                changed = True
            else:
                trunk = found_trunk
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
        return done


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
