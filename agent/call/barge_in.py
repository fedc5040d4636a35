"""Barge-in: what a caller says over the agent, and whether it stops the agent.

The framework pauses the agent's audio once the caller has spoken over it for
`FIRSTWORD_MIN_INTERRUPTION` (its interruption `min_duration`), and any final transcript
that then arrives interrupts the answer for good; with no transcript, the answer resumes
`FIRSTWORD_FALSE_INTERRUPTION_TIMEOUT` after the caller's speech ends (its false-interruption
handling). So a short acknowledgement over an answer ("mm-hmm", "okay", "right"), once
Whisper has written it down, cut the answer off and became a turn of its own, which the FAQ
answerer could not match and handed to a person.

`OverlapFilter` keeps such words from the framework: an utterance that began while the agent
was speaking, and whose final transcript is a few words none of which asks it to stop (or
nothing: a cough, a breath), is not passed on (`Assistant.stt_node` asks `drops`). The pause
it caused ends as a false interruption: the agent resumes its sentence where it stopped.
Anything else said over the agent is passed on and interrupts it, as before.

Written here because livekit-agents 1.8's own backchannel handling is the adaptive
(cloud) interruption model; with `mode: "vad"` (offline) every transcript interrupts.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from livekit.agents import AgentSession, UserStateChangedEvent

from .. import metrics

logger = logging.getLogger("firstword.barge_in")

# A few words said over the agent are taken as a request to stop only when one of them asks
# for it: Whisper writes short acknowledgements many ways, most of them words of no meaning
# here ("Mm-hmm." came back as "In Mm.", "in a mom.", "Hmm."; "Uh-huh." as "Aha."), so a list
# of acknowledgements missed them, while a caller who means to cut in says one of these, or
# says more than `MAX_BACKCHANNEL_WORDS` words.
STOP_WORDS = frozenset(
    "wait stop no nope not sorry hold hang excuse pardon what why how when where who which"
    " actually but hello hey question repeat again agent person human operator someone"
    " somebody representative help cancel".split()
)
MAX_BACKCHANNEL_WORDS = 3


def is_backchannel(text: str) -> bool:
    """True for a few words that do not ask the agent to stop ("Mm-hmm.", "Okay, right.",
    "I see") or none at all (a cough, a breath)."""
    words = re.findall(r"[a-z]+", text.lower())
    if len(words) > MAX_BACKCHANNEL_WORDS:
        return False
    return not any(word in STOP_WORDS for word in words)


class OverlapFilter:
    """Tells whether the utterance being transcribed began over the agent's speech.

    `attach` follows the session's public user-state event: the caller's speech starts (the
    VAD's start of speech) before the framework pauses the agent, so the session's
    `agent_state` at that moment says whether the caller spoke over it.
    """

    def __init__(self, where: dict[str, Any] | None = None, *, enabled: bool = True) -> None:
        self._where = where or {}
        self._enabled = enabled
        self._over_agent = False

    def attach(self, session: AgentSession[Any]) -> None:
        def _on_user_state(event: UserStateChangedEvent) -> None:
            if event.new_state == "speaking":
                self._over_agent = session.agent_state == "speaking"

        session.on("user_state_changed", _on_user_state)

    def drops(self, text: str) -> bool:
        """Whether this final transcript stays out of the conversation (a backchannel said
        over the agent); the utterance's overlap is used once."""
        over_agent, self._over_agent = self._over_agent, False
        if not over_agent:
            return False
        if self._enabled and is_backchannel(text):
            metrics.SPEECH_OVER_AGENT.labels("backchannel").inc()
            logger.info("backchannel over the agent not passed on", extra=self._where)
            return True
        metrics.SPEECH_OVER_AGENT.labels("interruption").inc()
        return False
