"""The call history: one record per call, for the business that took it.

Who called (identity, kind, number), when, for how long, how the call ended, how soon the
first word came, what the caller asked and what the agent answered, and the questions the
agent could not answer (its answer was the handoff phrase): the list that tells a business
which FAQ to add. This module makes the entry; the worker keeps it when a call ends in the
history's database (agent/accounts/history_store.py), which the desk reads
(`GET /api/desk/history`, staff of the account only).

What callers say is kept here as it is in the handoff records: the business's own book, shown
only to its staff; the worker's logs still carry no words unless FIRSTWORD_LOG_TRANSCRIPTS.
"""

from __future__ import annotations

from typing import Any

from .record import CallRecord

# How a call ended, as the business reads it, from the job's shutdown reason.
_ENDINGS = {
    "caller left": "caller hung up",
    "session closed: participant_disconnected": "caller hung up",
    "left hold": "caller hung up on hold",
    "held too long: handed off": "held too long",
    "session closed: error": "ended by an error",
}


def ending(reason: str) -> str:
    """The business's words for a job's shutdown reason (the reason itself when unknown)."""
    return _ENDINGS.get(reason, reason)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def entry(
    call: CallRecord,
    *,
    handoff_phrase: str,
    ended_at: float,
    ended: str,
    ttfw_s: float | None,
) -> dict[str, Any]:
    """The history entry of a finished call."""
    phrase = _norm(handoff_phrase)
    turns = [
        {**turn, "answered": phrase not in _norm(str(turn.get("answer", "")))}
        for turn in call.turns
    ]
    started = call.started_at or ended_at
    return {
        "account": call.account,
        "room": call.room,
        "caller": call.caller,
        "caller_kind": "sip" if call.sip else "web",
        "caller_number": call.caller_number,
        "started_at": round(started, 3),
        "ended_at": round(ended_at, 3),
        "seconds": round(max(0.0, ended_at - started), 1),
        "ended": ending(ended),
        # The handoff's last state: requested, taken, not_taken, failed; None: none asked.
        "handoff": call.handoff,
        "taken_by": call.taken_by,
        "ttfw_ms": None if ttfw_s is None else round(ttfw_s * 1000),
        "held": bool(call.held),
        "resumed": bool(call.resumed),
        "turns": turns,
        "unanswered": [t["question"] for t in turns if not t["answered"]],
    }
