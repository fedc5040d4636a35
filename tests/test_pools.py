"""The per-process engine pool: one load, per-call providers over shared models."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.accounts import AccountRegistry
from agent.accounts.models import Voice
from agent.engines.pools import EnginePool, load_pool
from agent.settings import Settings


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def pool_and_logs(
    registry: AccountRegistry, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[EnginePool, list[logging.LogRecord], AccountRegistry]:
    bikes = registry.accounts["bluebird-bikes"]
    # "fenrir" is a hibari voice that only downloads: not available offline.
    odd = bikes.model_copy(
        update={"id": "odd-voice", "voice": Voice(engine="hibari", name="fenrir")}
    )
    accounts = AccountRegistry({**registry.accounts, odd.id: odd}, registry.default_id)
    cache = tmp_path_factory.mktemp("cache")
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logger = logging.getLogger("firstword.pools")
    logger.addHandler(handler)
    try:
        pool = load_pool(settings.model_copy(update={"cache_dir": cache}), accounts)
    finally:
        logger.removeHandler(handler)
    return pool, records, accounts


def test_pool_warns_once_about_a_missing_voice_and_falls_back(
    pool_and_logs: tuple[EnginePool, list[logging.LogRecord], AccountRegistry],
) -> None:
    pool, records, accounts = pool_and_logs
    warnings = [r for r in records if "odd-voice" in r.getMessage()]
    assert len(warnings) == 1 and "hibari:fenrir" in warnings[0].getMessage()
    assert pool.voice_for(accounts.accounts["odd-voice"].voice).model == "hibari:heart"
    assert pool.voice_for(accounts.accounts["bluebird-bikes"].voice).provider == "piper"
    assert all(pool.has_index(a) for a in accounts.accounts.values())


async def test_each_call_gets_its_own_providers_over_shared_models(
    pool_and_logs: tuple[EnginePool, list[logging.LogRecord], AccountRegistry],
) -> None:
    pool, _, accounts = pool_and_logs
    bikes = accounts.accounts["bluebird-bikes"]
    first, second = await pool.for_call(bikes), await pool.for_call(bikes)
    # A session subscribes to its providers' events: two calls must not share one object.
    for name in ("vad", "stt", "llm", "tts", "turn_detector"):
        assert getattr(first, name) is not getattr(second, name), name
    # ...but the loaded models (and their locks) are shared.
    assert first.stt._model is second.stt._model and first.stt._lock is second.stt._lock
    assert first.tts._lock is second.tts._lock is pool.voice_for(bikes.voice)._lock
    answer, _ = first.llm.answer("Do you rent electric bikes?")
    assert "fifty dollars" in answer


async def test_changed_faqs_get_a_new_index(
    pool_and_logs: tuple[EnginePool, list[logging.LogRecord], AccountRegistry],
) -> None:
    pool, _, accounts = pool_and_logs
    dental = accounts.accounts["harbor-dental"]
    extra = dental.faqs[0].model_copy(
        update={
            "id": "parking",
            "questions": ["Do you have parking?", "Where can I park?"],
            "answer": "Lot B.",
        }
    )
    changed = dental.model_copy(update={"faqs": [*dental.faqs, extra]})
    assert not pool.has_index(changed)
    engines = await pool.for_call(changed)
    assert engines.llm.answer("Is there somewhere to park my car?")[0] == "Lot B."
    assert pool.has_index(changed)


def test_prewarm_renders_every_known_greeting_once(
    pool_and_logs: tuple[EnginePool, list[logging.LogRecord], AccountRegistry],
    registry: AccountRegistry,
) -> None:
    pool, _, _ = pool_and_logs
    assert pool.prepare_greetings(registry) == 2
    assert pool.prepare_greetings(registry) == 0
    directory = pool.greetings._directory
    assert isinstance(directory, Path) and len(list(directory.glob("*.wav"))) == 2
