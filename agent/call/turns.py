"""Per-turn answer latency: end of the caller's speech → first frame of the agent's answer.

Built from the framework's own per-message metrics (`ChatMessage.metrics`): the caller's
message carries `transcription_delay` and `end_of_turn_delay` (after the end of speech),
the agent's `e2e_latency` (end of speech → first answer frame out) and `tts_node_ttfb`
(for a line said with `session.say`, which has none, its `started_speaking_at` less the
caller's `stopped_speaking_at`: the framework's definition of `e2e_latency`).
Each stage is a mark in seconds after the end of speech; marks never go backwards, so with
preemptive generation (the answer ready before the turn is decided) the `answer_text`
stage reads 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STAGES = ("transcript_final", "turn_decided", "answer_text", "first_audio")


@dataclass(frozen=True)
class TurnTimeline:
    """Marks of one answered turn, in seconds after the end of the caller's speech."""

    marks: dict[str, float]

    @classmethod
    def from_metrics(cls, user: Mapping[str, Any], agent: Mapping[str, Any]) -> TurnTimeline | None:
        """None unless the agent's message says when its first frame went out."""
        first_audio = agent.get("e2e_latency")
        started, stopped = agent.get("started_speaking_at"), user.get("stopped_speaking_at")
        if first_audio is None and started is not None and stopped is not None:
            # A line said with `session.say` (the handoff phrase, said by the tool itself)
            # gets no `e2e_latency`; the framework's own definition of it is this difference.
            first_audio = float(started) - float(stopped)
        if first_audio is None:
            return None
        transcript = float(user.get("transcription_delay") or 0.0)
        decided = max(transcript, float(user.get("end_of_turn_delay") or 0.0))
        ttfb = agent.get("tts_node_ttfb")
        # The text reached the TTS `tts_node_ttfb` before its first frame; a cached answer
        # or an answer made while the turn was being decided shows as no wait.
        text = first_audio - float(ttfb) if ttfb is not None else decided
        marks = {"transcript_final": transcript, "turn_decided": decided}
        marks["answer_text"] = min(max(decided, text), max(decided, float(first_audio)))
        marks["first_audio"] = max(marks["answer_text"], float(first_audio))
        return cls(marks)

    @property
    def answer_latency(self) -> float:
        return self.marks["first_audio"]

    def stage_seconds(self) -> dict[str, float]:
        """How long each stage took after the one before it (the first after end of speech)."""
        out: dict[str, float] = {}
        previous = 0.0
        for stage in STAGES:
            out[stage] = self.marks[stage] - previous
            previous = self.marks[stage]
        return out

    def marks_ms(self) -> dict[str, float]:
        return {stage: round(self.marks[stage] * 1000, 1) for stage in STAGES}
