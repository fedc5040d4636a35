"""The Agent that speaks for one business on one call.

With a cloud model (Gemini) its instructions carry the business's facts and the rule to
hand off; with the FAQ answerer the facts are matched directly and the instructions are
not read. Either way it can hand the caller to a person with `hand_off_to_person`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from livekit import rtc
from livekit.agents import (
    Agent,
    ModelSettings,
    RunContext,
    StopResponse,
    function_tool,
    llm,
    stt,
)

from .. import metrics
from ..accounts import Account
from ..engines.answers import AnswerAudio
from ..engines.speculative_stt import BEFORE_FINAL_TIMEOUT_S

logger = logging.getLogger("firstword.assistant")


def grounded_instructions(account: Account) -> str:
    """The account's instructions, its facts, and how to answer on a phone line."""
    facts = "\n".join(f"- Q: {faq.questions[0]}\n  A: {faq.answer}" for faq in account.faqs)
    return (
        f"{account.instructions.strip()}\n\n"
        f"You answer the phone for {account.business_name}. These are the only facts you "
        f"know about the business:\n{facts}\n\n"
        "Rules: answer in one or two short spoken sentences, with no lists or markdown. "
        "State only the facts above; never guess prices, times or policies. If the caller "
        "asks for something the facts do not cover, or asks for a person, call "
        "hand_off_to_person."
    )


class Assistant(Agent):
    """A receptionist for `account`: answers from the business's facts, or hands off."""

    def __init__(
        self,
        account: Account,
        answer_audio: AnswerAudio | None = None,
        before_final: Callable[[str], Awaitable[None]] | None = None,
        drops_final: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(instructions=grounded_instructions(account))
        self.account = account
        # Told each final transcript before the framework decides the turn on it
        # (`turn_taking.TurnTaking.before_final`).
        self._before_final = before_final
        # Asked of each final transcript first: True keeps it out of the conversation (a
        # backchannel said over the agent, `agent/call/barge_in.py`).
        self._drops_final = drops_final
        self.handoffs: list[str] = []
        # Set only when the FAQ answerer and the local voice serve the call: its replies
        # arrive whole (one chunk), so waiting for the end of the text costs nothing.
        self._answer_audio = answer_audio
        # Set by agent/call/handoff/core.py once a person has taken the call: no more answers.
        self.stepped_back = False
        # The text of the reply being synthesised, as far as it has come: read when the agent
        # starts speaking, so the handoff is seen as its phrase begins (handoff/core.py).
        self._reply: list[str] = []

    @property
    def reply_text(self) -> str:
        return "".join(self._reply)

    async def on_user_turn_completed(
        self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage
    ) -> None:
        if self.stepped_back:  # a turn already on its way when the person took the call
            raise StopResponse()

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterator[stt.SpeechEvent]:
        """The session's recognition; each final transcript is first given to `before_final`
        (and not passed on at all when `drops_final` says so).

        The framework decides the turn ~15 ms after a final transcript arrives, so what
        decides it early (agent/call/turn_taking.py) must know the transcript before it is
        passed on. This node is the framework's public place to see the events first.
        """
        events = Agent.default.stt_node(self, audio, model_settings)
        async with contextlib.aclosing(events):
            async for event in events:
                if (
                    self._drops_final is not None
                    and event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
                    and self._drops_final(event.alternatives[0].text if event.alternatives else "")
                ):
                    continue
                if (
                    self._before_final is not None
                    and event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
                    and event.alternatives
                    and event.alternatives[0].text
                ):
                    try:
                        await asyncio.wait_for(
                            self._before_final(event.alternatives[0].text),
                            BEFORE_FINAL_TIMEOUT_S,
                        )
                    except Exception:
                        # Late or failed: only the early end of turn is lost, never the words.
                        logger.warning("before_final failed or was late; passing the transcript")
                yield event

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[rtc.AudioFrame]:
        """A stored answer's pre-rendered audio; anything else through the session's TTS.

        Preemptive generation runs this node too (before the turn is confirmed); its frames
        are only played once the turn is, so a cached answer is ready either way.
        """
        reply: list[str] = []
        self._reply = reply
        if self._answer_audio is None:
            async for frame in Agent.default.tts_node(self, _noted(text, reply), model_settings):
                yield frame
            return
        chunks = [chunk async for chunk in _noted(text, reply)]
        cached = self._answer_audio.frames("".join(chunks))
        metrics.ANSWER_CACHE.labels("hit" if cached is not None else "miss").inc()
        if cached is not None:
            for frame in cached:
                yield frame
            return
        async for frame in Agent.default.tts_node(self, _replay(chunks), model_settings):
            yield frame

    @function_tool
    async def hand_off_to_person(self, context: RunContext, reason: str) -> None:
        """Connect the caller with a person at the business.

        Args:
            reason: what the caller needs, in a few words.
        """
        self.handoffs.append(reason)
        logger.info("handoff requested", extra={"account": self.account.id, "reason": reason})
        # The account's fixed phrase is said here, and the tool returns nothing, so the
        # framework asks the model for no reply after it (`reply_required` is False for a
        # None output). Returning "say exactly this" cost a second model request, ~0.4-0.5 s
        # of first token, before every handoff; the phrase plays from the voice's cache.
        # Not awaited: the handle belongs to a speech that plays after this tool's turn.
        context.session.say(self.account.handoff_phrase)


async def _noted(text: AsyncIterable[str], into: list[str]) -> AsyncIterator[str]:
    """`text`, each chunk also kept in `into` as it passes."""
    async for chunk in text:
        into.append(chunk)
        yield chunk


async def _replay(chunks: list[str]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk
