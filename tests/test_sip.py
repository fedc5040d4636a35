"""Fast checks of the phone pieces: handoff numbers, G.711, SIP parsing, the transfer end,
and what the provisioner asks LiveKit for. The real SIP leg is tests/test_e2e_sip.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from agent.accounts import AccountFileError, load_account_file
from agent.call.handoff.transfer import SipTransferEnd, transfer_uri
from agent.call.handoff.types import HandoffOutcome, HandoffRequest
from agent.settings import Settings
from agent.sip.provision import (
    OUTBOUND_TRUNK,
    ROOM_PREFIX,
    Restrictions,
    _same_rule,
    _same_trunk,
    _wanted_rule,
    _wanted_trunk,
    wanted_outbound,
)
from caller.sip_ua import ALAW_DECODE, ULAW_DECODE, SipMessage, _alaw_encode, ulaw_encode
from tests.conftest import ACCOUNTS_DIR


def _account_with(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "harbor-dental.yaml"
    path.write_text((ACCOUNTS_DIR / "harbor-dental.yaml").read_text() + "\n" + line + "\n")
    return path


@pytest.mark.parametrize("number", ["+15035550111", "sip:frontdesk@pbx.example.com:5070"])
def test_handoff_number_accepts_e164_and_sip_uris(tmp_path: Path, number: str) -> None:
    account = load_account_file(_account_with(tmp_path, f'handoff_number: "{number}"'))
    assert account.handoff_number == number


def test_a_bad_handoff_number_names_the_file_and_field(tmp_path: Path) -> None:
    path = _account_with(tmp_path, 'handoff_number: "555-0111"')
    with pytest.raises(AccountFileError) as error:
        load_account_file(path)
    assert str(path) in str(error.value) and "handoff_number" in str(error.value)


def test_g711_round_trips_within_its_quantisation() -> None:
    t = np.arange(800) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ulaw = ULAW_DECODE[np.frombuffer(ulaw_encode(tone), dtype=np.uint8)]
    alaw = ALAW_DECODE[np.frombuffer(_alaw_encode(tone), dtype=np.uint8)]
    assert np.max(np.abs(ulaw - tone)) < 0.02
    assert np.max(np.abs(alaw - tone)) < 0.02
    assert ulaw_encode(np.zeros(1, np.float32)) == b"\xff"  # μ-law silence, as phones send it


def test_sip_messages_parse_compact_headers_and_bodies() -> None:
    raw = (
        b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
        b"f: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\ni: abc\r\nCSeq: 2 INVITE\r\n"
        b"m: <sip:b@127.0.0.1:5070>\r\nl: 4\r\n\r\nv=0\n"
    )
    message = SipMessage.parse(raw)
    assert message.is_response and message.status == 200 and message.method == "INVITE"
    assert message.header("call-id") == "abc" and message.header("contact").endswith("5070>")
    assert message.body == "v=0\n"


def _request(kind: str = "sip") -> HandoffRequest:
    return HandoffRequest(
        account_id="harbor-dental",
        room="call-x",
        caller_identity="sip_+15035550123",
        caller_kind=kind,  # type: ignore[arg-type]
        caller_number="+15035550123",
        reason="no stored answer matched",
        question="Do you sell concert tickets?",
        requested_at=time.time(),
    )


def test_transfer_end_handles_only_sip_callers_of_accounts_with_a_number() -> None:
    numbers = {"harbor-dental": "+15035550111"}
    end = SipTransferEnd(Settings(), numbers.get)
    assert end.handles(_request("sip"))
    assert not end.handles(_request("web"))
    nobody: dict[str, str] = {}
    assert not SipTransferEnd(Settings(), nobody.get).handles(_request("sip"))
    assert transfer_uri("+15035550111") == "tel:+15035550111"
    assert transfer_uri("sip:desk@pbx") == "sip:desk@pbx"


async def test_transfer_end_reports_failure_instead_of_raising() -> None:
    # Nothing listens on this port: the API call fails, and the end says FAILED in time.
    settings = Settings(LIVEKIT_URL="ws://127.0.0.1:9", LIVEKIT_API_SECRET=SecretStr("x" * 32))
    end = SipTransferEnd(settings, {"harbor-dental": "+15035550111"}.get)
    started = time.monotonic()
    result = await end.connect(_request(), wait_s=1.0)
    assert result.outcome is HandoffOutcome.FAILED and result.detail
    assert time.monotonic() - started < 5.0


def test_provisioning_asks_for_a_room_per_call_with_the_account_attribute() -> None:
    account = load_account_file(ACCOUNTS_DIR / "harbor-dental.yaml")
    trunk = _wanted_trunk(account)
    assert list(trunk.numbers) == account.phone_numbers
    rule = _wanted_rule(account, "ST_x", agent_name="")
    assert rule.rule.dispatch_rule_individual.room_prefix == ROOM_PREFIX
    assert dict(rule.attributes) == {"firstword.account": account.id}
    assert list(rule.trunk_ids) == ["ST_x"] and not rule.room_config.agents
    named = _wanted_rule(account, "ST_x", agent_name="firstword")
    assert [a.agent_name for a in named.room_config.agents] == ["firstword"]
    assert _same_rule(rule, _wanted_rule(account, "ST_x", agent_name=""))
    assert not _same_rule(rule, named)


def test_the_call_backs_trunk_exists_only_when_configured_and_holds_every_number() -> None:
    accounts = [load_account_file(path) for path in sorted(ACCOUNTS_DIR.glob("*.yaml"))]
    assert wanted_outbound(Settings(), accounts) is None
    settings = Settings(
        FIRSTWORD_SIP_OUTBOUND_ADDRESS="sip.carrier.example.com:5060",
        FIRSTWORD_SIP_OUTBOUND_USERNAME="biz",
        FIRSTWORD_SIP_OUTBOUND_PASSWORD=SecretStr("s3cret-enough"),
    )
    trunk = wanted_outbound(settings, accounts)
    assert trunk is not None and trunk.name == OUTBOUND_TRUNK
    assert trunk.address == "sip.carrier.example.com:5060"
    assert list(trunk.numbers) == sorted(n for a in accounts for n in a.phone_numbers)
    assert (trunk.auth_username, trunk.auth_password) == ("biz", "s3cret-enough")


def test_configured_restrictions_go_on_every_trunk_and_others_are_left_alone() -> None:
    from agent.settings import Settings

    account = load_account_file(ACCOUNTS_DIR / "harbor-dental.yaml")
    settings = Settings(
        FIRSTWORD_SIP_ALLOWED_ADDRESSES="198.51.100.0/24, 203.0.113.9",
        FIRSTWORD_SIP_AUTH_USERNAME="carrier",
        FIRSTWORD_SIP_AUTH_PASSWORD="pw-from-the-carrier",
    )
    restricted = _wanted_trunk(account, Restrictions.from_settings(settings))
    assert list(restricted.allowed_addresses) == ["198.51.100.0/24", "203.0.113.9"]
    assert (restricted.auth_username, restricted.auth_password) == (
        "carrier",
        "pw-from-the-carrier",
    )
    # Nothing configured: the wanted trunk asks nothing of those fields, so a trunk whose
    # operator restricted it by hand is the same trunk (not updated, nothing wiped).
    plain = _wanted_trunk(account)
    by_hand = _wanted_trunk(account)
    by_hand.allowed_addresses.append("192.0.2.1")
    by_hand.auth_username = "set-by-hand"
    assert _same_trunk(by_hand, plain)
    assert not _same_trunk(by_hand, _wanted_trunk(account, Restrictions(("198.51.100.0/24",))))
