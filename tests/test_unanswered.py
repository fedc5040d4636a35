"""Which rooms the unanswered-room sweep dispatches again (agent/worker/unanswered.py)."""

from __future__ import annotations

from typing import Any

from livekit import api

from agent.worker.unanswered import may_have_people, unanswered

NOW_MS = 1_800_000_000_000
AFTER_MS = 2000


def _person(
    joined_ms_ago: int, kind: Any = api.ParticipantInfo.Kind.STANDARD
) -> api.ParticipantInfo:
    return api.ParticipantInfo(identity="caller", kind=kind, joined_at_ms=NOW_MS - joined_ms_ago)


def _dispatch(created_ms_ago: int, *jobs: Any) -> api.AgentDispatch:
    dispatch = api.AgentDispatch(room="r")
    dispatch.state.created_at = (NOW_MS - created_ms_ago) * 1_000_000
    for status in jobs:
        dispatch.state.jobs.add().state.status = status
    return dispatch


def test_a_caller_alone_long_enough_with_no_agent_on_its_way_is_unanswered() -> None:
    failed_dispatch = _dispatch(5000)  # the server's own, whose job request found no worker
    assert unanswered([_person(3000)], [failed_dispatch], NOW_MS, AFTER_MS)
    phone = _person(3000, api.ParticipantInfo.Kind.SIP)
    assert unanswered([phone], [_dispatch(5000, api.JobStatus.JS_FAILED)], NOW_MS, AFTER_MS)


def test_rooms_that_have_or_will_have_an_agent_are_left_alone() -> None:
    agent = _person(3000, api.ParticipantInfo.Kind.AGENT)
    assert not unanswered([_person(3000), agent], [], NOW_MS, AFTER_MS)  # answered
    assert not unanswered([agent], [], NOW_MS, AFTER_MS)  # a pre-dispatched room, no caller yet
    assert not unanswered([], [], NOW_MS, AFTER_MS)
    assert not unanswered([_person(500)], [], NOW_MS, AFTER_MS)  # just joined
    for status in (api.JobStatus.JS_PENDING, api.JobStatus.JS_RUNNING):  # an agent on its way
        assert not unanswered([_person(9000)], [_dispatch(8000, status)], NOW_MS, AFTER_MS)
    # Dispatched again a moment ago (by this or another worker's sweep): not twice.
    assert not unanswered([_person(9000)], [_dispatch(8000), _dispatch(1000)], NOW_MS, AFTER_MS)


def test_a_young_room_is_looked_into_whatever_its_stale_count_says() -> None:
    # The server refreshes a room's participant count at most every 5 s: a room made a
    # moment ago reads 0 although its caller is in it.
    young = api.Room(name="r", creation_time_ms=NOW_MS - 1500, num_participants=0)
    assert may_have_people(young, NOW_MS)
    old_empty = api.Room(name="r", creation_time=(NOW_MS - 60_000) // 1000, num_participants=0)
    assert not may_have_people(old_empty, NOW_MS)
    old_busy = api.Room(name="r", creation_time_ms=NOW_MS - 60_000, num_participants=1)
    assert may_have_people(old_busy, NOW_MS)
