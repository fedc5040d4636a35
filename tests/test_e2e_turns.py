"""End to end: a question with a pause in the middle is answered as a whole, not cut off; a
backchannel over an answer does not stop it, an interruption does."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.accounts import AccountRegistry
from agent.engines.audio import float_to_int16_bytes
from agent.engines.local_tts import load_piper
from benchmarks.answers import barge_in_outcome
from caller.paused import paused_question
from tests.e2e_support import running_worker
from tests.test_e2e import assert_greeted, call

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worker_log(livekit_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_worker(tmp_path_factory.mktemp("worker") / "worker.log") as log:
        yield log


def test_a_paused_question_is_answered_as_a_whole(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    account = registry.accounts["harbor-dental"]
    voice = load_piper(None, threads=1, verify=False)
    # 0.9 s of silence after "I'd like to know": far longer than the VAD's end of speech.
    audio = paused_question(voice, "I'd like to know", "how much a cleaning costs.", 0.9)
    wav = tmp_path / "paused.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(voice.sample_rate)
        out.writeframes(float_to_int16_bytes(audio))
    report = call(tmp_path, "--account", account.id, "--wav", str(wav))
    assert_greeted(report, account)
    (turn,) = report["turns"]
    # Not cut off: the agent said nothing during the pause or the second half ...
    assert not turn["talked_over"], turn
    assert turn["latency_s"] is not None
    # ... and answered the whole question (the price), not its first half (a handoff).
    heard = turn["answer"].lower()
    assert "cleaning" in heard and ("120" in heard or "hundred" in heard), heard


HOURS = "What are your opening hours?"


def _said_over_the_answer(
    tmp_path: Path, registry: AccountRegistry, words: str
) -> tuple[dict, str]:
    """A call that asks for the (8 s) opening hours and says `words` 0.5 s into the answer;
    the report and what the agent did (`benchmarks.answers.barge_in_outcome`)."""
    report = call(tmp_path, "--account", "harbor-dental", "--question", HOURS, "--barge-in", words)
    silent = report["barge_in_s"]
    back = report["resumed_after_s"]
    outcome = barge_in_outcome(
        None if silent is None else silent * 1000,
        None if back is None else back * 1000,
        report["heard_after"],
        next(faq.answer for faq in registry.accounts["harbor-dental"].faqs if faq.id == "hours"),
    )
    return report, outcome


def test_a_backchannel_over_an_answer_does_not_stop_it(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    kept_out = worker_log.read_text().count("backchannel over the agent not passed on")
    report, outcome = _said_over_the_answer(tmp_path, registry, "Mm-hmm.")
    # The agent went on, or paused and resumed its answer: not stopped, not handed off.
    assert outcome in ("went on", "resumed"), report
    # ... because the words were kept from the framework (without that they interrupt it).
    assert worker_log.read_text().count("backchannel over the agent not passed on") > kept_out


def test_a_real_interruption_stops_the_answer(
    worker_log: Path, registry: AccountRegistry, tmp_path: Path
) -> None:
    report, outcome = _said_over_the_answer(tmp_path, registry, "Wait, wait, hold on a second.")
    assert outcome == "stopped", report
    assert report["barge_in_s"] < 1.5, report
    # What it says next answers the request for a moment; it does not hand the caller off.
    assert "take your time" in report["heard_after"].lower(), report
