"""Capacity: which calls count against a worker, the load it reports, and overflow on hold.

Why the old count was wrong: the load was `len(server.active_jobs)`, and the framework keeps a
job in `active_jobs` until its thread or process is torn down (session drain, engines closed,
room left), which outlives the caller by seconds. Callers who hang up at the first word piled
such jobs up, the worker reported itself full with one live call, and the server sent the next
caller nowhere. Here a call counts from its job's start until its caller leaves or its session
closes (`CallSlot.release`, idempotent), whichever comes first.

Where the count lives: in the `firstword_active_calls` / `firstword_calls_on_hold` gauges of
agent/metrics.py, and with the thread executor also in this module's counters (read without
collecting the whole registry). With the process executor each job process writes its
gauges through prometheus_client's multiprocess files (`livesum`), and the worker's main
process, where the framework runs the load function, reads the same files. We chose the
metrics files over the framework's job-status IPC because that IPC only reports a job as
running or done (teardown included), which is exactly the wrong moment, and the files are
already written and read for `/metrics`: no new channel.

Load and dispatch: livekit-server v1.13.5 (`pkg/service/agentservice.go`,
`selectWorkerWeightedByLoad`) picks among workers with status AVAILABLE at random, weighted
by `1 - load`, and only if the node's workers report less than `agents.target_load` (0.7 by
default; the psrpc affinity). So the load we report climbs to 0.5 as the conversation slots
fill, then to 0.65 as the hold slots fill, and is 1.0 (FULL) only when both are taken: a worker
with room gets more new calls, and a full one still takes a call (on hold).

Overflow: a call that finds every conversation slot taken is held (`hold`): on the call's
own audio track it plays the account's cached greeting and a short hold line (both from the
greeting cache), runs no STT, VAD or LLM, and waits for a slot. When one frees the call is
promoted to a full session (the agent says a short line and listens); after
FIRSTWORD_MAX_HOLD seconds the caller hears the handoff phrase instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from livekit import rtc
from livekit.agents.voice import io
from prometheus_client import multiprocess

from .. import metrics
from ..accounts import Account
from ..accounts.models import Voice
from ..engines.audio import frame_to_float, rms_dbfs
from ..engines.greetings import GreetingCache
from ..engines.local_tts import LocalTTS
from ..settings import get_settings

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
    """Live and held calls of this worker: its job processes' files, or this process's count.

    It runs on the worker's event loop (every availability request and load reading) and in
    every held call's poll, so it reads only what it needs: with job processes, the
    `gauge_livesum_*` files of the processes still alive (prometheus_client's `merge` over
    just those files; a full `MultiProcessCollector` pass also parses every histogram of
    every job process that ever ran, and blocked the worker's loop for seconds after a few
    dozen calls on a busy machine); with threads, the counters `CallSlot` keeps.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and Path(directory).is_dir():
        live = held = 0.0
        # File by file: a job process that is starting has created its file but not yet sized
        # it (0 bytes: prometheus_client's reader raises struct.error on it, which failed the
        # worker's load reading in CI), and one that ended may be removed under us. Either
        # holds no call; the others are still counted.
        for path in Path(directory).glob("gauge_livesum_*.db"):
            try:
                metrics = multiprocess.MultiProcessCollector.merge([str(path)], accumulate=False)
            except (struct.error, OSError, ValueError):
                continue
            for metric in metrics:
                for sample in metric.samples:
                    if sample.name == "firstword_active_calls":
                        live += sample.value
                    elif sample.name == "firstword_calls_on_hold":
                        held += sample.value
        return CallCounts(live=max(0, round(live)), held=max(0, round(held)))
    with _count_lock:
        return CallCounts(live=_counts["live"], held=_counts["held"])


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


def forget_dead_processes(directory: str | None = None) -> list[int]:
    """Drop the `live*` gauge files of job processes that are gone; their pids.

    A job process that exits normally has released its call (its gauges read 0), but one
    killed mid-call (kill -9, OOM) leaves its `gauge_livesum_<pid>.db` saying 1 live call,
    and nothing in livekit-agents calls prometheus_client's `mark_process_dead`: the worker
    would count a phantom call until it restarts. Called from the load function, in the
    worker's main process, twice a second. A pid is alive if `kill(pid, 0)` finds it as our
    user (a pid reused by another user's process reads as dead; by ours, as alive until it
    goes: both harmless for a count that only has to drop phantoms eventually).
    """
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not Path(directory).is_dir():
        return []
    dead: set[int] = set()
    for file in Path(directory).glob("gauge_live*_*.db"):
        pid_text = file.stem.rsplit("_", 1)[-1]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except (ProcessLookupError, PermissionError):
            dead.add(int(pid_text))
    if not dead:
        return []
    before = current_counts()
    for pid in sorted(dead):
        multiprocess.mark_process_dead(pid, directory)
    after = current_counts()
    if after != before:  # a process that died with calls counted (not a normal exit)
        logger.warning(
            "job process(es) %s died with calls counted; dropped: %d live, %d held",
            sorted(dead),
            before.live - after.live,
            before.held - after.held,
        )
    return sorted(dead)


