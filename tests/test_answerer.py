"""The FAQ answerer: paraphrases reach the right fact; anything else is handed off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from livekit.agents import llm

from agent.accounts import AccountRegistry
from agent.engines import small_talk
from agent.engines.faq_llm import REPEAT_PHRASE, FaqLLM, Match

# Phrasings that are not in the account files.
PARAPHRASES = {
    "harbor-dental": [
        ("hours", "what time do you open in the morning"),
        ("hours", "are you open on sunday"),
        ("hours", "what are your hours on Saturday?"),
        ("location", "where is your office"),
        ("location", "where can I park my car"),
        ("insurance", "is my dental plan covered"),
        ("cleaning-price", "how much is a checkup"),
        ("cleaning-price", "what do you charge for a cleaning"),
        ("new-patients", "can I sign up as a new patient"),
        ("emergency", "my tooth hurts really bad, can I come in today"),
        ("emergency", "I chipped my tooth"),
        ("thanks", "ok thanks bye"),
    ],
    "bluebird-bikes": [
        ("hours", "when do you open"),
        ("tune-up", "how much for a service"),
        ("tune-up", "my tire is flat, how much to fix it"),
        ("rentals", "can I rent an e-bike"),
        ("location", "where are you"),
    ],
}
OFF_TOPIC = {
    "harbor-dental": [
        "do you sell pizza",
        "what's the weather like tomorrow",
        "can you do teeth whitening",
        "who won the football game last night",
        "do you do braces for kids",
        "can I speak to doctor smith",
        "is the dentist a woman",
    ],
    "bluebird-bikes": ["do you sell skateboards", "what's the capital of france"],
}


@pytest.mark.parametrize("account_id", sorted(PARAPHRASES))
def test_paraphrases_get_the_right_answer(
    registry: AccountRegistry, faq_llm_for: Callable[[str], FaqLLM], account_id: str
) -> None:
    faq_llm = faq_llm_for(account_id)
    answers = {f.id: f.answer for f in registry.accounts[account_id].faqs}
    for faq_id, question in PARAPHRASES[account_id]:
        text, match = faq_llm.answer(question)
        assert match is not None and match.faq is not None
        assert (match.faq.id, text) == (faq_id, answers[faq_id]), question


@pytest.mark.parametrize("account_id", sorted(OFF_TOPIC))
def test_off_topic_questions_are_handed_off(
    registry: AccountRegistry, faq_llm_for: Callable[[str], FaqLLM], account_id: str
) -> None:
    faq_llm = faq_llm_for(account_id)
    handoff = registry.accounts[account_id].handoff_phrase
    for question in OFF_TOPIC[account_id]:
        text, _ = faq_llm.answer(question)
        assert text == handoff, question


def test_answers_are_only_ever_stored_text(
    registry: AccountRegistry, faq_llm_for: Callable[[str], FaqLLM]
) -> None:
    account = registry.accounts["harbor-dental"]
    faq_llm = faq_llm_for("harbor-dental")
    allowed = {f.answer for f in account.faqs} | {account.handoff_phrase}
    allowed.add(REPEAT_PHRASE)
    for question in ["", "hm", "tell me a joke about teeth", "what is two plus two", "book me in"]:
        assert faq_llm.answer(question)[0] in allowed


async def test_chat_stream_answers_the_last_user_message(
    faq_llm_for: Callable[[str], FaqLLM],
) -> None:
    faq_llm = faq_llm_for("harbor-dental")
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="Do you sell pizza?")
    ctx.add_message(role="assistant", content="...")
    ctx.add_message(role="user", content="How much does a cleaning cost?")
    text = ""
    async with faq_llm.chat(chat_ctx=ctx) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                text += chunk.delta.content
    assert "one hundred and twenty dollars" in text


def test_one_word_utterances(faq_llm_for: Callable[[str], FaqLLM]) -> None:
    faq_llm = faq_llm_for("harbor-dental")
    assert faq_llm.answer("Insurance?")[1].faq.id == "insurance"  # type: ignore[union-attr]
    assert faq_llm.answer("Parking?")[1].faq.id == "location"  # type: ignore[union-attr]
    for noise in ("um", "", "  "):
        assert faq_llm.answer(noise)[0] == REPEAT_PHRASE
    # Checking the line is answered, not asked to repeat (agent/engines/small_talk.py).
    assert faq_llm.answer("Hello?")[0] == small_talk.PRESENCE_REPLY


def test_the_answer_reuses_the_match_made_when_the_transcript_was_final(
    faq_llm_for: Callable[[str], FaqLLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    faq = faq_llm_for("harbor-dental")
    index = faq._index
    calls: list[str] = []
    best = index.best

    def counting(question: str) -> Match:
        calls.append(question)
        return best(question)

    monkeypatch.setattr(index, "best", counting)
    question = "How much does a cleaning cost?"
    match = faq.match(question)
    text, again = faq.answer(f"  {question} ")
    assert calls == [question] and again is match  # matched once, for the turn and the answer
    assert match is not None and match.faq is not None and text == match.faq.answer
    assert faq.match("") is None
