"""Capacity: which calls count against a worker, the load it reports, and overflow on hold.

Why the old count was wrong: the load was `len(server.active_jobs)`, and the framework keeps a
job in `active_jobs` until its thread or process is torn down (session drain, engines closed,
room left), which outlives the caller by seconds. Callers who hang up at the first word piled
such jobs up, the worker reported itself full with one live call, and the server sent the next
caller nowhere. Here a call counts from its job's start until its caller leaves or its session
closes (`CallSlot.release`, idempotent), whichever comes first.

Where the count lives: in the `firstword_active_calls` / `firstword_calls_on_hold` gauges of
agent/metrics.py. With the thread executor they are this process's registry; with the process
executor each job process writes its gauges through prometheus_client's multiprocess files
(`livesum`), and the worker's main process, where the framework runs the load function, reads
the same files. We chose the metrics files over the framework's job-status IPC because that
IPC only reports a job as running or done (teardown included), which is exactly the wrong
moment, and the files are already written and read for `/metrics`: no new channel.

Load and dispatch: livekit-server v1.13.5 (`pkg/service/agentservice.go`,
`selectWorkerWeightedByLoad`) picks among workers with status AVAILABLE at random, weighted
by `1 - load`, and only if the node's workers report less than `agents.target_load` (0.7 by
default; the psrpc affinity). So the load we report climbs to 0.5 as the conversation slots
fill, then to 0.65 as the hold slots fill, and is 1.0 (FULL) only when both are taken: a worker
with room gets more new calls, and a full one still takes a call (on hold).

Overflow: a call that finds every conversation slot taken is held (`hold`): it publishes a
plain audio track, plays the account's cached greeting and a short hold line (both from the
greeting cache), runs no STT, VAD or LLM, and waits for a slot. When one frees the call is
promoted to a full session (the agent says a short line and listens); after
FIRSTWORD_MAX_HOLD seconds the caller hears the handoff phrase instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from livekit import rtc
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

from . import metrics
from .accounts import Account
from .pools import EnginePool

logger = logging.getLogger("firstword.capacity")

HOLD_LINE = (
    "All of our lines are busy right now. Please stay on the line, we will be right with you."
)
PROMOTED_LINE = "Thank you for waiting. How can I help you today?"
# How often a held call looks for a free slot, and repeats its hold line.
_POLL_S = 0.25
_REPEAT_HOLD_S = 12.0
# Reported load when every conversation slot is taken, and when every hold slot is too.
# Both stay under livekit-server's `agents.target_load` (0.7 by default): a server whose
# workers all report more gives a job request no affinity and drops it ("failed to send job
# request: no servers available"), which is the silence this module exists to prevent.
_FULL_CONVERSATIONS = 0.5
_FULL_HOLDS = 0.65

Mode = Literal["live", "held"]


@dataclass(frozen=True)
class CallCounts:
    live: int
    held: int


def current_counts() -> CallCounts:
    """Live and held calls of this worker, from its gauges (process files or this registry)."""
    registry: CollectorRegistry = REGISTRY
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and Path(directory).is_dir() and any(Path(directory).glob("gauge_livesum_*.db")):
        registry = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(registry, path=directory)
    live = registry.get_sample_value("firstword_active_calls") or 0.0
    held = registry.get_sample_value("firstword_calls_on_hold") or 0.0
    return CallCounts(live=max(0, round(live)), held=max(0, round(held)))


def load_for(counts: CallCounts, max_calls: int, hold_slots: int) -> float:
    """The load to report: up to 0.5 as conversations fill, up to 0.65 as holds fill, then 1."""
    if counts.live < max_calls:
        return _FULL_CONVERSATIONS * counts.live / max_calls
    if counts.held >= hold_slots:
        return 1.0
    return _FULL_CONVERSATIONS + (_FULL_HOLDS - _FULL_CONVERSATIONS) * counts.held / hold_slots


def effective_load(counts: CallCounts, reserved: int, max_calls: int, hold_slots: int) -> float:
    """What the worker compares with its threshold (1.0) to accept a job: every call it holds
    or has promised to take, against all its slots (conversations and holds)."""
    return (counts.live + counts.held + reserved) / max(1, max_calls + hold_slots)


def worker_load(max_calls: int, hold_slots: int) -> float:
    """The framework's load function body: reads the live counts, records the metrics."""
    load = load_for(current_counts(), max_calls, hold_slots)
    metrics.WORKER_LOAD.set(load)
    metrics.CAPACITY_CALLS.set(max_calls)
    return load