def clear_stale_metric_dirs(parent: Path) -> list[Path]:
    """Remove the metrics folders (`<parent>/<pid>`) of workers that are gone.

    The process executor's files live in a folder per worker pid. The framework empties its
    own folder when it starts (so a restarted worker with the same pid, a container's pid 1,
    never counts what it finds there), but a worker killed with -9 leaves its folder, with
    its job processes' `gauge_livesum_*` files, behind for good: removed here at start.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for folder in parent.iterdir():
        if not folder.is_dir() or not folder.name.isdigit() or int(folder.name) == os.getpid():
            continue
        try:
            os.kill(int(folder.name), 0)
            continue  # another worker, alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # someone else's process: not ours to judge
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def worker_load(max_calls: int, hold_slots: int) -> float:
    """The framework's load function body: reads the live counts, records the metrics."""
    forget_dead_processes()
    load = load_for(current_counts(), max_calls, hold_slots)
    metrics.set_worker_gauges(load, max_calls)
    return load


# This process's calls, as the gauges count them (read by `current_counts` without a
# collection of the whole registry). Guarded by its own lock: `current_counts` is also
# called with `_claim_lock` held.
_counts = {"live": 0, "held": 0}
_count_lock = threading.Lock()


# Told (on whichever thread changed them) each time this process's counts change: the
# worker re-decides full/available at once instead of at its next load reading (0.5 s), a
# gap in which the server gave new callers to no one (see compat.CapacityAwareServer).
_watchers: list[Callable[[], None]] = []


def watch_counts(watcher: Callable[[], None]) -> Callable[[], None]:
    """Call `watcher` after every change of this process's counts; returns the unwatch."""
    _watchers.append(watcher)
    return lambda: _watchers.remove(watcher) if watcher in _watchers else None


class CountedCalls:
    """This process's calls as the server's accept/full decision counts them
    (`compat.CapacityAwareServer`): live + held (+ the jobs the framework promised) against
    the worker's conversation and hold slots, read from the settings at each count."""

    def load_now(self) -> float:
        return load_for(current_counts(), *_slots())

    def effective_load(self, reserved: int) -> float:
        return effective_load(current_counts(), reserved, *_slots())

    def watch(self, changed: Callable[[], None]) -> Callable[[], None]:
        return watch_counts(changed)


def _slots() -> tuple[int, int]:
    """The worker's conversation and hold slots (FIRSTWORD_MAX_CALLS, FIRSTWORD_HOLD_SLOTS)."""
    settings = get_settings()
    return settings.max_concurrent_calls, settings.hold_slots


def _count(mode: Mode, delta: int) -> None:
    (metrics.ACTIVE_CALLS if mode == "live" else metrics.CALLS_ON_HOLD).inc(delta)
    with _count_lock:
        _counts[mode] += delta
    for watcher in list(_watchers):
        watcher()


# Thread executor: calls of one process claim slots under this lock, so a burst cannot take
# more conversations than FIRSTWORD_MAX_CALLS. (With processes two jobs starting in the same
# instant may both see a free slot: one conversation too many, never a caller in silence.)
_claim_lock = threading.Lock()


class CallSlot:
    """One call's place in the counts: a conversation (`live`) or on hold (`held`)."""

    def __init__(self, mode: Mode) -> None:
        self.mode: Mode | None = mode
        _count(mode, 1)

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
            _count("held", -1)
            _count("live", 1)
            self.mode = "live"
            return True

    def release(self) -> None:
        """The caller left or the session closed: stop counting now (idempotent)."""
        with _claim_lock:
            if self.mode is not None:
                _count(self.mode, -1)
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


# Louder than this is heard, as the caller simulator counts it (caller/recorder.py): a
# voice's leading silence is not the first word.
_AUDIBLE_DBFS = -45.0


def audible(frame: rtc.AudioFrame) -> bool:
    """Whether a frame has anything a caller would hear."""
    return rms_dbfs(frame_to_float(frame)) > _AUDIBLE_DBFS


class HoldVoices(Protocol):
    """What the hold needs of the process's engines (`pools.EnginePool` is one): the voices
    and the rendered-audio cache. A protocol rather than the pool's class, so capacity does
    not import the pools (which import compat, which imports capacity: a circle)."""

    @property
    def greetings(self) -> GreetingCache: ...

    def voice_for(self, voice: Voice) -> LocalTTS: ...


