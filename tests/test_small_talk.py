"""What the local answerer says to what is not a question (agent/engines/small_talk.py), on
labelled utterances, and through the FAQ answerer of a demo account."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.engines import small_talk
from agent.engines.faq_llm import FaqLLM

CLOSING = small_talk.closing_reply("Harbor Dental")

LABELLED = [
    # Asking for a moment (said over an answer, this stopped the agent, then was handed off).
    ("Wait, wait, hold on a second.", small_talk.HOLD_REPLY),
    ("Hang on, let me grab my card.", small_talk.HOLD_REPLY),
    ("One moment please.", small_talk.HOLD_REPLY),
    ("Just a sec.", small_talk.HOLD_REPLY),
    ("Let me check my calendar.", small_talk.HOLD_REPLY),
    # Thanks and goodbyes.
    ("Thanks, that's all I needed.", CLOSING),
    ("Okay, thank you, bye.", CLOSING),
    ("Thank you so much.", CLOSING),
    ("That's it, have a good day.", CLOSING),
    # Checking the line.
    ("Hello?", small_talk.PRESENCE_REPLY),
    ("Hello? Is anyone there?", small_talk.PRESENCE_REPLY),
    ("Can you hear me?", small_talk.PRESENCE_REPLY),
    # Not for small talk: a person asked for, a question, or more said than any of the three.
    ("Can I talk to a person?", None),
    ("Hold on, can I speak to someone at the front desk?", None),
    ("Thanks, but could you transfer me?", None),
    ("Wait, what?", None),
    ("Thanks, and is there parking nearby?", None),
    ("Do you sell concert tickets?", None),
    ("So we just got a new puppy and, um, can we sign him up?", None),
    ("Hi, I was wondering whether you could tell me about your weekend opening times", None),
    ("", None),
]


@pytest.mark.parametrize(("said", "expected"), LABELLED)
def test_each_labelled_utterance_gets_its_reply(said: str, expected: str | None) -> None:
    assert small_talk.reply(said, "Harbor Dental") == expected


@pytest.mark.slow
def test_the_answerer_says_them_only_where_no_stored_answer_matches(
    faq_llm_for: Callable[[str], FaqLLM],
) -> None:
    answerer = faq_llm_for("harbor-dental")
    account = answerer.account
    assert answerer.answer("Wait, wait, hold on a second.")[0] == small_talk.HOLD_REPLY
    # The business's own goodbye (a stored answer, as both demo accounts have) comes first.
    goodbye = next(faq.answer for faq in account.faqs if faq.id == "thanks")
    assert answerer.answer("Okay, thank you, bye.")[0] == goodbye
    assert answerer.answer("Hello?")[0] == small_talk.PRESENCE_REPLY
    # A question the business answers is answered; one it does not is still handed off.
    assert "cleaning" in answerer.answer("How much does a teeth cleaning cost?")[0]
    assert answerer.answer("Do you sell concert tickets?")[0] == account.handoff_phrase
    assert answerer.answer("Hold on, can I talk to a person?")[0] == account.handoff_phrase
