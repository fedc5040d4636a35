"""Hold mode's order of events, with the call's real audio output and a stand-in room.

The silent caller once seen in the burst test: a slot freed in the first moments of a hold,
the hold track was torn down before the caller had subscribed to it, and the caller heard
nothing until the full session's track came up. Now the hold plays through the call's own
track (the one the promoted session goes on with), its greeting goes out once the caller has
subscribed (however long that takes: it used to play after 3 s anyway, to nobody), and the
call is promoted only after the greeting has played out. A held call reports its first word
(`on_first_frame`) when the greeting's first audible frame goes to the caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from livekit import rtc

from agent.compat import EarlyRoomAudioOutput
from agent.worker import capacity

RATE = 22050  # the voice's rate; the output plays at 24 kHz (resampled)
GREETING_S = 0.6
SUBSCRIBED_AFTER_S = 0.3
LEADING_SILENT_FRAMES = 5


class _Publication:
    sid = "TR_hold"

    def __init__(self, subscribed_after_s: float) -> None:
        self.subscribed_after_s = subscribed_after_s
        self.subscribed_at: float | None = None

    async def wait_for_subscription(self) -> None:
        await asyncio.sleep(self.subscribed_after_s)
        self.subscribed_at = time.monotonic()


class _Room:
    name = "hold-test"

    def __init__(self, subscribed_after_s: float = SUBSCRIBED_AFTER_S) -> None:
        self.publication = _Publication(subscribed_after_s)
        self.unpublished_at: float | None = None
        self.returned_at: float | None = None
        self.handlers: dict[str, Callable[..., None]] = {}

        async def publish_track(*_: Any) -> _Publication:
            return self.publication

        async def unpublish_track(_sid: str) -> None:
            self.unpublished_at = time.monotonic()

        self.local_participant = SimpleNamespace(
            publish_track=publish_track, unpublish_track=unpublish_track
        )

    def on(self, event: str, handler: Callable[..., None]) -> None:
        self.handlers[event] = handler

    def off(self, event: str, handler: Callable[..., None]) -> None:
        self.handlers.pop(event, None)

    def isconnected(self) -> bool:
        return True


class _Greetings:
    def __init__(self) -> None:
        self.first_frame_at: dict[str, float] = {}
        self.first_audible_at: dict[str, float] = {}

    async def stream(self, _voice: object, text: str) -> tuple[bool, AsyncIterator[rtc.AudioFrame]]:
        async def frames() -> AsyncIterator[rtc.AudioFrame]:
            step = RATE // 50
            self.first_frame_at.setdefault(text, time.monotonic())
            for _ in range(LEADING_SILENT_FRAMES):  # a voice's quiet lead-in: not a word
                yield rtc.AudioFrame(bytes(step * 2), RATE, 1, step)
            self.first_audible_at.setdefault(text, time.monotonic())
            for _ in range(int(GREETING_S * 50)):
                pcm = (np.sin(np.arange(step) / 5) * 3000).astype(np.int16).tobytes()
                yield rtc.AudioFrame(pcm, RATE, 1, step)

        return True, frames()


async def _held_call(
    subscribed_after_s: float,
) -> tuple[_Room, _Greetings, list[float], bool]:
    """One held call whose slot frees at once: the room, its audio, the times
    `on_first_frame` was called, and whether the call was promoted."""
    base = capacity.current_counts()
    max_calls = base.live + 1
    busy = capacity.CallSlot.claim(max_calls, hold_slots=1)
    held = capacity.CallSlot.claim(max_calls, hold_slots=1)
    assert held.mode == "held"
    room, greetings = _Room(subscribed_after_s), _Greetings()
    pool = SimpleNamespace(
        voice_for=lambda _v: SimpleNamespace(sample_rate=RATE), greetings=greetings
    )
    account = SimpleNamespace(greeting="Hello", handoff_phrase="Bye", voice=None)
    caller = SimpleNamespace(identity="caller-1")
    first_frames: list[float] = []
    # The call's track, published when the agent joined (agent/call/ahead.py's AgentTrack).
    track = EarlyRoomAudioOutput(room)  # type: ignore[arg-type]
    publishing = asyncio.create_task(track.publish())
    holding = asyncio.create_task(
        capacity.hold(
            room,  # type: ignore[arg-type]
            caller,  # type: ignore[arg-type]
            account,  # type: ignore[arg-type]
            pool,
            held,
            track.output,
            max_calls=max_calls,
            max_hold_s=subscribed_after_s + 10,
            on_first_frame=lambda: first_frames.append(time.monotonic()),
        )
    )
    await asyncio.sleep(0.05)
    busy.release()  # the slot frees while the track is barely published
    try:
        promoted = await asyncio.wait_for(holding, subscribed_after_s + 10)
        room.returned_at = time.monotonic()
    finally:
        held.release()
        await publishing
        await track.aclose()
    assert capacity.current_counts() == base
    return room, greetings, first_frames, promoted


async def test_a_slot_freeing_at_once_waits_for_the_caller_to_hear_the_greeting() -> None:
    room, _greetings, first_frames, promoted = await _held_call(SUBSCRIBED_AFTER_S)
    assert promoted
    subscribed = room.publication.subscribed_at
    assert subscribed is not None and room.returned_at is not None
    # The greeting goes out once the caller can hear it...
    assert first_frames and first_frames[0] >= subscribed
    # ...and the call is promoted only once it has played out, on the same track.
    assert room.returned_at - subscribed >= GREETING_S * 0.9
    assert room.unpublished_at is None


async def test_a_held_call_reports_its_first_word_at_the_greetings_first_audible_frame() -> None:
    room, greetings, first_frames, promoted = await _held_call(SUBSCRIBED_AFTER_S)
    assert promoted
    # Once, at the greeting's first audible frame (its quiet lead-in does not count), sent
    # after the caller subscribed; the hold line that may follow does not report again.
    assert len(first_frames) == 1
    assert room.publication.subscribed_at is not None
    assert first_frames[0] >= greetings.first_audible_at["Hello"] >= room.publication.subscribed_at


@pytest.mark.slow
async def test_a_caller_who_subscribes_late_still_hears_the_greeting_from_its_start() -> None:
    # Later than the 3 s a held call used to wait before it played anyway, to nobody.
    room, _greetings, first_frames, promoted = await _held_call(3.5)
    assert promoted
    subscribed = room.publication.subscribed_at
    assert subscribed is not None and room.returned_at is not None
    # Its first frame went out after the subscription, and the whole greeting played.
    assert len(first_frames) == 1 and first_frames[0] >= subscribed
    assert room.returned_at - subscribed >= GREETING_S * 0.9