# Thread executor: calls of one process claim slots under this lock, so a burst cannot take
# more conversations than FIRSTWORD_MAX_CALLS. (With processes two jobs starting in the same
# instant may both see a free slot: one conversation too many, never a caller in silence.)
_claim_lock = threading.Lock()


class CallSlot:
    """One call's place in the counts: a conversation (`live`) or on hold (`held`)."""

    def __init__(self, mode: Mode) -> None:
        self.mode: Mode | None = mode
        (metrics.ACTIVE_CALLS if mode == "live" else metrics.CALLS_ON_HOLD).inc()

    @classmethod
    def claim(cls, max_calls: int, hold_slots: int) -> CallSlot:
        with _claim_lock:
            if hold_slots <= 0 or current_counts().live < max_calls:
                return cls("live")
            metrics.CALLS_OVERFLOWED.inc()
            return cls("held")

    def try_promote(self, max_calls: int) -> bool:
        """A held call takes a free conversation slot, if there is one."""
        with _claim_lock:
            if self.mode != "held" or current_counts().live >= max_calls:
                return False
            metrics.CALLS_ON_HOLD.dec()
            metrics.ACTIVE_CALLS.inc()
            self.mode = "live"
            return True

    def release(self) -> None:
        """The caller left or the session closed: stop counting now (idempotent)."""
        with _claim_lock:
            if self.mode is not None:
                (metrics.ACTIVE_CALLS if self.mode == "live" else metrics.CALLS_ON_HOLD).dec()
                self.mode = None

    @property
    def released(self) -> bool:
        return self.mode is None


def observe_agent_wait(caller: rtc.RemoteParticipant, room: rtc.Room, received_at: float) -> None:
    """Caller joined (server's time; else the room's creation) → the job request (unix s)."""
    joined: datetime | None = caller.joined_at
    if joined is None:
        joined = room.creation_time
    if joined is not None and received_at:
        metrics.AGENT_WAIT.observe(max(0.0, received_at - joined.timestamp()))


def prepare_hold_audio(pool: EnginePool, accounts: list[Account]) -> int:
    """Render the hold and promoted lines in every voice in use (blocking; at prewarm)."""
    made = 0
    for voice in {pool.voice_for(a.voice) for a in accounts}:
        for text in (HOLD_LINE, PROMOTED_LINE):
            made += pool.greetings.prepare(voice, text)
    return made


async def hold(
    room: rtc.Room,
    caller: rtc.RemoteParticipant,
    account: Account,
    pool: EnginePool,
    slot: CallSlot,
    *,
    max_calls: int,
    max_hold_s: float,
    greeted: bool = False,
) -> bool:
    """Hold the call until it gets a slot (True), or the caller leaves / waits too long (False).

    Plain `rtc` audio, not an AgentSession: no VAD, STT or LLM run while the call is held.
    The caller hears the greeting (unless `greeted`: a pre-dispatched call's session said it
    already), then the hold line, repeated while they wait.
    """
    voice = pool.voice_for(account.voice)
    source = rtc.AudioSource(voice.sample_rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("hold", source)
    publication = await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    left = asyncio.Event()

    def _on_left(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == caller.identity:
            slot.release()  # a held caller who leaves frees everything at once
            left.set()

    room.on("participant_disconnected", _on_left)

    async def play(text: str) -> None:
        _cached, frames = await pool.greetings.stream(voice, text)
        async for frame in frames:
            await source.capture_frame(frame)

    async def announce() -> None:
        if not greeted:
            await play(account.greeting)
        while True:
            await play(HOLD_LINE)
            await asyncio.sleep(_REPEAT_HOLD_S)

    player = asyncio.create_task(announce(), name="hold-announce")
    started = time.monotonic()
    promoted = False
    logger.info("call on hold: every conversation slot is taken", extra={"room": room.name})
    try:
        while not left.is_set() and time.monotonic() - started < max_hold_s:
            if slot.try_promote(max_calls):
                promoted = True
                break
            try:
                await asyncio.wait_for(left.wait(), _POLL_S)
            except TimeoutError:
                pass
        if not promoted and not left.is_set():
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
            source.clear_queue()
            logger.info("held too long: handing off", extra={"room": room.name})
            await asyncio.wait_for(play(account.handoff_phrase), timeout=30)
            await source.wait_for_playout()
    finally:
        room.off("participant_disconnected", _on_left)
        player.cancel()
        await asyncio.gather(player, return_exceptions=True)
        source.clear_queue()
        if room.isconnected() and not left.is_set():
            await room.local_participant.unpublish_track(publication.sid)
        await source.aclose()
    logger.info(
        "call %s after %.1f s on hold",
        "promoted" if promoted else "left hold",
        time.monotonic() - started,
        extra={"room": room.name},
    )
    return promoted
