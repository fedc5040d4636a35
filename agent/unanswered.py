"""No caller left without an agent: rooms whose dispatch failed are dispatched again.

Why by hand: livekit-server v1.13.5 sends a room's job request once, when the room needs an
agent. If no worker is available at that moment (every worker reported full, or the only one
was still starting), the request fails ("failed to send job request: no servers available")
and nothing retries it: the caller sits in silence until they hang up. Marking workers
available promptly (`compat.CapacityAwareServer`) narrows that window; this closes it.

Each worker sweeps the server's rooms every `FIRSTWORD_UNANSWERED_SWEEP` s with LiveKit's own
APIs (RoomService.ListRooms / ListParticipants, AgentDispatchService.ListDispatch). A room is
unanswered when a caller (any non-agent participant) has been in it for
`FIRSTWORD_UNANSWERED_AFTER` s, no agent is in it, and none of its dispatches has a job that
is pending or running (an agent on its way). The worker then asks the server to dispatch the
room again (CreateDispatch, with the same agent name), but only while it has room for a call
itself: a full worker would only make the request fail again; a worker with room answers it
(the server gives the job to whichever worker is available). A room with a dispatch made in
the last `FIRSTWORD_UNANSWERED_AFTER` s is left alone, so workers sweeping together do not
dispatch one room twice, and a room keeps being retried at that pace while its caller waits.

A caller who waits here hears no agent until one joins (the hold line needs a job): the call
page rings meanwhile (web/src/call.js), and a phone caller's line rings until LiveKit's SIP
bridge answers, which it does when an agent's track is subscribed. What this module
guarantees is that the wait ends when a worker has room, not when the caller gives up.
The sweep costs one ListRooms plus one ListParticipants per room with people in it; for many
rooms per server, a `participant_joined` webhook would find the same rooms without polling.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from livekit import api
from livekit.agents import AgentServer

from . import metrics
from .settings import Settings, get_settings

logger = logging.getLogger("firstword.unanswered")

_API_TIMEOUT_S = 3.0
_SWEEP_TIMEOUT_S = 10.0
# livekit-server's room count refresh (5 s), with a margin.
_COUNT_REFRESH_MS = 6000
# Jobs in these states are an agent on its way to the room (or in it).
_UNDER_WAY = (api.JobStatus.JS_PENDING, api.JobStatus.JS_RUNNING)

# The watcher task of this worker process; asyncio.run() cancels and awaits it at exit.
_tasks: set[asyncio.Task[None]] = set()


def attach(server: AgentServer, has_room: Callable[[], bool]) -> None:
    """Run the watcher in this worker once it has started (FIRSTWORD_UNANSWERED_AFTER > 0).

    `has_room`: whether this worker would accept a call now (read on the worker's loop).
    """
    settings = get_settings()
    if settings.unanswered_after <= 0:
        return

    def _start() -> None:
        task = asyncio.get_running_loop().create_task(
            Watcher(settings, has_room).run(), name="unanswered"
        )
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    server.on("worker_started", _start)


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
    """Sweeps the server's rooms; dispatches again those whose caller has no agent."""

    def __init__(self, settings: Settings, has_room: Callable[[], bool]) -> None:
        self._settings = settings
        self._has_room = has_room
        self._after_ms = round(settings.unanswered_after * 1000)

    async def run(self) -> None:
        lkapi = api.LiveKitAPI(
            self._settings.livekit_url,
            self._settings.livekit_api_key,
            self._settings.livekit_api_secret.get_secret_value(),
        )
        interval = self._settings.unanswered_sweep
        try:
            while True:
                # Jittered, so that workers started together do not sweep in step.
                await asyncio.sleep(interval * random.uniform(0.8, 1.2))
                if not self._has_room():
                    continue
                try:
                    await asyncio.wait_for(self.sweep(lkapi), _SWEEP_TIMEOUT_S)
                except (OSError, api.TwirpError, TimeoutError) as e:
                    logger.warning("unanswered-room sweep failed: %s", e)
        finally:
            await lkapi.aclose()

    async def sweep(self, lkapi: api.LiveKitAPI) -> int:
        """Dispatch every unanswered room again; how many were."""
        listed = await asyncio.wait_for(
            lkapi.room.list_rooms(api.ListRoomsRequest()), _API_TIMEOUT_S
        )
        dispatched = 0
        for room in listed.rooms:
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
