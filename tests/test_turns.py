"""Per-turn answer latency from the framework's per-message metrics."""

from __future__ import annotations

import pytest

from agent.call.turns import STAGES, TurnTimeline


def test_stages_follow_the_turn_in_order() -> None:
    turn = TurnTimeline.from_metrics(
        {"transcription_delay": 0.1, "end_of_turn_delay": 0.45},
        {"e2e_latency": 0.7, "tts_node_ttfb": 0.2},
    )
    assert turn is not None
    assert list(turn.marks) == list(STAGES)
    assert turn.marks == pytest.approx(
        {"transcript_final": 0.1, "turn_decided": 0.45, "answer_text": 0.5, "first_audio": 0.7}
    )
    assert turn.answer_latency == pytest.approx(0.7)
    assert sum(turn.stage_seconds().values()) == pytest.approx(0.7)


def test_answer_ready_before_the_turn_is_decided_reads_no_wait() -> None:
    # Preemptive generation and a cached answer: the frame is out as soon as the turn ends.
    turn = TurnTimeline.from_metrics(
        {"transcription_delay": 0.3, "end_of_turn_delay": 0.4},
        {"e2e_latency": 0.42, "tts_node_ttfb": 0.3},
    )
    assert turn is not None
    seconds = turn.stage_seconds()
    assert seconds["answer_text"] == 0 and seconds["first_audio"] == pytest.approx(0.02)
    assert all(v >= 0 for v in seconds.values())


def test_no_first_frame_no_turn() -> None:
    assert TurnTimeline.from_metrics({"transcription_delay": 0.1}, {}) is None


def test_a_said_line_is_timed_from_the_speaking_timestamps() -> None:
    # The handoff phrase is said by the tool (`session.say`): no e2e_latency on its message.
    turn = TurnTimeline.from_metrics(
        {"transcription_delay": 0.3, "end_of_turn_delay": 0.35, "stopped_speaking_at": 100.0},
        {"started_speaking_at": 100.9},
    )
    assert turn is not None
    assert turn.answer_latency == pytest.approx(0.9)
    assert turn.marks["turn_decided"] == pytest.approx(0.35)
