"""Loading account files and choosing the account of a call."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent.accounts import AccountFileError, AccountRegistry, CallHints, load_accounts
from agent.accounts import resolve_account as resolve


def test_demo_accounts_load(registry: AccountRegistry) -> None:
    assert set(registry.accounts) == {"harbor-dental", "bluebird-bikes"}
    dental = registry.get("harbor-dental")
    assert dental is not None and dental.voice.engine == "hibari"
    bikes = registry.get("bluebird-bikes")
    assert bikes is not None and bikes.voice.engine == "piper"
    for account in registry.accounts.values():
        assert all(len(faq.questions) >= 3 for faq in account.faqs)


def test_missing_field_names_file_and_field(accounts_copy: Path) -> None:
    path = accounts_copy / "harbor-dental.yaml"
    path.write_text(path.read_text().replace("greeting:", "greetin:"))
    with pytest.raises(AccountFileError) as err:
        load_accounts(accounts_copy, "harbor-dental")
    message = str(err.value)
    assert str(path) in message
    assert "field 'greeting'" in message and "field 'greetin'" in message


def test_bad_faq_field_is_located(accounts_copy: Path) -> None:
    path = accounts_copy / "bluebird-bikes.yaml"
    text = path.read_text().replace("      - Do you rent bikes?\n", "", 1)
    text = text.replace("      - How much does it cost to rent a bike?\n", "", 1)
    text = text.replace("      - Can I hire a bicycle for the day?\n", "", 1)
    path.write_text(text)
    with pytest.raises(AccountFileError, match=r"bluebird-bikes\.yaml.*field 'faqs\.2\.questions'"):
        load_accounts(accounts_copy, "harbor-dental")


def test_invalid_yaml_names_file(accounts_copy: Path) -> None:
    path = accounts_copy / "harbor-dental.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(AccountFileError, match=r"harbor-dental\.yaml: not valid YAML"):
        load_accounts(accounts_copy, "harbor-dental")


def test_duplicate_id_and_unknown_default(accounts_copy: Path) -> None:
    copy = accounts_copy / "zz-copy.yaml"
    copy.write_text((accounts_copy / "harbor-dental.yaml").read_text())
    with pytest.raises(AccountFileError, match=r"zz-copy\.yaml: field 'id'.*already defined"):
        load_accounts(accounts_copy, "harbor-dental")
    copy.unlink()
    with pytest.raises(AccountFileError, match="default account 'nope'"):
        load_accounts(accounts_copy, "nope")


def test_priority_job_then_room_then_caller_then_room_name(registry: AccountRegistry) -> None:
    hints = CallHints(
        job_metadata=json.dumps({"account": "bluebird-bikes"}),
        room_metadata="harbor-dental",
        room_name="harbor-dental-1",
    )
    assert resolve(registry, hints).account.id == "bluebird-bikes"
    assert resolve(registry, CallHints(room_metadata="bluebird-bikes")).source == "room metadata"
    by_attr = CallHints(
        participant_attributes={"firstword.account": "bluebird-bikes"}, room_name="harbor-dental"
    )
    assert resolve(registry, by_attr).account.id == "bluebird-bikes"
    by_name = resolve(registry, CallHints(room_name="bluebird-bikes-call-7"))
    assert (by_name.account.id, by_name.source) == ("bluebird-bikes", "room name")


def test_sip_caller_is_routed_by_trunk_number(registry: AccountRegistry) -> None:
    hints = CallHints(
        participant_attributes={"sip.trunkPhoneNumber": "+1 (503) 555-0199", "sip.callStatus": "x"}
    )
    resolution = resolve(registry, hints)
    assert resolution.account.id == "bluebird-bikes"
    assert "SIP trunk" in resolution.source


def test_unknown_account_falls_back_with_warning(
    registry: AccountRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="firstword.accounts"):
        resolution = resolve(registry, CallHints(job_metadata='{"account": "acme-widgets"}'))
    assert resolution.account.id == "harbor-dental"
    assert resolution.source == "default"
    assert "unknown account 'acme-widgets' in job metadata" in caplog.text


@pytest.mark.parametrize(
    "garbage", ["{not json", "[1, 2, 3]", '{"account": 42}', "Hello World!!", '"quoted"']
)
def test_garbage_metadata_is_ignored_with_warning(
    registry: AccountRegistry, caplog: pytest.LogCaptureFixture, garbage: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="firstword.accounts"):
        resolution = resolve(
            registry, CallHints(job_metadata=garbage, room_name="bluebird-bikes-9")
        )
    assert resolution.account.id == "bluebird-bikes"  # the next source still counts
    assert "ignoring job metadata" in caplog.text


def test_other_json_metadata_is_not_a_warning(
    registry: AccountRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="firstword.accounts"):
        resolve(registry, CallHints(room_metadata='{"theme": "dark"}', room_name="harbor-dental"))
    assert "ignoring" not in caplog.text


def test_console_stand_ins_are_not_account_hints(registry: AccountRegistry) -> None:
    from types import SimpleNamespace
    from unittest.mock import MagicMock

    from agent.worker.job import _caller_hints

    ctx = SimpleNamespace(job=SimpleNamespace(metadata=MagicMock()), room=MagicMock())
    caller = SimpleNamespace(metadata=MagicMock(), attributes=MagicMock())
    hints = _caller_hints(ctx, caller)  # type: ignore[arg-type]
    assert hints == CallHints()
    assert resolve(registry, hints).source == "default"
