"""The Assistant in an AgentSession, driven by text through `AgentSession.run`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, ModelSettings, StopResponse, llm, stt
from livekit.agents.language import LanguageCode
from livekit.agents.voice.run_result import RunResult

from agent.accounts import AccountRegistry
from agent.call.assistant import Assistant
from agent.engines.faq_llm import FaqLLM


@pytest.mark.parametrize(
    ("account_id", "question", "expected"),
    [
        (
            "bluebird-bikes",
            "How much does it cost to rent an electric bike?",
            "Yes, city bikes rent for twenty-five dollars a day and electric bikes for fifty "
            "dollars a day. A helmet and a lock are included.",
        ),
        ("harbor-dental", "Can you recommend a good restaurant nearby?", None),  # handoff
    ],
)
async def test_assistant_answers_from_faqs_or_hands_off(
    registry: AccountRegistry,
    faq_llm_for: Callable[[str], FaqLLM],
    account_id: str,
    question: str,
    expected: str | None,
) -> None:
    account = registry.accounts[account_id]
    async with AgentSession(llm=faq_llm_for(account_id)) as session:
        await session.start(Assistant(account))
        result: RunResult[None] = await session.run(user_input=question)
        event = result.expect.next_event().is_message(role="assistant")
        assert event.event().item.text_content == (expected or account.handoff_phrase)
        result.expect.no_more_events()


async def test_assistant_that_stepped_back_does_not_answer(
    registry: AccountRegistry, faq_llm_for: Callable[[str], FaqLLM]
) -> None:
    """Once a person took the call (agent/call/handoff/), a turn already under way gets no
    reply."""
    account = registry.accounts["bluebird-bikes"]
    assistant = Assistant(account)
    async with AgentSession(llm=faq_llm_for(account.id)) as session:
        await session.start(assistant)
        assistant.stepped_back = True
        turn = llm.ChatContext.empty()
        with pytest.raises(StopResponse):
            await assistant.on_user_turn_completed(
                turn, llm.ChatMessage(role="user", content=["How much is an e-bike?"])
            )
        assistant.stepped_back = False
        await assistant.on_user_turn_completed(
            turn, llm.ChatMessage(role="user", content=["How much is an e-bike?"])
        )


async def test_each_final_transcript_is_read_before_the_framework_gets_it(
    registry: AccountRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The turn is decided ~15 ms after a final arrives: what may end it early must know first.
    order: list[str] = []

    async def recognised(*_: object) -> AsyncIterator[stt.SpeechEvent]:
        yield stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
        text = stt.SpeechData(language=LanguageCode("en"), text="How much is a cleaning?")
        yield stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[text])

    async def before_final(text: str) -> None:
        order.append(f"read: {text}")

    async def stuck(text: str) -> None:
        await asyncio.sleep(10)

    monkeypatch.setattr(Agent.default, "stt_node", recognised)
    account = registry.accounts["harbor-dental"]
    for hook, read in ((before_final, ["read: How much is a cleaning?"]), (stuck, [])):
        order.clear()
        agent = Assistant(account, before_final=hook)
        async for event in agent.stt_node(_no_audio(), ModelSettings()):
            order.append(event.type.value)
        # A hook that hangs costs at most its bound, and the words still go through.
        assert order == ["start_of_speech", *read, "final_transcript"], order


async def _no_audio() -> AsyncIterator[rtc.AudioFrame]:
    return
    yield


@pytest.mark.parametrize("transcripts", [False, True])
async def test_what_callers_say_reaches_the_log_only_when_asked(
    registry: AccountRegistry,
    faq_llm_for: Callable[[str], FaqLLM],
    caplog: pytest.LogCaptureFixture,
    transcripts: bool,
) -> None:
    from agent.call.call_log import attach_conversation_logs
    from agent.call.record import CallRecord

    account = registry.accounts["bluebird-bikes"]
    caplog.set_level("DEBUG", logger="firstword")
    said = "My name is Ada Quist, how much does it cost to rent an electric bike?"
    async with AgentSession(llm=faq_llm_for(account.id)) as session:
        await session.start(Assistant(account))
        attach_conversation_logs(
            session, CallRecord(room="r", account=account.id), transcripts=transcripts
        )
        await session.run(user_input=said)
    assert ("Ada Quist" in caplog.text) is transcripts
    assert ("fifty dollars" in caplog.text) is transcripts


def test_an_account_takes_no_typed_text_unless_it_says_so(registry: AccountRegistry) -> None:
    assert not any(a.typed_text for a in registry.accounts.values())
    account = registry.accounts["bluebird-bikes"]
    assert account.model_copy(update={"typed_text": True}).typed_text
