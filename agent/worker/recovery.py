"""Crash recovery: a call whose worker died is picked up by another worker within ~2 s.

Why by hand, and on Redis: livekit-server v1.13.5 notices at once that a worker's WebSocket
closed, but it only forgets the worker's jobs (`AgentHandler.deregisterWorker`: "TODO update
dispatch state"); nothing dispatches the room again. The dead agent's participant stays in the
room until its connection times out (~20 s), and the server's one later attempt (when that
participant leaves) is a TerminateJob to the dead worker. So the caller sits in silence.

What we do, with LiveKit's own APIs for the LiveKit part:
- every call keeps a record (`firstword:recovery:call:<room>`: the agent's identity, the
  account, the agent name) and a short lease (`...:lease:<room>`, refreshed four times per
  lease) in Redis while it lives; both are deleted when the call ends;
- every worker runs a watcher that sweeps the records: one whose lease ran out belongs to a
  call whose worker died. The first watcher to claim it (SET NX) removes the dead agent's
  participant (RoomService.RemoveParticipant) and asks the server to dispatch the room again
  (AgentDispatchService.CreateDispatch), marking the job as a resumed call in its metadata;
- the job that picks it up says the resume line, pre-rendered in the account's voice at
  prewarm, instead of the greeting.
Per-call leases (not per-worker ones) hold for both executors: with the process executor a
call's process is what dies. Off unless REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from livekit import api
from livekit.agents import AgentServer, JobContext
from redis.exceptions import RedisError

from .. import metrics
from ..accounts import AccountRegistry
from ..engines.pools import EnginePool
from ..server_api import server_api
from ..settings import Settings, get_settings

logger = logging.getLogger("firstword.recovery")

PREFIX = "firstword:recovery"
RESUMED_KEY = "firstword_resumed"
# How long a claim on an orphaned call keeps other watchers off it.
CLAIM_MS = 30_000
_API_TIMEOUT_S = 3.0

# The watcher task of this worker process; asyncio.run() cancels and awaits it at exit.
_tasks: set[asyncio.Task[None]] = set()


def call_key(room: str) -> str:
    return f"{PREFIX}:call:{room}"


def lease_key(room: str) -> str:
    return f"{PREFIX}:lease:{room}"


def claim_key(room: str) -> str:
    return f"{PREFIX}:claim:{room}"


def enabled(settings: Settings) -> bool:
    return settings.crash_recovery and settings.redis_url is not None


def _redis(settings: Settings) -> aioredis.Redis:
    assert settings.redis_url is not None
    return aioredis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
    )


def is_resumed(job_metadata: str) -> bool:
    """Whether this job picks up a call whose worker died (set by the watcher's dispatch)."""
    try:
        data = json.loads(job_metadata) if job_metadata.strip().startswith("{") else None
    except ValueError:
        return False
    return isinstance(data, dict) and data.get(RESUMED_KEY) is True


def prepare_resume_lines(pool: EnginePool, registry: AccountRegistry, settings: Settings) -> int:
    """Render the resume line in every account's voice into the greeting cache (blocking)."""
    if not enabled(settings):
        return 0
    voices = [pool.voice_for(account.voice) for account in registry.accounts.values()]
    unique = {id(voice): voice for voice in voices}.values()
    return sum(pool.greetings.prepare(voice, settings.resume_line) for voice in unique)


# -- the call's side: a record and a lease while the call lives -------------------------------


def track_call(ctx: JobContext, account_id: str) -> None:
    """Keep this call's record and lease in Redis until the job ends (no-op without Redis).

    Called once the first word is on its way: one Redis round trip is not on that path.
    """
    settings = get_settings()
    if not enabled(settings):
        return
    room = ctx.room.name
    record: dict[Any, Any] = {
        "agent": ctx.room.local_participant.identity,
        "account": account_id,
        "agent_name": settings.agent_name,
        "since": str(time.time()),
    }
    client = _redis(settings)
    task = asyncio.create_task(_hold_lease(client, room, record, settings.recovery_lease_ms))

    async def _release() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await client.delete(call_key(room), lease_key(room))
        except (RedisError, OSError) as e:
            logger.warning("could not release the call's recovery record: %s", e)
        finally:
            await client.aclose()

    ctx.add_shutdown_callback(_release)


async def _hold_lease(
    client: aioredis.Redis, room: str, record: dict[Any, Any], lease_ms: int
) -> None:
    written = False
    while True:
        try:
            if not written:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.delete(call_key(room))
                    pipe.hset(call_key(room), mapping=record)
                    pipe.set(lease_key(room), "1", px=lease_ms)
                    # A resumed call is picked up: its claim can go.
                    pipe.delete(claim_key(room))
                    await pipe.execute()
                written = True
            else:
                await client.set(lease_key(room), "1", px=lease_ms)
        except (RedisError, OSError) as e:
            logger.warning("could not renew the call's recovery lease: %s", e)
        await asyncio.sleep(lease_ms / 4000)


# -- the workers' side: find calls whose lease ran out and dispatch them again ---------------


def attach(server: AgentServer) -> None:
    """Run the watcher in this worker once it has started (no-op without Redis)."""
    settings = get_settings()
    if not enabled(settings):
        return

    def _start() -> None:
        task = asyncio.get_running_loop().create_task(Watcher(settings).run(), name="recovery")
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    server.on("worker_started", _start)


class Watcher:
    """Sweeps the call records; re-dispatches the calls whose worker stopped renewing."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._interval = settings.recovery_lease_ms / 4000

    async def run(self) -> None:
        client = _redis(self._settings)
        lkapi = server_api(self._settings, timeout_s=10.0)
        logger.info("crash recovery watching", extra={"lease_ms": self._settings.recovery_lease_ms})
        try:
            while True:
                try:
                    await asyncio.wait_for(self.sweep(client, lkapi), timeout=10.0)
                except (RedisError, OSError, api.TwirpError, TimeoutError) as e:
                    logger.warning("crash recovery sweep failed: %s", e)
                await asyncio.sleep(self._interval)
        finally:
            await client.aclose()
            await lkapi.aclose()

    async def sweep(self, client: aioredis.Redis, lkapi: api.LiveKitAPI) -> int:
        """Pick up every orphaned call; how many were dispatched again."""
        picked = 0
        prefix = call_key("")
        async for key in client.scan_iter(match=f"{prefix}*", count=500):
            room = key[len(prefix) :]
            if await client.exists(lease_key(room)):
                continue
            if not await client.set(claim_key(room), "1", nx=True, px=CLAIM_MS):
                continue  # another watcher has it
            record: dict[Any, Any] = await client.hgetall(key)
            if record and await self._recover(client, lkapi, room, record):
                picked += 1
        return picked

    async def _recover(
        self, client: aioredis.Redis, lkapi: api.LiveKitAPI, room: str, record: dict[Any, Any]
    ) -> bool:
        started = time.monotonic()
        dead_agent = str(record.get("agent", ""))
        try:
            listed = await asyncio.wait_for(
                lkapi.room.list_participants(api.ListParticipantsRequest(room=room)),
                _API_TIMEOUT_S,
            )
        except api.TwirpError as e:
            if e.code != api.TwirpErrorCode.NOT_FOUND:
                raise
            listed = None
        agent_kind = api.ParticipantInfo.Kind.AGENT
        participants = list(listed.participants) if listed is not None else []
        people = [p for p in participants if p.kind != agent_kind]
        await client.delete(call_key(room))
        if not people:
            logger.info("orphaned call's caller has gone; nothing to pick up", extra={"room": room})
            return False
        if any(p.identity == dead_agent for p in participants):
            # The dead agent's participant would linger ~20 s (a silent track to the caller).
            with contextlib.suppress(api.TwirpError):
                await asyncio.wait_for(
                    lkapi.room.remove_participant(
                        api.RoomParticipantIdentity(room=room, identity=dead_agent)
                    ),
                    _API_TIMEOUT_S,
                )
        removed = time.monotonic()
        metadata = {"account": record.get("account", ""), RESUMED_KEY: True}
        try:
            await asyncio.wait_for(
                lkapi.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(
                        agent_name=str(record.get("agent_name", "")),
                        room=room,
                        metadata=json.dumps(metadata),
                    )
                ),
                _API_TIMEOUT_S,
            )
        except (api.TwirpError, TimeoutError):
            # Put it back for the next sweep (ours or another worker's).
            await client.hset(call_key(room), mapping=record)
            await client.delete(claim_key(room))
            raise
        metrics.JOBS_REDISPATCHED.inc()
        logger.info(
            "call picked up again after its worker died",
            extra={
                "room": room,
                "dead_agent": dead_agent,
                "remove_ms": round((removed - started) * 1000),
                "dispatch_ms": round((time.monotonic() - removed) * 1000),
            },
        )
        return True