def prepare_hold_audio(pool: HoldVoices, accounts: list[Account]) -> int:
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
    pool: HoldVoices,
    slot: CallSlot,
    output: io.AudioOutput,
    *,
    max_calls: int,
    max_hold_s: float,
    greeted: bool = False,
    on_first_frame: Callable[[], None] | None = None,
) -> bool:
    """Hold the call until it gets a slot (True), or the caller leaves / waits too long (False).

    Plain audio, not an AgentSession: no VAD, STT or LLM run while the call is held. The
    caller hears the greeting (unless `greeted`: a pre-dispatched call's session said it
    already), then the hold line, repeated while they wait. `on_first_frame` is called once,
    when the first audible frame goes to the caller (the call's first word, as a session's
    first frame is for a call that found a slot): a held caller who heard nothing shows in
    the call's timeline and metrics instead of looking like one who did.

    `output` is the call's own audio output, the track published when the agent joined
    (agent/call/ahead.py), which the session of a promoted call goes on with. A held call used
    to unpublish it and publish a track of its own: a second publication and subscription
    after the caller had joined. In a burst of 3x the capacity on the busy 2-core machine
    those took seconds each (a held call went on hold 4.4 s after its caller joined, and
    3 of 4 held callers were not subscribed to the hold track 7 s later): the held callers
    heard nothing while the callers with a slot heard the greeting. The output sends its
    first frame the moment the caller subscribes (often before the call goes on hold).
    """
    voice = pool.voice_for(account.voice)
    # The output plays at its own rate (the session's TTS audio is resampled for it too).
    rate = output.sample_rate or voice.sample_rate
    left = asyncio.Event()
    # Set once the caller has heard the greeting (or had it already): only then promoted.
    heard = asyncio.Event()

    def _on_left(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == caller.identity:
            slot.release()  # a held caller who leaves frees everything at once
            left.set()

    room.on("participant_disconnected", _on_left)

    first_sent = on_first_frame is None

    async def play(text: str) -> None:
        """One line, played out. The output holds each frame until the caller has
        subscribed (frames sent before never reach them, and none is lost)."""
        nonlocal first_sent
        _cached, frames = await pool.greetings.stream(voice, text)
        resampler = (
            rtc.AudioResampler(voice.sample_rate, rate) if rate != voice.sample_rate else None
        )
        try:
            async for frame in frames:
                for out in resampler.push(frame) if resampler else [frame]:
                    await output.capture_frame(out)
                    if not first_sent and audible(out):
                        first_sent = True
                        assert on_first_frame is not None
                        on_first_frame()
            for out in resampler.flush() if resampler else []:
                await output.capture_frame(out)
        finally:
            output.flush()
        await output.wait_for_playout()

    async def announce() -> None:
        if not greeted:
            await play(account.greeting)
        heard.set()
        while True:
            await play(HOLD_LINE)
            await asyncio.sleep(_REPEAT_HOLD_S)

    async def stop(player: asyncio.Task[None]) -> None:
        """Stop what the hold plays and wait until the output is idle (the session of a
        promoted call speaks through it next)."""
        player.cancel()
        await asyncio.gather(player, return_exceptions=True)
        output.clear_buffer()
        try:
            await asyncio.wait_for(output.wait_for_playout(), 2.0)
        except TimeoutError:
            logger.warning("the hold's audio did not stop within 2 s", extra={"room": room.name})

    player = asyncio.create_task(announce(), name="hold-announce")
    started = time.monotonic()
    promoted = False
    logger.info("call on hold: every conversation slot is taken", extra={"room": room.name})
    try:
        while not left.is_set() and time.monotonic() - started < max_hold_s:
            # Not promoted before the caller has heard the greeting: a slot that frees in
            # the first moments of a hold (a call just ending) used to tear the hold track
            # down before the caller had subscribed to it, and the caller heard nothing
            # until the full session's track came up (agent/worker/capacity.py, issue 9).
            if heard.is_set() and slot.try_promote(max_calls):
                promoted = True
                break
            try:
                await asyncio.wait_for(left.wait(), _POLL_S)
            except TimeoutError:
                pass
        if not promoted and not left.is_set():
            await stop(player)
            logger.info("held too long: handing off", extra={"room": room.name})
            await asyncio.wait_for(play(account.handoff_phrase), timeout=30)
    finally:
        room.off("participant_disconnected", _on_left)
        await stop(player)
    logger.info(
        "call %s after %.1f s on hold",
        "promoted" if promoted else "left hold",
        time.monotonic() - started,
        extra={"room": room.name},
    )
    return promoted
