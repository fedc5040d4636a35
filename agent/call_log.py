"""Event handlers of a call that are not on the path to its first word.

They are attached once the greeting's first frame has gone out: until then the event loop
does nothing but get that frame out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from livekit.agents import (
    AgentSession,
    AgentStateChangedEvent,
    ConversationItemAddedEvent,
    MetricsCollectedEvent,
    metrics,
)

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


def attach_conversation_logs(session: AgentSession[Any], call: dict[str, Any]) -> None:
    """Transcript lines, per-turn latency metrics and a usage summary at the end."""
    usage = metrics.UsageCollector()
    where = {"room": call.get("room"), "account": call.get("account")}

    @session.on("conversation_item_added")
    def _on_item(event: ConversationItemAddedEvent) -> None:
        item = event.item
        text = getattr(item, "text_content", None)
        if text:
            role = getattr(item, "role", "?")
            logger.info("transcript %s: %s", role, text, extra=where)

    @session.on("metrics_collected")
    def _on_metrics(event: MetricsCollectedEvent) -> None:
        usage.collect(event.metrics)
        logger.debug("metrics %s", type(event.metrics).__name__, extra=where)

    @session.on("close")
    def _on_close(_event: object) -> None:
        logger.info("call usage: %s", usage.get_summary(), extra=where)

    logger.debug("conversation logs attached", extra=where)
