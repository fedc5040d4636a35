"""End to end: a worker killed mid-call (the call is picked up again), and two server nodes.

Real LiveKit server(s), real Redis, real workers; the caller is the simulator's recorder and
microphone driven from here, so that it can stay in the call while a worker is killed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from livekit import api, rtc

from agent.accounts import AccountRegistry
from agent.engines.whisper_stt import WhisperSTT
from agent.settings import PROJECT_ROOT, Settings
from caller.mic import Microphone
from caller.recorder import RATE, Recorder
from tests.e2e_support import PORT, log_records, metrics_url, worker_process
from tests.helpers import similarity

pytestmark = pytest.mark.e2e

REDIS_PORT = PORT + 20
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
# Multi-node mode refuses the dev key: a real key with a 32+ character secret.
CLUSTER_KEY = "firstword-test"
CLUSTER_SECRET = "firstword-test-secret-0123456789abcdef"
NODE_PORTS = (PORT + 40, PORT + 50)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    env = {**os.environ, "REDIS_PORT": str(REDIS_PORT)}
    script = PROJECT_ROOT / "scripts" / "redis-server.sh"
    subprocess.run([str(script), "start"], env=env, check=True, timeout=120)
    yield REDIS_URL
    subprocess.run([str(script), "stop"], env=env, check=False, timeout=30)


@contextmanager
def worker(log: Path, env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A registered worker process (so that the test can kill -9 it)."""
    with worker_process(log, {"FIRSTWORD_JOB_EXECUTOR": "thread", **env}) as proc:
        yield proc


class LiveCall:
    """A caller that stays in the room and records what it hears, with arrival times."""

    def __init__(self, room: rtc.Room, recorder: Recorder, name: str) -> None:
        self.room, self.recorder, self.name = room, recorder, name

    async def heard_after(self, after: float, within_s: float) -> tuple[int, float] | None:
        return await self.recorder.wait_speech_start(after, within_s)

    async def speech_end(self, start: int) -> int:
        return await self.recorder.wait_speech_end(start, 1.0, 30.0)


@asynccontextmanager
async def live_call(url: str, key: str, secret: str, account: str) -> AsyncIterator[LiveCall]:
    name = f"{account}-{uuid.uuid4().hex[:6]}"
    token = (
        api.AccessToken(key, secret)
        .with_identity(f"caller-{uuid.uuid4().hex[:6]}")
        .with_grants(api.VideoGrants(room_join=True, room=name))
        .to_jwt()
    )
    room, recorder, mic = rtc.Room(), Recorder(), Microphone()
    tasks: set[asyncio.Task[None]] = set()

    @room.on("track_subscribed")
    def _on_track(track: rtc.Track, *_: object) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.add(asyncio.create_task(recorder.consume(track)))

    await room.connect(url, token)
    try:
        track = rtc.LocalAudioTrack.create_audio_track("microphone", mic.source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        mic.start()
        yield LiveCall(room, recorder, name)
    finally:
        await mic.aclose()
        await room.disconnect()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _lease_written(redis_url: str, room: str) -> None:
    from redis import asyncio as aioredis

    from agent.worker.recovery import lease_key

    client = aioredis.from_url(redis_url)
    try:
        for _ in range(100):
            if await client.exists(lease_key(room)):
                return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise AssertionError(f"no recovery lease for {room} within 5 s")


def _counter(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_killed_worker_call_is_picked_up_by_the_survivor(
    livekit_server: str,
    redis_url: str,
    registry: AccountRegistry,
    whisper: WhisperSTT,
    settings: Settings,
    tmp_path: Path,
) -> None:
    account = registry.accounts["harbor-dental"]
    env = {"REDIS_URL": redis_url}
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    with worker(logs[0], env) as proc_a, worker(logs[1], env) as proc_b:
        async with live_call(livekit_server, "devkey", "secret", account.id) as call:
            start = await call.heard_after(0.0, 20.0)
            assert start is not None, "no greeting"
            await call.speech_end(start[0])
            # Which worker has the call: its log names the room.
            owner = next(i for i, log in enumerate(logs) if call.name in log.read_text())
            victim = proc_a if owner == 0 else proc_b
            survivor_log = logs[1 - owner]
            # The call's lease is written after its first word: killed before it, there
            # would be nothing to pick up.
            await _lease_written(redis_url, call.name)

            killed_at, killed_wall = time.perf_counter(), time.time()
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            again = await call.heard_after(killed_at, 15.0)
            assert again is not None, "nobody picked the call up"
            pickup_s = again[1] - killed_at
            end = await call.speech_end(again[0])
            line = await asyncio.to_thread(
                whisper.transcribe_pcm, call.recorder.audio(again[0], end), RATE, "en"
            )
            print(f"\ncrash pick-up, heard by the caller {pickup_s * 1000:.0f} ms after kill -9")
            for record in log_records(survivor_log):
                if "picked up again" in record.get("message", "") or record.get("resumed"):
                    keys = ("message", "remove_ms", "dispatch_ms", "greeting_cached", "timeline_ms")
                    logged = datetime.fromisoformat(record["timestamp"]).timestamp()
                    print(
                        f"logged {(logged - killed_wall) * 1000:.0f} ms after the kill:",
                        {k: record[k] for k in keys if k in record},
                    )
            assert similarity(line, settings.resume_line) >= 0.6, line
            assert pickup_s < 6.0, f"picked up after {pickup_s:.1f} s"
            assert _counter(metrics_url(survivor_log), "firstword_jobs_redispatched_total") == 1

        # New calls go to the survivor at once.
        async with live_call(livekit_server, "devkey", "secret", account.id) as call:
            assert await call.heard_after(0.0, 10.0) is not None, "new call not answered"
            assert call.name in survivor_log.read_text()


@pytest.fixture(scope="module")
def cluster(redis_url: str) -> Iterator[list[str]]:
    """Two livekit-server nodes in distributed mode on one Redis."""
    script = PROJECT_ROOT / "scripts" / "livekit-server.sh"
    envs = [
        {
            **os.environ,
            "LIVEKIT_PORT": str(port),
            "LIVEKIT_REDIS": f"127.0.0.1:{REDIS_PORT}",
            "LIVEKIT_API_KEY": CLUSTER_KEY,
            "LIVEKIT_API_SECRET": CLUSTER_SECRET,
        }
        for port in NODE_PORTS
    ]
    try:
        for env in envs:
            subprocess.run([str(script), "start"], env=env, check=True, timeout=600)
        yield [f"ws://127.0.0.1:{port}" for port in NODE_PORTS]
    finally:
        for env in envs:
            subprocess.run([str(script), "stop"], env=env, check=False, timeout=30)


async def test_two_server_nodes_on_redis_answer_calls_on_both(
    cluster: list[str], registry: AccountRegistry, tmp_path: Path
) -> None:
    account = registry.accounts["harbor-dental"]
    keys = {"LIVEKIT_API_KEY": CLUSTER_KEY, "LIVEKIT_API_SECRET": CLUSTER_SECRET}
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    # Each node has a worker; a call reaches whichever the server picks, across nodes
    # through the cluster's Redis.
    with (
        worker(logs[0], {**keys, "LIVEKIT_URL": cluster[0]}),
        worker(logs[1], {**keys, "LIVEKIT_URL": cluster[1]}),
    ):
        for url in (*cluster, *cluster, *cluster):
            async with live_call(url, CLUSTER_KEY, CLUSTER_SECRET, account.id) as call:
                heard = await call.heard_after(0.0, 15.0)
                assert heard is not None, f"call on {url} not answered"
                assert any(call.name in log.read_text() for log in logs)
