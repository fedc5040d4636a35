"""What a caller says over the agent: a backchannel is kept out, anything else goes on to the
framework (and interrupts the agent)."""

from __future__ import annotations

from typing import cast

import pytest
from livekit.agents import AgentSession, UserStateChangedEvent, utils

from agent.call.barge_in import OverlapFilter, is_backchannel
from agent.call.turn_taking import turn_taking
from agent.settings import Settings
from tests.test_turn_taking import _engines


@pytest.mark.parametrize(
    "text",
    # As Whisper wrote them in the barge-in bench: "Mm-hmm." came back as "In Mm.", "Uh-huh."
    # as "Aha.".
    ["Mm-hmm.", "In Mm.", "Aha.", "Okay.", "Right.", "Yeah.", "I see.", "Okay, thanks.", ""],
)
def test_acknowledgements_and_no_words_are_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    [
        "Wait, wait, hold on a second.",
        "No.",
        "Hello?",
        "What?",
        "Sorry, can I ask something else?",
        "Yes, I'd like to book an appointment.",
        "Okay, but what about Sundays?",
        "Yeah, yeah, yeah, right.",  # four words: somebody is saying something
    ],
)
def test_requests_are_not_backchannels(text: str) -> None:
    assert not is_backchannel(text)


class _Session(utils.EventEmitter[str]):
    """The two things the filter reads of an `AgentSession`: its events and `agent_state`."""

    agent_state = "idle"


def _speaking(session: _Session, agent: str) -> None:
    """The agent is in state `agent` when the caller starts speaking."""
    session.agent_state = agent
    session.emit(
        "user_state_changed", UserStateChangedEvent(old_state="listening", new_state="speaking")
    )


def _attached(overlap: OverlapFilter) -> _Session:
    session = _Session()
    overlap.attach(cast(AgentSession, session))
    return session


def test_a_backchannel_over_the_agent_is_dropped_once_and_the_same_words_later_pass() -> None:
    overlap = OverlapFilter()
    session = _attached(overlap)

    _speaking(session, "speaking")
    assert overlap.drops("Mm-hmm.")
    assert not overlap.drops("Okay.")  # the next transcript is of a new utterance

    _speaking(session, "listening")  # the agent had finished: "okay" is an answer
    assert not overlap.drops("Okay.")

    _speaking(session, "speaking")
    assert not overlap.drops("Sorry, can I ask something else?")


def test_with_the_filter_off_every_transcript_over_the_agent_passes() -> None:
    overlap = OverlapFilter(enabled=False)
    session = _attached(overlap)
    _speaking(session, "speaking")
    assert not overlap.drops("Mm-hmm.")


def test_interruptions_are_by_voice_and_a_wordless_pause_resumes_the_agent() -> None:
    settings = Settings.model_validate(
        {"FIRSTWORD_MIN_INTERRUPTION": 0.2, "FIRSTWORD_FALSE_INTERRUPTION_TIMEOUT": 0.7}
    )
    engines = _engines()
    handling = turn_taking(settings, engines, engines.stt, object(), cloud=False).turn_handling
    assert handling["interruption"] == {
        "mode": "vad",
        "min_duration": 0.2,
        "resume_false_interruption": True,
        "false_interruption_timeout": 0.7,
    }
