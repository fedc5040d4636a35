"""Turn-taking of a call: speculative recognition wired for the local Whisper only, and the
early end of turn on a confident FAQ match or a whole question."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import MagicMock

from livekit.agents import stt

from agent.accounts.models import FAQ
from agent.call.turn_taking import (
    EarlyEndpointing,
    looks_unfinished,
    reads_as_question,
    turn_taking,
)
from agent.engines.faq_llm import FaqLLM, Match
from agent.engines.pools import CallEngines
from agent.engines.speculative_stt import SpeculativeSTT
from agent.settings import Settings

FAQ_ITEM = FAQ(
    id="cleaning", questions=["How much is a cleaning?", "Cleaning price?"], answer="120 dollars."
)


def _engines(llm: FaqLLM | None = None) -> CallEngines:
    local = MagicMock(spec=stt.STT)
    return cast(
        CallEngines,
        SimpleNamespace(
            stt=local,
            vad=MagicMock(),
            turn_detector=object(),
            llm=llm if llm is not None else MagicMock(spec=FaqLLM),
        ),
    )


def _settings(**values: Any) -> Settings:
    return Settings.model_validate(
        {
            "FIRSTWORD_SPECULATIVE_STT": True,
            "FIRSTWORD_EARLY_TURN_SCORE": 0.8,
            "FIRSTWORD_MIN_ENDPOINTING_DELAY": 0.3,
            "FIRSTWORD_MAX_ENDPOINTING_DELAY": 1.2,
            "FIRSTWORD_MIN_INTERRUPTION": 0.4,
            "FIRSTWORD_QUESTION_ENDS_TURN": False,
            **values,
        }
    )


def test_confident_match_needs_only_the_short_delay_until_the_caller_speaks_again() -> None:
    endpointing = EarlyEndpointing(0.3, 1.2, early_score=0.8)
    assert endpointing.max_delay == 1.2
    endpointing.on_match("how much is a cleaning", Match(FAQ_ITEM, 0.95, "x"))
    assert endpointing.max_delay == 0.3
    endpointing.on_start_of_speech(0.0)  # the caller goes on: what matched was a part
    assert endpointing.max_delay == 1.2
    endpointing.on_match("how much", Match(FAQ_ITEM, 0.6, "x"))
    assert endpointing.max_delay == 1.2
    endpointing.on_match("do you sell tickets", Match(None, 0.9, ""))
    assert endpointing.max_delay == 1.2


def test_local_whisper_gets_speculative_recognition_and_the_faq_answerer_early_turns() -> None:
    llm = MagicMock(spec=FaqLLM)
    engines = _engines(llm)
    turns = turn_taking(_settings(), engines, engines.stt, llm, cloud=False)
    assert isinstance(turns.stt, SpeculativeSTT) and turns.stt.wrapped_stt is engines.stt
    assert turns.endpointing is not None and llm.on_match == turns.endpointing.on_match
    handling = turns.turn_handling
    assert handling["endpointing"] == {"min_delay": 0.3, "max_delay": 1.2}
    assert handling["interruption"]["min_duration"] == 0.4
    assert handling["preemptive_generation"]["preemptive_tts"] is True


async def test_a_cloud_recogniser_is_left_as_it_is_and_its_finals_decide_the_turn() -> None:
    # Gemini answers, but the account's FAQs still tell a whole question from a part.
    engines = _engines()
    cast(MagicMock, engines.llm).match.return_value = Match(FAQ_ITEM, 0.95, "x")
    cloud_stt = MagicMock(spec=stt.STT)
    turns = turn_taking(_settings(), engines, cloud_stt, object(), cloud=True)
    assert turns.stt is cloud_stt and turns.endpointing is not None
    assert turns.turn_handling["preemptive_generation"]["preemptive_tts"] is False
    assert turns.before_final is not None and turns.endpointing.max_delay == 1.2
    await turns.before_final("How much is a cleaning?")
    assert turns.endpointing.max_delay == 0.3 and turns.endpointing.min_delay == 0.3
    turns.endpointing.on_start_of_speech(0.0)
    await turns.before_final("I wanted to ask about")  # matched, but it reads unfinished
    assert turns.endpointing.min_delay == 2.0 and turns.endpointing.max_delay == 2.0


async def test_settings_turn_both_off() -> None:
    engines = _engines()
    cast(MagicMock, engines.llm).match.return_value = Match(FAQ_ITEM, 0.95, "x")
    settings = _settings(FIRSTWORD_SPECULATIVE_STT=False, FIRSTWORD_EARLY_TURN_SCORE=0)
    turns = turn_taking(settings, engines, engines.stt, engines.llm, cloud=False)
    assert turns.stt is engines.stt and turns.endpointing is not None
    assert turns.before_final is not None
    await turns.before_final("How much is a cleaning?")
    assert turns.endpointing.max_delay == 1.2  # no early end of turn
    cast(MagicMock, engines.llm).match.assert_not_called()
    await turns.before_final("I was wondering if")  # the words are still read
    assert turns.endpointing.min_delay == 2.0  # FIRSTWORD_UNFINISHED_DELAY


def test_transcripts_that_read_unfinished() -> None:
    for text in (
        "So my question is...",
        "Could you tell me what?",
        "Um.",
        "I was wondering if",
        "So my question.",  # Whisper dropped the "is" before the pause
        "I wanted to ask.",
        "The thing is,",
    ):
        assert looks_unfinished(text), text
    for text in (
        "How much is a cleaning?",
        "Can you call me?",
        "I'd like to know.",
        "",
        "Do you rent city bikes for $25?",  # ends on "25", not on "for"
        "Are you open at 9 30?",
        "Can I ask you a question?",
    ):
        assert not looks_unfinished(text), text


def test_a_question_ending_on_a_preposition_is_whole_with_its_question_mark() -> None:
    """An unseen account's "... is that something you deal with?" waited the 2 s unfinished
    delay every time although its final transcript was there at ~390 ms."""
    for text in (
        "Water in the basement, is that something you deal with?",
        "Who should I talk to?",
        "What is this charge for?",
        "Which form is this one for?",
        "What are the cleanings made of?",
    ):
        assert not looks_unfinished(text), text
        assert reads_as_question(text), text
    for text in (
        "Is that something you deal with",  # no question mark: the caller may go on
        "I'm calling about",
        "I'm calling about?",  # announces what comes
        "Could you tell me about?",
        "I was wondering about?",
        "Go to?",  # too short to be sure
        "Could you tell me what?",  # not a preposition: still unfinished
        "Is it the?",
    ):
        assert looks_unfinished(text), text
        assert not reads_as_question(text), text


def test_an_unfinished_transcript_waits_the_long_delay_even_when_it_matches() -> None:
    endpointing = EarlyEndpointing(0.3, 1.2, early_score=0.8)
    endpointing.on_transcript("Could you tell me what?")
    endpointing.on_match("Could you tell me what?", Match(FAQ_ITEM, 0.95, "x"))
    assert endpointing.min_delay == 1.2 and endpointing.max_delay == 1.2
    endpointing.on_start_of_speech(0.0)
    endpointing.on_transcript("Could you tell me what a cleaning costs?")
    assert endpointing.min_delay == 0.3


def test_speculative_recognition_tells_the_endpointing_its_words() -> None:
    engines = _engines()
    turns = turn_taking(
        _settings(FIRSTWORD_EARLY_TURN_SCORE=0), engines, engines.stt, object(), cloud=False
    )
    assert isinstance(turns.stt, SpeculativeSTT) and turns.endpointing is not None
    assert turns.stt.on_transcript == turns.endpointing.on_transcript
    turns.endpointing.on_match("how much is a cleaning", Match(FAQ_ITEM, 5.0, "x"))
    assert turns.endpointing.max_delay == 1.2  # early end of turn is off


async def test_the_match_is_known_before_the_final_transcript_is_sent() -> None:
    # The framework decides the turn as soon as the final transcript arrives; the match
    # made by preemptive generation came later, so the early end of turn never applied.
    llm = MagicMock(spec=FaqLLM)
    llm.match.return_value = Match(FAQ_ITEM, 0.95, "x")
    engines = _engines(llm)
    turns = turn_taking(_settings(), engines, engines.stt, llm, cloud=False)
    assert isinstance(turns.stt, SpeculativeSTT) and turns.endpointing is not None
    assert turns.stt.before_final is not None
    assert turns.endpointing.max_delay == 1.2
    await turns.stt.before_final("How much is a cleaning?")
    llm.match.assert_called_once_with("How much is a cleaning?")
    assert turns.endpointing.max_delay == 0.3


def test_no_match_before_the_final_when_early_end_of_turn_is_off() -> None:
    engines = _engines()
    turns = turn_taking(
        _settings(FIRSTWORD_EARLY_TURN_SCORE=0),
        engines,
        engines.stt,
        MagicMock(spec=FaqLLM),
        cloud=False,
    )
    assert isinstance(turns.stt, SpeculativeSTT) and turns.stt.before_final is None


def test_transcripts_that_read_as_a_whole_question() -> None:
    for text in (
        "Do you sell kayaks?",
        "Can I pay with Bitcoin?",
        "Can you call me?",
        "My number is 503-555-0142. Can you call me back?",
    ):
        assert reads_as_question(text), text
    for text in (
        "Do you sell kayaks.",  # no question mark: Whisper did not hear one
        "Could you tell me what?",  # reads unfinished
        "Could you tell me?",  # asks for more: the caller goes on
        "Do you know?",
        "I wanted to ask?",
        "Sorry?",  # too short to be the question
        "",
    ):
        assert not reads_as_question(text), text


async def test_a_whole_question_ends_the_turn_early_matched_or_not() -> None:
    # An off-topic question (no FAQ matches it; it is handed off) waited the long delay.
    engines = _engines()
    cast(MagicMock, engines.llm).match.return_value = Match(None, 0.3, "")
    turns = turn_taking(
        _settings(FIRSTWORD_QUESTION_ENDS_TURN=True),
        engines,
        MagicMock(spec=stt.STT),
        object(),
        cloud=True,
    )
    assert turns.before_final is not None and turns.endpointing is not None
    await turns.before_final("Do you sell kayaks?")
    assert turns.endpointing.max_delay == 0.3
    turns.endpointing.on_start_of_speech(0.0)  # the caller goes on: it was a part
    assert turns.endpointing.max_delay == 1.2
    await turns.before_final("Do you sell kayaks.")
    assert turns.endpointing.max_delay == 1.2


def test_a_whole_question_waits_when_the_rule_is_off() -> None:
    endpointing = EarlyEndpointing(0.3, 1.2, early_score=0.8, question_ends_turn=False)
    endpointing.on_transcript("Do you sell kayaks?")
    assert endpointing.max_delay == 1.2


def test_speech_still_being_recognised_waits_the_long_delay() -> None:
    # "So my question is..." then a pause, then "where your office is": the framework decided
    # on the first part's words while the second part was still being recognised.
    endpointing = EarlyEndpointing(0.25, 1.5, early_score=0.8, question_ends_turn=True)
    endpointing.on_transcript("So my question is...")
    endpointing.on_start_of_speech(0.0)  # the caller goes on
    endpointing.on_recognising(True)
    assert endpointing.min_delay == 1.5 and endpointing.max_delay == 1.5
    endpointing.on_transcript("Where is your office?")  # a preflight: the final follows
    assert endpointing.min_delay == 1.5
    endpointing.on_recognising(False)  # the final is sent
    assert endpointing.min_delay == 0.25 and endpointing.max_delay == 0.25


def test_an_unfinished_transcript_waits_the_unfinished_delay() -> None:
    # Callers pause 1-1.5 s after "So my question is"; the 1.5 s long delay ran out first.
    endpointing = EarlyEndpointing(0.25, 1.5, early_score=0.8, unfinished_delay=2.0)
    endpointing.on_transcript("So my question.")
    assert endpointing.min_delay == 2.0 and endpointing.max_delay == 2.0
    endpointing.on_start_of_speech(0.0)
    assert endpointing.min_delay == 0.25 and endpointing.max_delay == 1.5
    # Never shorter than the long delay.
    assert (
        EarlyEndpointing(0.25, 1.5, early_score=0.8, unfinished_delay=1.0).unfinished_delay == 1.5
    )
