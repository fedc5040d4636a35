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
from tests.helpers import similarity
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


def _same(heard: str, answer: str) -> bool:
    """The same answer, as Whisper hears it ("$120" once, "120 dollars" the next time)."""
    return similarity(heard, answer) >= 0.7 and "120" in heard


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
            assert "cleaning" in answer and "120" in answer, answer
            assert len(standins.gemini.requests) > asked, "Gemini was not asked"
            assert len(standins.elevenlabs.texts) > spoken, "ElevenLabs did not speak"
            asked, spoken = len(standins.gemini.requests), len(standins.elevenlabs.texts)

            second = call(tmp_path, *args)
            assert _same(_heard(second), answer), (_heard(second), answer)
            assert len(standins.gemini.requests) == asked, "asked Gemini again"
            assert len(standins.elevenlabs.texts) == spoken, "synthesised the answer again"
            turns = [r for r in log_records(log) if "turn_ms" in r]
            assert [t.get("response_cache") for t in turns][-2:] == ["miss", "hit"], turns

        # Another worker, its own memory, no cloud audio on disk: Redis serves it.
        shutil.rmtree(voices, ignore_errors=True)
        with running_worker(tmp_path / "two.log", env) as log:
            third = call(tmp_path, *args)
            assert _same(_heard(third), answer), (_heard(third), answer)
            assert len(standins.gemini.requests) == asked, "the second worker asked Gemini"
            assert len(standins.elevenlabs.texts) == spoken, "the second worker synthesised"
            text = log.read_text()
            for bad in ("Traceback", "redis cache at"):
                assert bad not in text, f"{bad!r} in the worker log:\n{text[-3000:]}"
    finally:
        standins.all_healthy()
