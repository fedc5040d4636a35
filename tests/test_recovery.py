"""Crash recovery's pieces: what marks a resumed job, and the watcher's sweep on a real Redis.

The sweep runs against a real Redis with a recording stand-in for the LiveKit server API
(the end-to-end test in test_e2e_recovery.py drives the real server).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from livekit import api

from agent.settings import PROJECT_ROOT, Settings
from agent.worker import recovery

REDIS_PORT = int(os.environ.get("FIRSTWORD_TEST_LIVEKIT_PORT", "7980")) + 20


def test_only_the_watchers_metadata_marks_a_resumed_job() -> None:
    assert recovery.is_resumed('{"account": "harbor-dental", "firstword_resumed": true}')
    assert not recovery.is_resumed("")
    assert not recovery.is_resumed("harbor-dental")
    assert not recovery.is_resumed('{"account": "harbor-dental"}')
    assert not recovery.is_resumed('{"firstword_resumed": "yes"}')
    assert not recovery.is_resumed("{not json")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    env = {**os.environ, "REDIS_PORT": str(REDIS_PORT)}
    script = PROJECT_ROOT / "scripts" / "redis-server.sh"
    subprocess.run([str(script), "start"], env=env, check=True, timeout=120)
    yield f"redis://127.0.0.1:{REDIS_PORT}/0"
    subprocess.run([str(script), "stop"], env=env, check=False, timeout=30)


class _Room:
    def __init__(self, participants: list[api.ParticipantInfo]) -> None:
        self.participants = participants
        self.removed: list[str] = []

    async def list_participants(self, req: api.ListParticipantsRequest) -> Any:
        return api.ListParticipantsResponse(participants=self.participants)

    async def remove_participant(self, req: api.RoomParticipantIdentity) -> None:
        self.removed.append(req.identity)


class _Dispatch:
    def __init__(self) -> None:
        self.created: list[api.CreateAgentDispatchRequest] = []

    async def create_dispatch(self, req: api.CreateAgentDispatchRequest) -> None:
        self.created.append(req)


class _API:
    def __init__(self, participants: list[api.ParticipantInfo]) -> None:
        self.room = _Room(participants)
        self.agent_dispatch = _Dispatch()


async def test_sweep_picks_up_only_calls_whose_lease_ran_out(redis_url: str) -> None:
    settings = Settings(REDIS_URL=redis_url)
    client = aioredis.from_url(redis_url, decode_responses=True)
    orphan, alive = f"orphan-{uuid.uuid4().hex[:6]}", f"alive-{uuid.uuid4().hex[:6]}"
    record: dict[Any, Any] = {"agent": "agent-dead", "account": "harbor-dental", "agent_name": ""}
    try:
        await client.hset(recovery.call_key(orphan), mapping=record)
        await client.hset(recovery.call_key(alive), mapping={**record, "agent": "agent-ok"})
        await client.set(recovery.lease_key(alive), "1", px=5000)
        people = [
            api.ParticipantInfo(identity="caller", kind=api.ParticipantInfo.Kind.STANDARD),
            api.ParticipantInfo(identity="agent-dead", kind=api.ParticipantInfo.Kind.AGENT),
        ]
        fake = _API(people)
        watcher = recovery.Watcher(settings)
        assert await watcher.sweep(client, fake) == 1  # type: ignore[arg-type]
        assert fake.room.removed == ["agent-dead"]
        (dispatch,) = fake.agent_dispatch.created
        assert dispatch.room == orphan
        assert recovery.is_resumed(dispatch.metadata)
        # Claimed: a second sweep (this or another worker's) does not dispatch it again.
        assert await watcher.sweep(client, fake) == 0  # type: ignore[arg-type]
        assert len(fake.agent_dispatch.created) == 1
    finally:
        keys = [f(r) for r in (orphan, alive) for f in (recovery.call_key, recovery.lease_key)]
        await client.delete(*keys, recovery.claim_key(orphan))
        await client.aclose()


async def test_sweep_drops_an_orphan_whose_caller_has_gone(redis_url: str) -> None:
    settings = Settings(REDIS_URL=redis_url)
    client = aioredis.from_url(redis_url, decode_responses=True)
    room = f"gone-{uuid.uuid4().hex[:6]}"
    try:
        await client.hset(recovery.call_key(room), mapping={"agent": "agent-dead"})
        agent = api.ParticipantInfo(identity="agent-dead", kind=api.ParticipantInfo.Kind.AGENT)
        fake = _API([agent])
        assert await recovery.Watcher(settings).sweep(client, fake) == 0  # type: ignore[arg-type]
        assert fake.agent_dispatch.created == []
        assert not await client.exists(recovery.call_key(room))
    finally:
        await client.delete(recovery.call_key(room), recovery.claim_key(room))
        await client.aclose()
