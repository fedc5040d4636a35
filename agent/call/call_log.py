"""Event handlers of a call that are not on the path to its first word.

They are attached once the greeting's first frame has gone out: until then the event loop
does nothing but get that frame out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from livekit.agents import (
    AgentFalseInterruptionEvent,
    AgentSession,
    AgentStateChangedEvent,
    ConversationItemAddedEvent,
    MetricsCollectedEvent,
    metrics,
)

from .. import metrics as firstword_metrics
from ..accounts import Account
from .record import CallRecord
from .turns import TurnTimeline

logger = logging.getLogger("firstword.call")


def attach_after_first_frame(
    session: AgentSession[Any], then: Callable[[AgentStateChangedEvent], None]
) -> None:
    """Call `then` once, when the agent first starts speaking (its first frame is out)."""

    def _on_state(event: AgentStateChangedEvent) -> None:
        if event.new_state == "speaking":
            session.off("agent_state_changed", _on_state)
            then(event)

    session.on("agent_state_changed", _on_state)


def logs_transcripts(log_transcripts: bool, account: Account) -> bool:
    """Whether a call's words go to the worker's log: FIRSTWORD_LOG_TRANSCRIPTS, and never for
    an account that keeps nothing of its calls."""
    return log_transcripts and account.recording


def attach_conversation_logs(
    session: AgentSession[Any],
    call: CallRecord,
    notes: dict[str, Any] | None = None,
    *,
    transcripts: bool = False,
) -> None:
    """Per-turn latency metrics, a usage summary at the end, and with `transcripts` (the
    setting FIRSTWORD_LOG_TRANSCRIPTS) what each side said: callers say names, numbers and
    health details, so their words reach the logs only where an operator asks for them.

    `notes`: what the call's engines noted about the current turn (the response cache's
    hit or miss); added to the turn's log line, then cleared."""
    usage = metrics.UsageCollector()
    where = {"room": call.room, "account": call.account}
    account = call.account or "unknown"
    last_user: dict[str, Any] = {}

    @session.on("conversation_item_added")
    def _on_item(event: ConversationItemAddedEvent) -> None:
        item = event.item
        text = getattr(item, "text_content", None)
        role = getattr(item, "role", "?")
        if text and transcripts:
            logger.info("transcript %s: %s", role, text, extra=where)
        item_metrics = dict(getattr(item, "metrics", None) or {})
        if role == "assistant" and getattr(item, "interrupted", False):
            logger.info("agent interrupted by the caller", extra=where)
        if role == "user" and text:
            call.turns.append({"question": text, "answer": ""})
        elif role == "assistant" and text and call.turns and not call.turns[-1]["answer"]:
            call.turns[-1]["answer"] = text
        if role == "user":
            last_user.clear()
            last_user.update(item_metrics)
        elif role == "assistant" and last_user:
            turn_where = {**where, **(notes or {})}
            turn = TurnTimeline.from_metrics(last_user, item_metrics)
            _report_turn(turn, account, turn_where)
            if turn is not None and call.turns:  # the answer's latency, for the history
                call.turns[-1]["latency_ms"] = round(turn.answer_latency * 1000)
            last_user.clear()
            if notes is not None:
                notes.clear()

    @session.on("agent_false_interruption")
    def _on_false_interruption(event: AgentFalseInterruptionEvent) -> None:
        # Caller speech over the agent that brought no words to stop it (agent/call/barge_in.py).
        if event.resumed:
            logger.info("agent resumed after a false interruption", extra=where)

    @session.on("metrics_collected")
    def _on_metrics(event: MetricsCollectedEvent) -> None:
        usage.collect(event.metrics)
        logger.debug("metrics %s", type(event.metrics).__name__, extra=where)

    @session.on("close")
    def _on_close(_event: object) -> None:
        logger.info("call usage: %s", usage.get_summary(), extra=where)

    logger.debug("conversation logs attached", extra=where)


def _report_turn(turn: TurnTimeline | None, account: str, where: dict[str, Any]) -> None:
    """One log line per answered turn, and its metrics."""
    if turn is None:
        return
    firstword_metrics.ANSWER_LATENCY.labels(account).observe(turn.answer_latency)
    for stage, seconds in turn.stage_seconds().items():
        firstword_metrics.TURN_STAGE.labels(stage).observe(seconds)
    logger.info(
        "turn timeline: first answer frame %.0f ms after the end of speech",
        turn.answer_latency * 1000,
        extra={**where, "turn_ms": turn.marks_ms()},
    )
