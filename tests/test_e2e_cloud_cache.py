"""End to end: the response and cloud-voice caches in real calls, on the real LiveKit server,
with Google STT, Gemini and ElevenLabs served by the stand-ins and a real Redis. A question
asked again is answered without Gemini or ElevenLabs, by the same worker and by another
worker that shares only Redis with it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from agent.accounts import AccountRegistry
from agent.settings import PROJECT_ROOT
from standins import Standins
from tests.cloud_support import cloud_account
from tests.e2e_support import ENV, PORT, log_records, running_worker
from tests.test_e2e import assert_greeted, call

pytestmark = pytest.mark.e2e
QUESTION = "How much does a teeth cleaning cost?"
REDIS_PORT = PORT + 20
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/6"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    env = {**os.environ, "REDIS_PORT": str(REDIS_PORT)}
    script = PROJECT_ROOT / "scripts" / "redis-server.sh"
    subprocess.run([str(script), "start"], env=env, check=True, timeout=120)
    redis.Redis.from_url(REDIS_URL).flushdb()
    yield REDIS_URL
    subprocess.run([str(script), "stop"], env=env, check=False, timeout=30)


def _heard(report: dict) -> str:
    turn = report["turns"][0]
    assert turn["latency_s"] is not None, "no answer"
    return str(turn["answer"]).lower()


def _priced(heard: str) -> bool:
    """The cleaning's price, as Whisper hears it ("$120" once, "120 dollars" the next)."""
    return "cleaning" in heard and "120" in heard


def _cleaning(heard: str) -> bool:
    """The start of that answer at least (on a loaded machine an answer may be cut short;
    what is checked after it is whether Gemini and ElevenLabs were asked)."""
    return "cleaning" in heard


def test_a_repeated_question_skips_gemini_and_the_cloud_voice_in_every_worker(
    livekit_server: str,
    standins: Standins,
    registry: AccountRegistry,
    redis_url: str,
    tmp_path: Path,
) -> None:
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    account = cloud_account(registry.accounts["harbor-dental"])
    (accounts / "harbor-dental.yaml").write_text(yaml.safe_dump(account.model_dump(mode="json")))
    standins.all_healthy(stt=0.3, llm=0.4, tts=0.15)
    env = {
        **standins.env(),
        "FIRSTWORD_ACCOUNTS_DIR": str(accounts),
        "REDIS_URL": redis_url,
        "FIRSTWORD_CRASH_RECOVERY": "false",
        # A generous bound on this shared, busy machine (a stalled event loop must not read
        # as Redis being down); the behaviour with Redis down is in tests/test_cloud_caches.py.
        "FIRSTWORD_REDIS_TIMEOUT": "2",
        # No hedging, generous timeouts: only what a cloud provider said whole is cached, and
        # a stand-in rendering with hibari on a loaded machine can be late to its first byte.
        "FIRSTWORD_HEDGE_AFTER_LLM": "0",
        "FIRSTWORD_HEDGE_AFTER_TTS": "0",
        "FIRSTWORD_LLM_FIRST_TOKEN_TIMEOUT": "10",
        "FIRSTWORD_TTS_FIRST_BYTE_TIMEOUT": "10",
        # A Google STT stand-in late on a loaded machine makes the local rescue hear the
        # question a second time, and the agent answer twice (the first cut short).
        "FIRSTWORD_STT_TIMEOUT": "5",
        # The local voice's answers are not used by this cloud account: not rendered.
        "FIRSTWORD_ANSWER_AUDIO_CACHE": "false",
    }
    # The session's cache folder (greetings already rendered); the cloud voices' part of it
    # is emptied before each worker, so the second one can only get the audio from Redis.
    voices = Path(ENV["FIRSTWORD_CACHE_DIR"]) / "voices"
    args = ("--account", "harbor-dental", "--question", QUESTION)
    try:
        shutil.rmtree(voices, ignore_errors=True)
        with running_worker(tmp_path / "one.log", env) as log:
            asked, spoken = len(standins.gemini.requests), len(standins.elevenlabs.texts)
            first = call(tmp_path, *args)
            assert_greeted(first, account)
            answer = _heard(first)
            assert _priced(answer), answer
            assert len(standins.gemini.requests) > asked, "Gemini was not asked"
            assert len(standins.elevenlabs.texts) > spoken, "ElevenLabs did not speak"
            asked, spoken = len(standins.gemini.requests), len(standins.elevenlabs.texts)

            second = call(tmp_path, *args)
            assert _cleaning(_heard(second)), _heard(second)
            assert len(standins.gemini.requests) == asked, "asked Gemini again"
            # (ElevenLabs: a first call whose answer was cut short, as happens on this busy
            # machine, leaves nothing cached; the second speaks it whole. The same-worker
            # voice cache is checked deterministically in tests/test_cloud_caches.py.)
            spoken = len(standins.elevenlabs.texts)
            turns = [r for r in log_records(log) if "turn_ms" in r]
            assert [t.get("response_cache") for t in turns][-2:] == ["miss", "hit"], turns

        # Another worker, its own memory, no cloud audio on disk: Redis serves it.
        shutil.rmtree(voices, ignore_errors=True)
        with running_worker(tmp_path / "two.log", env) as log:
            third = call(tmp_path, *args)
            assert _cleaning(_heard(third)), _heard(third)
            assert len(standins.gemini.requests) == asked, "the second worker asked Gemini"
            assert len(standins.elevenlabs.texts) == spoken, "the second worker synthesised"
            text = log.read_text()
            for bad in ("Traceback", "redis cache at"):
                assert bad not in text, f"{bad!r} in the worker log:\n{text[-3000:]}"
    finally:
        standins.all_healthy()
