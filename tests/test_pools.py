"""The per-process engine pool."""

from __future__ import annotations

import logging

import pytest

from agent.accounts import AccountRegistry
from agent.accounts.models import Voice
from agent.pools import load_pool
from agent.settings import Settings


def test_pool_serves_each_account_and_warns_once_about_a_missing_voice(
    registry: AccountRegistry, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    bikes = registry.accounts["bluebird-bikes"]
    # "fenrir" is a hibari voice that only downloads: not available offline.
    odd = bikes.model_copy(
        update={"id": "odd-voice", "voice": Voice(engine="hibari", name="fenrir")}
    )
    accounts = {**registry.accounts, odd.id: odd}
    with caplog.at_level(logging.WARNING, logger="firstword.pools"):
        pool = load_pool(settings, AccountRegistry(accounts, registry.default_id))
    warnings = [r for r in caplog.records if "odd-voice" in r.getMessage()]
    assert len(warnings) == 1 and "hibari:fenrir" in warnings[0].getMessage()

    assert pool.tts_for(odd.voice).model == "hibari:heart"
    assert pool.tts_for(bikes.voice).provider == "piper"
    assert set(pool.faq_indexes) == set(accounts)
    answer, _ = pool.llm_for(bikes).answer("Do you rent electric bikes?")
    assert "fifty dollars" in answer
