"""The Assistant in an AgentSession, driven by text through `AgentSession.run`."""

from __future__ import annotations

from livekit.agents import AgentSession

from agent.accounts import AccountRegistry
from agent.assistant import Assistant
from agent.engines.embedder import Embedder
from agent.engines.faq_llm import FaqIndex, FaqLLM


def _session_llm(registry: AccountRegistry, embedder: Embedder, account_id: str) -> FaqLLM:
    account = registry.accounts[account_id]
    return FaqLLM(account, FaqIndex(embedder, list(account.faqs)), min_score=0.5)


async def test_assistant_answers_from_the_faqs(
    registry: AccountRegistry, embedder: Embedder
) -> None:
    account = registry.accounts["bluebird-bikes"]
    async with AgentSession(llm=_session_llm(registry, embedder, account.id)) as session:
        await session.start(Assistant(account))
        result = await session.run(user_input="How much does it cost to rent an electric bike?")
        event = result.expect.next_event().is_message(role="assistant")
        assert "electric bikes for fifty dollars a day" in (event.event().item.text_content or "")
        result.expect.no_more_events()


async def test_assistant_hands_off_what_it_does_not_know(
    registry: AccountRegistry, embedder: Embedder
) -> None:
    account = registry.accounts["harbor-dental"]
    async with AgentSession(llm=_session_llm(registry, embedder, account.id)) as session:
        await session.start(Assistant(account))
        result = await session.run(user_input="Can you recommend a good restaurant nearby?")
        event = result.expect.next_event().is_message(role="assistant")
        assert event.event().item.text_content == account.handoff_phrase
        result.expect.no_more_events()
