"""The handoff's shared vocabulary: one request, one outcome, and the ends that can take a call.

A handoff has one mechanism and several ends. The mechanism (core.py) notices that the
agent has asked for a person, publishes that on LiveKit's own state (the agent participant's
attributes), picks the end that can reach the caller, waits for it with a time limit, and then
either steps the agent back (taken) or says the no-take line and keeps a message (not taken,
failed). The ends only connect a person:

- the front desk (desk.py, with its page in agent/web/desk.py): web and app callers;
  a staff member takes the call from the browser and joins the same room;
- the SIP transfer (transfer.py): phone callers; `TransferSIPParticipant` (SIP REFER)
  to the account's handoff number;
- the warm transfer (warm.py): phone callers of a `handoff_transfer: warm` account; the
  agent dials the person, briefs them and connects them only if they accept.

This module holds only the types, so each end can be built and tested on its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, Protocol

CallerKind = Literal["sip", "web", "app"]

# A staff member who takes a call joins with an identity starting with this (the desk mints it;
# identities are set by whoever signs the token, so a caller cannot pose as staff).
STAFF_PREFIX = "desk-"
# Rooms of the desk's call-backs (a staff member and the caller they dial): no agent joins them
# (agent/worker/job.py declines the job).
CALLBACK_ROOM_PREFIX = "callback-"


def agent_joins(room_name: str) -> bool:
    """Whether a room gets an agent: every room but a call-back (the worker's job request and
    the unanswered sweep both ask)."""
    return not room_name.startswith(CALLBACK_ROOM_PREFIX)


def is_staff(identity: str) -> bool:
    return identity.startswith(STAFF_PREFIX)


@dataclass(frozen=True)
class HandoffRequest:
    """The agent asked for a person on this call."""

    account_id: str
    room: str
    caller_identity: str
    caller_kind: CallerKind
    # The caller's number where the call came over SIP (`sip.phoneNumber`), else None.
    caller_number: str | None
    # Why: the tool's `reason`, or the FAQ answerer's "no stored answer matched".
    reason: str
    # What the caller last said (their question), kept for the business's record.
    question: str
    # Unix time of the request.
    requested_at: float


class HandoffOutcome(enum.StrEnum):
    TAKEN = "taken"
    # Nobody took it within the time limit.
    NOT_TAKEN = "not_taken"
    # The end could not reach a person (SIP busy / no answer / error, desk unreachable).
    FAILED = "failed"


@dataclass(frozen=True)
class HandoffResult:
    outcome: HandoffOutcome
    # Who took it (staff identity, or the number that answered), when taken.
    taken_by: str | None = None
    # A short human-readable reason, e.g. "486 Busy Here", "timed out after 30 s".
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class HandoffEnd(Protocol):
    """One way of reaching a person. `connect` never raises: failures are a FAILED result."""

    name: str
    # True where connecting takes the caller away from the agent (a SIP transfer ends their
    # leg with it): such an end starts only once the agent's handoff line has been said.
    moves_the_caller: bool
    # Seconds the end may take beyond the handoff's wait (a warm transfer briefs the person
    # after they answered); the mechanism cuts an end off after wait + this + a grace.
    overrun_s: float

    def handles(self, request: HandoffRequest) -> bool:
        """Whether this end can reach the caller of `request` (e.g. SIP needs a SIP caller)."""
        ...

    async def connect(self, request: HandoffRequest, wait_s: float) -> HandoffResult:
        """Bring a person to the call, waiting at most `wait_s` seconds."""
        ...
