"""The unanswered-room sweep across a fleet (agent/worker/unanswered.py and sweep_lease.py).

Several Watchers share a real Redis (scripts/redis-server.sh) as workers of a fleet would, each
with its own lease client: one sweeps at a time, another takes over when the holder stops
renewing or leaves, and without Redis every worker sweeps as before. A recording stand-in
takes the place of the LiveKit server API: what is asserted is who sweeps, not what a sweep
finds (tests/test_unanswered.py, and the real server in benchmarks/sweep.py).
The watcher starts when the worker registers with a server, never in console mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from livekit import api
from livekit.agents import AgentServer, JobContext

from agent.settings import PROJECT_ROOT, Settings
from agent.worker import unanswered
from agent.worker.sweep_lease import SweepLease, Turn
from agent.worker.unanswered import Watcher

# REDIS_PORT when given (so that engineers sharing a machine pick their own), else the port the
# other Redis tests derive from FIRSTWORD_TEST_LIVEKIT_PORT.
REDIS_PORT = int(
    os.environ.get("REDIS_PORT") or int(os.environ.get("FIRSTWORD_TEST_LIVEKIT_PORT", "7980")) + 20
)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    env = {**os.environ, "REDIS_PORT": str(REDIS_PORT)}
    script = PROJECT_ROOT / "scripts" / "redis-server.sh"
    subprocess.run([str(script), "start"], env=env, check=True, timeout=120)
    yield f"redis://127.0.0.1:{REDIS_PORT}/0"
    subprocess.run([str(script), "stop"], env=env, check=False, timeout=30)


@pytest.fixture
def key() -> str:
    """A lease key of this test's own, so tests never see each other's holders."""
    return f"firstword:test:sweeper:{uuid.uuid4().hex}"


class _Rooms:
    def __init__(self) -> None:
        self.listed = 0
        self.swept = asyncio.Event()

    async def list_rooms(self, req: api.ListRoomsRequest) -> api.ListRoomsResponse:
        self.listed += 1
        self.swept.set()
        return api.ListRoomsResponse()


class _API:
    """The LiveKit server API as the sweep uses it; counts sweeps (one ListRooms each)."""

    def __init__(self) -> None:
        self.room = _Rooms()

    @property
    def sweeps(self) -> int:
        return self.room.listed


def _settings(**env: str) -> Settings:
    return Settings(FIRSTWORD_UNANSWERED_SWEEP="0.05", **env)  # type: ignore[arg-type]


def _watcher(url: str | None, key: str, *, ttl_s: float = 30.0, has_room: bool = True) -> Watcher:
    lease = None if url is None else SweepLease(url, ttl_s=ttl_s, timeout_s=1.0, key=key)
    return Watcher(_settings(), lambda: has_room, lease)


async def _tick(watcher: Watcher, lkapi: _API) -> bool:
    return await watcher.tick(lkapi)  # type: ignore[arg-type]


@pytest.fixture
async def fleet(redis_url: str, key: str) -> AsyncIterator[list[Watcher]]:
    watchers = [_watcher(redis_url, key, ttl_s=30.0) for _ in range(4)]
    yield watchers
    for watcher in watchers:
        assert watcher.lease is not None
        await watcher.lease.aclose()


async def test_one_watcher_sweeps_at_a_time_across_watchers_sharing_redis(
    fleet: list[Watcher],
) -> None:
    apis = [_API() for _ in fleet]
    for _round in range(3):
        swept = [await _tick(watcher, lkapi) for watcher, lkapi in zip(fleet, apis, strict=True)]
        assert swept.count(True) == 1, swept
    # The same one each round, and it did sweep (once a round).
    assert [lkapi.sweeps for lkapi in apis] == [3, 0, 0, 0]
    assert [w.lease is not None and w.lease.held for w in fleet] == [True, False, False, False]


async def test_another_watcher_takes_over_when_the_holder_stops_renewing(
    redis_url: str, key: str
) -> None:
    # A short TTL stands in for "a few sweep intervals"; the holder then stops renewing, as a
    # worker that died (kill -9) or stalls would.
    watchers = [_watcher(redis_url, key, ttl_s=0.3) for _ in range(3)]
    apis = [_API() for _ in watchers]
    holder, *others = watchers
    assert await _tick(holder, apis[0])
    assert not any([await _tick(w, lkapi) for w, lkapi in zip(others, apis[1:], strict=True)])

    taken_over = False
    async with asyncio.timeout(10):  # the TTL runs out in Redis: poll the others until then
        while not taken_over:
            await asyncio.sleep(0.05)
            swept = [await _tick(w, lkapi) for w, lkapi in zip(others, apis[1:], strict=True)]
            assert swept.count(True) <= 1, swept
            taken_over = any(swept)
    # The old holder, back, finds the lease taken and does not sweep.
    before = apis[0].sweeps
    assert not await _tick(holder, apis[0])
    assert apis[0].sweeps == before
    assert holder.lease is not None and not holder.lease.held
    for watcher in watchers:
        assert watcher.lease is not None
        await watcher.lease.aclose()


async def test_a_watcher_that_stops_hands_the_lease_on_at_once(
    redis_url: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The holder runs the real loop (a 0.05 s interval) and is cancelled, as at worker exit:
    # the lease is deleted then, so the next worker sweeps without waiting for the 30 s TTL.
    lkapi = _API()

    class _Made:  # what Watcher.run builds, in place of the server API
        def __init__(self) -> None:
            self.room = lkapi.room

        async def aclose(self) -> None:
            return None

    monkeypatch.setattr(unanswered, "server_api", lambda *_args, **_kwargs: _Made())
    holder = _watcher(redis_url, key, ttl_s=30.0)
    task = asyncio.create_task(holder.run())
    async with asyncio.timeout(10):
        await lkapi.room.swept.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.exists(key) == 0
    finally:
        await client.aclose()
    successor = _watcher(redis_url, key, ttl_s=30.0)
    assert await _tick(successor, _API())
    assert successor.lease is not None
    await successor.lease.aclose()


async def test_a_full_holder_still_sweeps_for_the_fleet(redis_url: str, key: str) -> None:
    # Its dispatches go to whichever worker the server finds available, not to itself.
    full = _watcher(redis_url, key, has_room=False)
    lkapi = _API()
    assert await _tick(full, lkapi)
    assert lkapi.sweeps == 1
    assert full.lease is not None
    await full.lease.aclose()


async def test_without_redis_every_worker_with_room_sweeps() -> None:
    watchers = [_watcher(None, "unused") for _ in range(3)]
    assert all([await _tick(w, _API()) for w in watchers])
    assert not await _tick(_watcher(None, "unused", has_room=False), _API())


async def test_redis_down_falls_back_to_local_sweeping_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://:hunter2@127.0.0.1:{probe.getsockname()[1]}/0"
    now = [0.0]
    lease = SweepLease(dead, ttl_s=3.0, timeout_s=0.5, clock=lambda: now[0])
    watcher = Watcher(_settings(), lambda: True, lease)
    lkapi = _API()
    caplog.set_level(logging.WARNING, logger="firstword.sweep_lease")
    for _ in range(5):
        assert await _tick(watcher, lkapi)
    assert lkapi.sweeps == 5
    warnings = [r for r in caplog.records if r.name == "firstword.sweep_lease"]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text
    now[0] += 61.0  # a minute later, still down: one reminder
    assert await _tick(watcher, lkapi)
    assert len([r for r in caplog.records if r.name == "firstword.sweep_lease"]) == 2
    # A full worker sweeping locally leaves it to the workers with room, as without Redis.
    assert not await _tick(Watcher(_settings(), lambda: False, lease), lkapi)
    await lease.aclose()


async def test_a_hanging_redis_is_bounded_and_the_worker_sweeps_locally() -> None:
    # A listener that never answers: the connection opens (the kernel accepts it) and the
    # script's reply never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        lease = SweepLease(url, ttl_s=3.0, timeout_s=0.2)
        assert await lease.turn() is Turn.UNREACHABLE
        lkapi = _API()
        assert await _tick(Watcher(_settings(), lambda: True, lease), lkapi)
        assert lkapi.sweeps == 1
        await lease.aclose()


async def test_the_lease_is_built_only_with_redis_url(redis_url: str) -> None:
    assert unanswered.lease_for(_settings()) is None
    lease = unanswered.lease_for(_settings(REDIS_URL=redis_url))
    assert lease is not None
    await lease.aclose()


async def test_the_watcher_starts_on_registration_never_in_console_mode() -> None:
    # Console mode runs the worker unregistered (cli.py: server.run(devmode=True,
    # unregistered=True)): `worker_started` fires, `worker_registered` never does.
    server = AgentServer(port=0)

    @server.rtc_session(agent_name="sweep-test")
    async def _entry(ctx: JobContext) -> None:
        return None

    unanswered.attach(server, lambda: True)
    started = asyncio.Event()
    server.on("worker_started", lambda: started.set())
    running = asyncio.create_task(server.run(devmode=True, unregistered=True))
    try:
        async with asyncio.timeout(30):
            await started.wait()
        assert not unanswered._tasks  # no sweep where there is no server
        # A worker that registers with a server starts it, once, however often it registers.
        server.emit("worker_registered", "AW_test", None)
        server.emit("worker_registered", "AW_test", None)
        assert len(unanswered._tasks) == 1
    finally:
        for task in list(unanswered._tasks):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await server.aclose()
        await asyncio.gather(running, return_exceptions=True)
