"""End to end, issue 3: greetings from the audio cache, the call timeline and the metrics.

Each test starts its own worker on the real LiveKit server, with its own accounts folder
and cache folder, and calls it over WebRTC with the caller simulator.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.engines.whisper_stt import WhisperSTT
from agent.settings import Settings
from caller.simulator import CallOptions, CallReport, run_call
from tests.e2e_support import URL, log_records, metrics_url, running_worker
from tests.helpers import similarity

pytestmark = pytest.mark.e2e
# Each test starts its own worker: under pytest-xdist they are handed out one by one.
SPLIT_ACROSS_PROCESSES = True

GYM_GREETING = "Hello, this is Green Gym. How can I help you?"
GYM_GREETING_2 = "Good day from Green Gym. What can I do for you?"
BAD_LOG = ("Traceback", "Task was destroyed", "Unclosed", "unhandled exception", "panicked")


def _settings() -> Settings:
    return Settings(LIVEKIT_URL=URL, LIVEKIT_API_KEY="devkey", LIVEKIT_API_SECRET="secret")


def _write_gym(accounts: Path, greeting: str) -> None:
    source = (accounts / "bluebird-bikes.yaml").read_text()
    text = source.replace("id: bluebird-bikes", "id: green-gym").replace("0199", "0777")
    text = re.sub(r"(?m)^greeting: .*$", f"greeting: {greeting}", text)
    (accounts / "green-gym.yaml").write_text(text)


async def _call(whisper: WhisperSTT, account: str, *, hang_up: bool = False) -> CallReport:
    def transcribe(audio: np.ndarray, rate: int) -> str:
        return whisper.transcribe_pcm(audio, rate, "en") if audio.size else ""

    # 2 s of quiet ends the greeting: one not cached yet is synthesised sentence by sentence
    # while it plays, and beside another test process a sentence came 1-2 s after the one
    # before (the caller heard "Hello, this is Green Gym." and stopped listening).
    options = CallOptions(account=account, end_silence_s=2.0)
    return await run_call(_settings(), [], None if hang_up else transcribe, options)


def _timeline(log: Path, room: str) -> dict[str, Any]:
    for _ in range(50):
        lines = [r for r in log_records(log) if r.get("room") == room and "timeline_ms" in r]
        if lines:
            assert len(lines) == 1, lines  # one line per call
            return lines[0]
        # The line is written when the first frame goes out; the caller may hear it first.
        time.sleep(0.1)
    raise AssertionError(f"no timeline line for {room}")


def _metrics(log: Path) -> str:
    with urllib.request.urlopen(metrics_url(log), timeout=5) as response:
        return str(response.read().decode())


def _value(metrics: str, name: str, **labels: str) -> float:
    """One sample of the worker's exposition (the worker is a fresh process: counts from 0)."""
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in the metrics:\n{metrics[:2000]}")


async def test_greeting_cache_new_account_restart_and_changed_text(
    livekit_server: str, accounts_copy: Path, tmp_path: Path, whisper: WhisperSTT
) -> None:
    cache = tmp_path / "cache"
    env = {
        "FIRSTWORD_ACCOUNTS_DIR": str(accounts_copy),
        "FIRSTWORD_CACHE_DIR": str(cache),
        "FIRSTWORD_ACCOUNT_TTL": "0",
    }
    log = tmp_path / "worker-1.log"
    with running_worker(log, env):
        # Prewarm rendered the two known greetings into the empty cache.
        prewarm = [r for r in log_records(log) if r.get("message") == "process prewarmed"]
        assert prewarm[0]["greetings_synthesised"] == 2
        # An account added while the worker runs has no cached greeting: it still greets.
        await asyncio.to_thread(_write_gym, accounts_copy, GYM_GREETING)
        first = await _call(whisper, "green-gym")
        assert similarity(first.greeting, GYM_GREETING) >= 0.8, first.greeting
        assert _timeline(log, first.room)["greeting_cached"] is False
        # ...and the second call plays it from the cache.
        second = await _call(whisper, "green-gym")
        assert similarity(second.greeting, GYM_GREETING) >= 0.8, second.greeting
        timeline = _timeline(log, second.room)
        assert timeline["greeting_cached"] is True
        stages = list(timeline["timeline_ms"])
        assert stages[0] == "job_received" and stages[-1] == "first_frame"

        metrics = await asyncio.to_thread(_metrics, log)
        ttfw = "firstword_time_to_first_word_seconds_count"
        assert _value(metrics, ttfw, account="green-gym") == 2
        assert _value(metrics, "firstword_greeting_cache_total", result="miss") == 1
        prewarms = [r for r in log_records(log) if r.get("message") == "process prewarmed"]
        assert _value(metrics, "firstword_prewarm_seconds_count") == len(prewarms)
        stage = "firstword_call_stage_seconds_count"
        assert _value(metrics, stage, stage="room_connected") == 2

    # A restarted worker finds every greeting on disk: nothing to synthesise.
    log = tmp_path / "worker-2.log"
    with running_worker(log, env):
        prewarm = [r for r in log_records(log) if r.get("message") == "process prewarmed"]
        assert prewarm[0]["greetings_synthesised"] == 0
        third = await _call(whisper, "green-gym")
        assert _timeline(log, third.room)["greeting_cached"] is True
        # A changed greeting is a new cache key: the caller hears the new text.
        await asyncio.to_thread(_write_gym, accounts_copy, GYM_GREETING_2)
        fourth = await _call(whisper, "green-gym")
        assert similarity(fourth.greeting, GYM_GREETING_2) >= 0.8, fourth.greeting
        assert _timeline(log, fourth.room)["greeting_cached"] is False
    text = await asyncio.to_thread(log.read_text)
    assert not [bad for bad in BAD_LOG if bad in text], text[-3000:]


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_caller_leaving_during_the_greeting_leaves_nothing_behind(
    livekit_server: str, tmp_path: Path, whisper: WhisperSTT, executor: str
) -> None:
    cache = tmp_path / "cache"
    log = tmp_path / "worker.log"
    env = {"FIRSTWORD_JOB_EXECUTOR": executor, "FIRSTWORD_CACHE_DIR": str(cache)}
    with running_worker(log, env):
        reports = [await _call(whisper, "harbor-dental", hang_up=True) for _ in range(2)]
        assert all(r.ttfw_s is not None for r in reports)
        # The job ends with the caller: no call stays active, in either executor.
        metrics = ""
        for _ in range(50):
            metrics = await asyncio.to_thread(_metrics, log)
            if _value(metrics, "firstword_active_calls") == 0:
                break
            await asyncio.sleep(0.2)
        assert _value(metrics, "firstword_active_calls") == 0, metrics
        ttfw = "firstword_time_to_first_word_seconds_count"
        assert _value(metrics, ttfw, account="harbor-dental") == 2
        # The conversation logs, attached after the first frame, still saw the call end. (A
        # call stops counting as active when its caller leaves, a moment before its session
        # closes and logs its usage: wait for those lines.)
        rooms: set[str] = set()
        for _ in range(50):
            records = await asyncio.to_thread(log_records, log)
            usage = [r for r in records if str(r.get("message", "")).startswith("call usage")]
            rooms = {r["room"] for r in usage}
            if rooms == {r.room for r in reports}:
                break
            await asyncio.sleep(0.2)
        assert rooms == {r.room for r in reports}
    text = await asyncio.to_thread(log.read_text)
    assert not [bad for bad in BAD_LOG if bad in text], text[-3000:]
