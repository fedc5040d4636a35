"""A caller's token lets them be a caller and nothing more, tried against the real server.

The token the web app hands out (and the simulator uses) may publish the microphone and
subscribe; a camera, a screen share or data sent to the room is refused by the LiveKit
server itself. A participant with LiveKit's default grants can do all of it in the same
room, so these tests fail if the grants go back to the defaults.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from livekit import api, rtc

from agent.settings import Settings
from agent.web.grants import caller_grants
from agent.web.predispatch import Predispatcher
from tests.e2e_support import URL

KEY, SECRET = "devkey", "secret"


def _token(room: str, identity: str, grants: api.VideoGrants) -> str:
    return api.AccessToken(KEY, SECRET).with_identity(identity).with_grants(grants).to_jwt()


async def _join(room: str, identity: str, grants: api.VideoGrants) -> rtc.Room:
    joined = rtc.Room()
    async with asyncio.timeout(15):
        await joined.connect(URL, _token(room, identity, grants))
    return joined


@pytest.fixture
async def room_with_listener(livekit_server: str) -> AsyncIterator[tuple[str, rtc.Room]]:
    """A room and a participant with full grants listening for data."""
    name = f"grants-{uuid.uuid4().hex[:8]}"
    listener = await _join(name, "listener", api.VideoGrants(room_join=True, room=name))
    yield name, listener
    await listener.disconnect()


async def _data_heard(room: str, listener: rtc.Room, sender_grants: api.VideoGrants) -> bool:
    heard = asyncio.Event()
    listener.on("data_received", lambda _packet: heard.set())
    sender = await _join(room, f"sender-{uuid.uuid4().hex[:4]}", sender_grants)
    try:
        for _ in range(5):  # a few tries: the data channel may open after connect
            await sender.local_participant.publish_data(b"hello", reliable=True)
            try:
                async with asyncio.timeout(1.0):
                    await heard.wait()
                return True
            except TimeoutError:
                continue
        return False
    finally:
        await sender.disconnect()


async def _publishes(participant: rtc.Room, source: rtc.TrackSource.ValueType) -> bool:
    if source == rtc.TrackSource.SOURCE_MICROPHONE:
        track: rtc.LocalTrack = rtc.LocalAudioTrack.create_audio_track(
            "mic", rtc.AudioSource(48000, 1)
        )
    else:
        video = rtc.VideoSource(64, 64)
        video.capture_frame(rtc.VideoFrame(64, 64, rtc.VideoBufferType.RGBA, bytes(64 * 64 * 4)))
        track = rtc.LocalVideoTrack.create_video_track("cam", video)
    try:
        async with asyncio.timeout(10):
            await participant.local_participant.publish_track(
                track, rtc.TrackPublishOptions(source=source)
            )
    except (Exception, TimeoutError):
        return False
    return True


@pytest.mark.e2e
async def test_a_caller_publishes_its_microphone_but_no_camera_or_screen(
    room_with_listener: tuple[str, rtc.Room],
) -> None:
    room, _listener = room_with_listener
    caller = await _join(room, "caller", caller_grants(room))
    anyone = await _join(room, "anyone", api.VideoGrants(room_join=True, room=room))
    try:
        assert await _publishes(caller, rtc.TrackSource.SOURCE_MICROPHONE)
        assert not await _publishes(caller, rtc.TrackSource.SOURCE_CAMERA)
        assert not await _publishes(caller, rtc.TrackSource.SOURCE_SCREENSHARE)
        # The same server takes a camera from a participant with the default grants.
        assert await _publishes(anyone, rtc.TrackSource.SOURCE_CAMERA)
    finally:
        await caller.disconnect()
        await anyone.disconnect()


@pytest.mark.e2e
async def test_a_callers_data_does_not_reach_the_room(
    room_with_listener: tuple[str, rtc.Room],
) -> None:
    room, listener = room_with_listener
    assert not await _data_heard(room, listener, caller_grants(room))
    assert await _data_heard(room, listener, api.VideoGrants(room_join=True, room=room))


async def test_the_web_apps_token_carries_the_caller_grants() -> None:
    # predispatch=False: no room is created, only the token is made (no server needed).
    tickets = Predispatcher(
        Settings(LIVEKIT_URL=URL, LIVEKIT_API_KEY=KEY, LIVEKIT_API_SECRET=SECRET)
    )
    try:
        ticket = await tickets.ticket("harbor-dental", predispatch=False)
        typed = await tickets.ticket("harbor-dental", predispatch=False, typed_text=True)
    finally:
        await tickets.aclose()
    verifier = api.TokenVerifier(KEY, SECRET)  # LiveKit's own decoding of its JWT claims
    video = verifier.verify(ticket.token).video
    assert video is not None
    assert video.room == ticket.room and video.room_join is True
    assert video.can_publish_sources == ["microphone"]
    assert video.can_publish_data is False and video.can_subscribe is True
    assert not video.can_update_own_metadata and not video.room_admin
    # An account that takes typed text lets its callers send it.
    typed_video = verifier.verify(typed.token).video
    assert typed_video is not None and typed_video.can_publish_data is True
