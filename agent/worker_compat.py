"""The one place that reaches into livekit-agents' AgentServer internals (capacity).

The framework decides whether to accept a job from `_get_effective_load()`: the reported load
plus `_reserved_slots` (jobs it said "available" to but has not launched yet) times an
estimated per-job load. That estimate is `load / len(active_jobs)`, or `threshold /
num_idle_processes` when no job runs: with our load curve (agent/capacity.py) and jobs that
are still being torn down in `active_jobs`, a burst from idle was refused after one or two
reservations, and the server then dropped the call for its retry interval (the caller waits
in silence). Here the decision counts calls: live + held + reserved against the worker's
conversation and hold slots. Checked by tests/test_e2e_capacity.py
(`test_the_framework_still_has_what_the_capacity_override_uses`).
"""

from __future__ import annotations

from livekit.agents import AgentServer

from . import capacity
from .settings import get_settings


class CapacityAwareServer(AgentServer):
    """An AgentServer whose accept/full decision counts live calls and reserved jobs."""

    def _get_effective_load(self) -> float:
        settings = get_settings()
        counts = capacity.current_counts()
        reserved = int(getattr(self, "_reserved_slots", 0))
        return capacity.effective_load(
            counts, reserved, settings.max_concurrent_calls, settings.hold_slots
        )
