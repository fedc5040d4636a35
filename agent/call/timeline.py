"""The start-up timeline of one call: when each stage that leads to the first word finished.

Timestamps are `time.monotonic()` seconds. On Linux that clock is shared by every process
of the machine, so the worker's main process can stamp the job request and the job (in a
thread or a child process) can carry on the same timeline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .. import metrics
from .record import CallRecord

logger = logging.getLogger("firstword.worker")

# In the order a call normally reaches them; some run concurrently, so a later stage can
# finish before an earlier one.
STAGES = (
    "job_received",  # the worker's main process got the job request from the server
    "job_assigned",  # the server confirmed the job to this worker
    "job_started",  # the entrypoint runs (thread or process picked up the job)
    "room_connected",
    "caller_joined",
    "account_ready",  # account resolved, its answerer and greeting audio at hand
    "session_started",
    "track_published",  # the agent's audio track is published
    "track_subscribed",  # the caller subscribed to it: audio can flow
    "first_frame",  # first greeting frame handed to the published track
)


@dataclass
class CallTimeline:
    """Monotonic marks of one call; the first mark of a stage wins."""

    origin: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)
    # The call's timeline line is written once (`report`, below).
    reported: bool = False

    def mark(self, stage: str, at: float | None = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown timeline stage {stage!r}; known: {', '.join(STAGES)}")
        self.marks.setdefault(stage, time.monotonic() if at is None else at)

    def since_origin_ms(self) -> dict[str, float]:
        """Each reached stage, in milliseconds after the origin (the job request)."""
        return {
            stage: round((self.marks[stage] - self.origin) * 1000, 1)
            for stage in STAGES
            if stage in self.marks
        }

    def stage_seconds(self) -> dict[str, float]:
        """How long each reached stage took after the one before it that was reached."""
        out: dict[str, float] = {}
        previous = self.origin
        for stage in STAGES:
            if stage in self.marks:
                out[stage] = max(0.0, self.marks[stage] - previous)
                previous = max(previous, self.marks[stage])
        return out

    def time_to_first_frame(self) -> float | None:
        if "first_frame" not in self.marks:
            return None
        return self.marks["first_frame"] - self.origin


def report(timeline: CallTimeline, call: CallRecord, *, reason: str) -> None:
    """The call's one timeline log line, and its metrics (once; later calls do nothing)."""
    if timeline.reported:
        return
    timeline.reported = True
    ttfw = timeline.time_to_first_frame()
    account = call.account or "unknown"
    if ttfw is not None:
        metrics.TIME_TO_FIRST_WORD.labels(account).observe(ttfw)
    for stage, seconds in timeline.stage_seconds().items():
        metrics.CALL_STAGE.labels(stage).observe(seconds)
    logger.info(
        "call timeline (%s): first frame %s",
        reason,
        f"{ttfw * 1000:.0f} ms after the job request" if ttfw is not None else "never sent",
        extra={
            **call.log_fields(),
            "timeline_ms": timeline.since_origin_ms(),
            "origin_monotonic": round(timeline.origin, 4),
        },
    )
