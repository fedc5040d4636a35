"""FIRSTWORD_TURN_THRESHOLD: the turn detector's threshold, and its warning once, not per call."""

from __future__ import annotations

import logging

import pytest

from agent.engines.pools import turn_detector


async def test_the_threshold_is_the_models_own_unless_set(caplog: pytest.LogCaptureFixture) -> None:
    own = await turn_detector(0.0).unlikely_threshold(None)
    assert own is not None and 0 < own < 0.6
    with caplog.at_level(logging.WARNING, logger="livekit.agents"):
        calls = [turn_detector(0.6) for _ in range(3)]
    assert [await d.unlikely_threshold(None) for d in calls] == [0.6, 0.6, 0.6]
    # livekit-agents warns at each detector with a threshold of its own: kept once.
    warned = [r for r in caplog.records if "non-default turn detection threshold" in r.message]
    assert len(warned) <= 1
