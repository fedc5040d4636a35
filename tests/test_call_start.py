"""Call start-up pieces: the timeline, the account cache, handlers deferred to the first word."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentStateChangedEvent, utils

from agent.accounts import AccountStore
from agent.call.call_log import attach_after_first_frame
from agent.call.timeline import CallTimeline


def test_timeline_keeps_the_first_mark_and_orders_stages() -> None:
    timeline = CallTimeline(origin=10.0)
    timeline.mark("room_connected", 10.1)
    timeline.mark("job_started", 10.002)
    timeline.mark("room_connected", 10.5)  # a second mark does not move the first
    timeline.mark("first_frame", 10.3)
    assert timeline.since_origin_ms() == {
        "job_started": 2.0,
        "room_connected": 100.0,
        "first_frame": 300.0,
    }
    assert timeline.time_to_first_frame() == pytest.approx(0.3)
    stages = timeline.stage_seconds()
    assert stages["room_connected"] == pytest.approx(0.098)
    assert stages["first_frame"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="unknown timeline stage 'dinner'"):
        timeline.mark("dinner")


class _FakeSession(utils.EventEmitter[Any]):
    pass


def _state(new: str, old: str = "listening") -> AgentStateChangedEvent:
    return AgentStateChangedEvent(old_state=old, new_state=new)


def test_deferred_handlers_attach_only_once_the_first_frame_is_out() -> None:
    session = _FakeSession()
    attached: list[str] = []
    attach_after_first_frame(session, lambda ev: attached.append(ev.new_state))  # type: ignore[arg-type]
    session.emit("agent_state_changed", _state("listening", "initializing"))
    session.emit("agent_state_changed", _state("thinking"))
    assert attached == []
    session.emit("agent_state_changed", _state("speaking", "thinking"))
    session.emit("agent_state_changed", _state("listening", "speaking"))
    session.emit("agent_state_changed", _state("speaking"))
    assert attached == ["speaking"]  # once, at the first frame


def _touch(path: Path) -> None:
    # Make the change visible even on file systems with coarse timestamps.
    later = time.time() + 5
    os.utime(path, (later, later))


async def test_account_cache_serves_until_ttl_then_reloads_changed_files(
    accounts_copy: Path,
) -> None:
    now = [100.0]
    store = AccountStore(accounts_copy, "harbor-dental", ttl_seconds=5, clock=lambda: now[0])
    first = await store.current()
    path = accounts_copy / "harbor-dental.yaml"
    text = path.read_text()
    path.write_text(text.replace("Thank you for calling Harbor Dental", "Welcome to Harbor Dental"))
    _touch(path)
    now[0] += 4.9
    assert await store.current() is first  # within the TTL: no disk access
    now[0] += 0.2
    fresh = await store.current()
    assert fresh is not first
    assert fresh.accounts["harbor-dental"].greeting.startswith("Welcome to Harbor Dental")
    now[0] += 5.1
    assert await store.current() is fresh  # unchanged files: the same accounts


async def test_account_cache_keeps_the_last_good_accounts_on_a_broken_edit(
    accounts_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = AccountStore(accounts_copy, "harbor-dental", ttl_seconds=0)
    good = await store.current()
    path = accounts_copy / "bluebird-bikes.yaml"
    path.write_text("id: bluebird-bikes\ngreeting: [unclosed\n")
    _touch(path)
    assert await store.current() is good
    assert str(path) in caplog.text and "keep the accounts loaded before" in caplog.text
    errors = [r for r in caplog.records if "keep the accounts" in r.getMessage()]
    await store.current()
    assert len([r for r in caplog.records if "keep the accounts" in r.getMessage()]) == len(errors)


async def test_account_cache_picks_up_a_new_account_file(accounts_copy: Path) -> None:
    store = AccountStore(accounts_copy, "harbor-dental", ttl_seconds=0)
    source = (accounts_copy / "bluebird-bikes.yaml").read_text()
    (accounts_copy / "green-gym.yaml").write_text(
        source.replace("id: bluebird-bikes", "id: green-gym").replace(
            "+15035550199", "+15035550777"
        )
    )
    assert "green-gym" in (await store.current()).accounts
