"""What one call's log lines and metrics say about it, filled in as the call goes on.

The job (agent/worker/job.py) and the session's set-up (agent/call/session.py) fill it; the
call's timeline line (agent/call/timeline.py `report`) and its conversation logs
(agent/call/call_log.py) read it. A field stays None until the call reaches the point that
sets it, and a None field is left out of the log line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CallRecord:
    room: str
    account: str | None = None
    # Where the account came from: dispatch, room metadata, caller attributes, room name...
    account_source: str | None = None
    caller: str | None = None  # the caller's participant identity
    caller_number: str | None = None  # a phone caller's number (`sip.phoneNumber`)
    started_at: float | None = None  # unix seconds: the job started
    ahead: bool | None = None  # the session was started before the caller came (pre-dispatch)
    held: bool | None = None  # the call went on hold: every conversation slot was taken
    resumed: bool | None = None  # picked up after its worker died (agent/worker/recovery.py)
    sip: bool | None = None  # a phone caller through the SIP bridge
    cloud: list[str] | None = None  # the cloud engines in the call's chains
    greeting_cached: bool | None = None  # the first line's audio was pre-rendered
    handoff: str | None = None  # the handoff's last state (agent/call/handoff/core.py)
    taken_by: str | None = None  # who took it: a staff identity, or the number that answered
    # What was asked and answered, {"question", "answer", "latency_ms"} per turn, for the call
    # history (agent/call/history.py); not in log lines (callers' words stay out of the logs).
    turns: list[dict[str, Any]] = field(default_factory=list)

    def log_fields(self) -> dict[str, Any]:
        """The fields set so far, for a log line's `extra`."""
        fields = asdict(self)
        del fields["turns"]
        return {key: value for key, value in fields.items() if value is not None}
