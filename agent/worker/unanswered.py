"""No caller left without an agent: rooms whose dispatch failed are dispatched again.

Why by hand: livekit-server v1.13.5 sends a room's job request once, when the room needs an
agent. If no worker is available at that moment (every worker reported full, or the only one
was still starting), the request fails ("failed to send job request: no servers available")
and nothing retries it: the caller sits in silence until they hang up. Marking workers
available promptly (`compat.CapacityAwareServer`) narrows that window; this closes it.

The sweep lists the server's rooms every `FIRSTWORD_UNANSWERED_SWEEP` s with LiveKit's own
APIs (RoomService.ListRooms / ListParticipants, AgentDispatchService.ListDispatch). A room is
unanswered when a caller (any non-agent participant) has been in it for
`FIRSTWORD_UNANSWERED_AFTER` s, no agent is in it, and none of its dispatches has a job that
is pending or running (an agent on its way). The sweeper then asks the server to dispatch the
room again (CreateDispatch, with the same agent name); the server gives the job to whichever
worker is available. A room with a dispatch made in the last `FIRSTWORD_UNANSWERED_AFTER` s
is left alone, so two sweepers (see below) do not dispatch one room twice, and a room keeps
being retried at that pace while its caller waits.

Who sweeps. A sweep costs one ListRooms plus one ListParticipants per room with people in
it, so if every worker swept, the server's API load would grow as workers x rooms (50
workers and 500 calls: ~25,000 calls a second, for a sweep that is almost always empty).
- With `REDIS_URL` set, one worker at a time sweeps for the fleet: the holder of a lease in
  Redis (agent/worker/sweep_lease.py), a TTL of `LEASE_INTERVALS` sweep intervals, extended by its
  holder each interval with a compare-and-extend script; a holder that dies or stalls stops
  extending it and another worker takes over within a TTL plus an interval. API calls then
  grow with rooms only (benchmarks/sweep.py measures both). The others ask Redis once an
  interval whether the lease is free (one round trip, no LiveKit call).
- Without `REDIS_URL` (one worker, the default demo), or while Redis does not answer, each
  worker sweeps, as before the lease: a caller left waiting is worse than the extra calls.
- A full worker (`has_room()` false) keeps the lease and still sweeps. The dispatch goes to
  the fleet, not to the sweeper: a full worker has told the server it is unavailable
  (`compat.CapacityAwareServer`), so the server gives the job to a worker with room, and if
  there is none the request fails and the room is tried again `FIRSTWORD_UNANSWERED_AFTER`
  s later (two API calls per waiting room, bounded by rooms, not workers). Handing the lease
  on when full would move it with every call that starts or ends on a busy fleet, and while
  every worker is full nobody would hold it, so the first worker to free up would first wait
  for the lease. When each worker sweeps locally, the old rule stays: only a worker with
  room sweeps, since the worker with room sweeps too and would answer.
- Why not LiveKit's webhooks (`participant_joined`, `room_started`): they would replace the
  polling with one event per caller, but the server delivers a webhook to a URL, so the fleet
  would need an HTTP endpoint behind a load balancer plus a server configuration change, each
  event still needs a timer and a look at the room `FIRSTWORD_UNANSWERED_AFTER` s later, and
  a webhook lost while that endpoint is down is a caller nobody dispatches: a sweep would
  still be needed behind it. The lease keeps the sweep's guarantee with one Redis key, so it
  is what we built (webhooks were not measured).

The watcher starts when the worker has registered with a LiveKit server
(`worker_registered`), not when it starts: `python agent.py console` runs the worker without
a server (`AgentServer.run(unregistered=True)` emits `worker_started` but never registers),
where a sweep could only fail every second.

A caller who waits here hears no agent until one joins (the hold line needs a job): the call
page rings meanwhile (web/src/call.js), and a phone caller's line rings until LiveKit's SIP
bridge answers, which it does when an agent's track is subscribed. What this module
guarantees is that the wait ends when a worker has room, not when the caller gives up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from livekit import api
from livekit.agents import AgentServer

from .. import metrics
from ..call.handoff.types import agent_joins
from ..server_api import server_api
from ..settings import Settings, get_settings
from .sweep_lease import SweepLease, Turn

logger = logging.getLogger("firstword.unanswered")

_API_TIMEOUT_S = 3.0
_SWEEP_TIMEOUT_S = 10.0
# The sweep lease lives this many sweep intervals: a holder that misses two renewals in a row
# (a stall, a slow Redis) keeps it; one that died is replaced within ~3-4 intervals.
LEASE_INTERVALS = 3
# livekit-server's room count refresh (5 s), with a margin.
_COUNT_REFRESH_MS = 6000
# Jobs in these states are an agent on its way to the room (or in it).
_UNDER_WAY = (api.JobStatus.JS_PENDING, api.JobStatus.JS_RUNNING)

# The watcher task of this worker process; asyncio.run() cancels and awaits it at exit.
_tasks: set[asyncio.Task[None]] = set()


def attach(server: AgentServer, has_room: Callable[[], bool]) -> None:
    """Run the watcher in this worker once it has registered with the LiveKit server
    (FIRSTWORD_UNANSWERED_AFTER > 0); never in console mode, which has no server.

    `has_room`: whether this worker would accept a call now (read on the worker's loop).
    """
    settings = get_settings()
    if settings.unanswered_after <= 0:
        return

    def _start(*_registration: object) -> None:
        if _tasks:
            return  # registered again after a reconnect: the watcher runs already
        task = asyncio.get_running_loop().create_task(
            Watcher(settings, has_room, lease_for(settings)).run(), name="unanswered"
        )
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    server.on("worker_registered", _start)


def lease_for(settings: Settings) -> SweepLease | None:
    """The fleet's sweep lease, or None without REDIS_URL (then this worker sweeps itself)."""
    if settings.redis_url is None:
        return None
    return SweepLease(
        settings.redis_url.get_secret_value(),
        ttl_s=LEASE_INTERVALS * settings.unanswered_sweep,
        # Off the call path: a bound looser than the caches' FIRSTWORD_REDIS_TIMEOUT costs no
        # caller anything, and a busy Redis does not turn every worker into a sweeper.
        timeout_s=min(0.5, settings.unanswered_sweep / 2),
    )


def unanswered(
    participants: list[api.ParticipantInfo],
    dispatches: list[api.AgentDispatch],
    now_ms: int,
    after_ms: int,
) -> bool:
    """Whether a room needs an agent dispatched again (see the module docstring)."""
    agent_kind = api.ParticipantInfo.Kind.AGENT
    if any(p.kind == agent_kind for p in participants):
        return False
    people = [p for p in participants if p.kind != agent_kind]
    if not people or now_ms - min(_joined_ms(p) for p in people) < after_ms:
        return False
    for dispatch in dispatches:
        if now_ms - dispatch.state.created_at // 1_000_000 < after_ms:
            return False  # just dispatched (by a worker's sweep, or the server itself)
        if any(job.state.status in _UNDER_WAY for job in dispatch.state.jobs):
            return False
    return True


def may_have_people(room: api.Room, now_ms: int) -> bool:
    """Whether a listed room is worth listing the participants of.

    `num_participants` in ListRooms is refreshed at most every 5 s (livekit-server
    `roomUpdateInterval`): a room made a moment ago reads 0 although its caller is in it, and
    skipping it on that count left the caller of a failed dispatch unanswered until their
    room was 5 s old (CI: two 5-second callers never heard a word). Young rooms are looked at.
    """
    created_ms = room.creation_time_ms or room.creation_time * 1000
    return room.num_participants > 0 or now_ms - created_ms < _COUNT_REFRESH_MS


def _joined_ms(participant: api.ParticipantInfo) -> int:
    return participant.joined_at_ms or participant.joined_at * 1000


class Watcher:
    """Sweeps the server's rooms when it is this worker's turn (see the module docstring);
    dispatches again those whose caller has no agent."""

    def __init__(
        self, settings: Settings, has_room: Callable[[], bool], lease: SweepLease | None = None
    ) -> None:
        self._settings = settings
        self._has_room = has_room
        self._after_ms = round(settings.unanswered_after * 1000)
        self._interval = settings.unanswered_sweep
        self.lease = lease

    async def run(self) -> None:
        lkapi = server_api(self._settings, timeout_s=_SWEEP_TIMEOUT_S)
        try:
            while True:
                # Jittered, so that workers started together do not ask in step.
                await asyncio.sleep(self._interval * random.uniform(0.8, 1.2))
                await self.tick(lkapi)
        finally:
            if self.lease is not None:
                await self.lease.aclose()  # handed on at once, not after its TTL
            await lkapi.aclose()

    async def my_turn(self) -> bool:
        """Whether this worker sweeps this interval (renewing or taking the lease)."""
        if self.lease is None:
            return self._has_room()
        turn = await self.lease.turn()
        if turn is Turn.UNREACHABLE:
            return self._has_room()  # fail open: sweep as if there were no Redis
        return turn is Turn.HOLD  # full or not: the dispatch goes to the fleet

    async def tick(self, lkapi: api.LiveKitAPI) -> bool:
        """One sweep interval: sweep if it is this worker's turn; whether it swept."""
        if not await self.my_turn():
            return False
        keeper = None
        if self.lease is not None and self.lease.held:
            # A sweep of many rooms may outlast the lease's TTL: keep it meanwhile, so that
            # a long sweep is not taken for a dead sweeper.
            keeper = asyncio.create_task(self._keep_lease(self.lease), name="sweep-lease")
        try:
            await asyncio.wait_for(self.sweep(lkapi), _SWEEP_TIMEOUT_S)
        except (OSError, api.TwirpError, TimeoutError) as e:
            logger.warning("unanswered-room sweep failed: %s", e)
        finally:
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
        return True

    async def _keep_lease(self, lease: SweepLease) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await lease.turn()

    async def sweep(self, lkapi: api.LiveKitAPI) -> int:
        """Dispatch every unanswered room again; how many were."""
        listed = await asyncio.wait_for(
            lkapi.room.list_rooms(api.ListRoomsRequest()), _API_TIMEOUT_S
        )
        dispatched = 0
        for room in listed.rooms:
            if not agent_joins(room.name):
                continue  # the desk's call-backs have no agent, by design
            if not may_have_people(room, int(time.time() * 1000)):
                continue
            participants = await asyncio.wait_for(
                lkapi.room.list_participants(api.ListParticipantsRequest(room=room.name)),
                _API_TIMEOUT_S,
            )
            people = list(participants.participants)
            now_ms = int(time.time() * 1000)
            if not unanswered(people, [], now_ms, self._after_ms):
                continue  # (dispatches are only read for rooms without an agent)
            dispatches = await asyncio.wait_for(
                lkapi.agent_dispatch.list_dispatch(room.name), _API_TIMEOUT_S
            )
            if not unanswered(people, dispatches, int(time.time() * 1000), self._after_ms):
                continue
            await asyncio.wait_for(
                lkapi.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(
                        agent_name=self._settings.agent_name, room=room.name
                    )
                ),
                _API_TIMEOUT_S,
            )
            dispatched += 1
            waited_ms = now_ms - min(
                _joined_ms(p) for p in people if p.kind != api.ParticipantInfo.Kind.AGENT
            )
            metrics.CALLS_REDISPATCHED_UNANSWERED.inc()
            logger.info(
                "caller had no agent; room dispatched again",
                extra={"room": room.name, "caller_waited_ms": waited_ms},
            )
        return dispatched
