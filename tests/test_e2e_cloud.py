"""End to end with cloud engines: the real LiveKit server, worker and caller over WebRTC,
with Google STT, Gemini and ElevenLabs served by the loopback stand-ins through the real
plugins; then the same call with the cloud failing, which the caller must not notice."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.accounts import AccountRegistry
from standins import Standins
from tests.cloud_support import cloud_account
from tests.e2e_support import log_records, running_worker
from tests.test_e2e import assert_greeted, call

pytestmark = pytest.mark.e2e
QUESTION = "How much does a teeth cleaning cost?"


@pytest.fixture(scope="module")
def cloud_worker(
    livekit_server: str,
    standins: Standins,
    registry: AccountRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    accounts = tmp_path_factory.mktemp("cloud-accounts")
    account = cloud_account(registry.accounts["harbor-dental"]).model_copy(
        update={"noise_cancellation": "auto"}
    )
    (accounts / "harbor-dental.yaml").write_text(yaml.safe_dump(account.model_dump(mode="json")))
    env = {
        **standins.env(),
        "FIRSTWORD_ACCOUNTS_DIR": str(accounts),
        "FIRSTWORD_CACHE_DIR": str(tmp_path_factory.mktemp("cloud-cache")),
        "FIRSTWORD_BREAKER_COOLDOWN": "60",
    }
    with running_worker(tmp_path_factory.mktemp("worker") / "worker.log", env) as log:
        yield log


def _answer(report: dict) -> str:
    assert report["turns"][0]["latency_s"] is not None, "no answer"
    return str(report["turns"][0]["answer"]).lower()


def test_a_call_on_cloud_engines(
    cloud_worker: Path, standins: Standins, registry: AccountRegistry, tmp_path: Path
) -> None:
    standins.all_healthy(stt=0.3, llm=0.4, tts=0.15)
    gemini_before = len(standins.gemini.requests)
    report = call(tmp_path, "--account", "harbor-dental", "--question", QUESTION)
    assert_greeted(report, registry.accounts["harbor-dental"])
    heard = _answer(report)
    assert "cleaning" in heard and ("120" in heard or "hundred" in heard), heard
    # Each cloud engine took part: Google heard the question, Gemini answered, ElevenLabs spoke.
    assert any("cleaning" in t.lower() for t in standins.speech.transcripts)
    assert len(standins.gemini.requests) > gemini_before
    assert any("120" in t or "cleaning" in t for t in standins.elevenlabs.texts)
    records = log_records(cloud_worker)
    started = [r for r in records if "cloud" in r and r.get("account") == "harbor-dental"]
    assert started, "the call did not report its cloud engines"


# Serial (scripts/test.sh): its three failovers race the framework's fallback adapters. Beside
# another test on the 2 cores that race logged "Task was destroyed" (the Google plugin, above)
# in one full run and, in another, the STT FallbackAdapter pushing a frame into our guarded
# stream after its input had ended ("error happened in forwarding input"); the call itself was
# answered both times. Alone, as before the two-process runs, neither was seen.
@pytest.mark.serial
def test_a_call_survives_the_cloud_failing(
    cloud_worker: Path, standins: Standins, registry: AccountRegistry, tmp_path: Path
) -> None:
    standins.speech.faults.hang = True
    standins.gemini.faults.hang = True
    standins.elevenlabs.faults.error = 503
    try:
        started = time.monotonic()
        report = call(tmp_path, "--account", "harbor-dental", "--question", QUESTION)
    finally:
        standins.all_healthy()
    assert_greeted(report, registry.accounts["harbor-dental"])
    heard = _answer(report)
    assert "cleaning" in heard and ("120" in heard or "hundred" in heard), heard
    # Three failovers fit in the timeouts: nowhere near the plugins' own 10 s each.
    assert report["turns"][0]["latency_s"] < 6.0, report["turns"][0]
    assert time.monotonic() - started < 120
    # The question was heard from Whisper's transcript once Google was late (the STT hedge),
    # not after the STT timeout.
    hedged = [r for r in log_records(cloud_worker) if r.get("hedge_winner") == "local"]
    assert any("google-stt" in str(r.get("provider")) for r in hedged), hedged
    # livekit-plugins-google 1.8.9's `input_generator` (stt.py) starts a task on its stop
    # event and leaves it pending when the gRPC call it feeds is cancelled, which the hanging
    # Google here makes happen; the collector may then report that one task (seen once, in the
    # first full run of the two-process suite). Only a destroyed Event.wait() task is excused.
    log = "\n".join(
        line
        for line in cloud_worker.read_text().splitlines()
        if not re.search(r"Task was destroyed but it is pending!.*coro=<Event\.wait\(\)", line)
    )
    for bad in ("Traceback", "Task was destroyed", "unhandled exception"):
        assert bad not in log, f"{bad!r} in the worker log:\n{log[-3000:]}"
