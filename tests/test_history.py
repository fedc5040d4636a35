"""The call history: one record per call, and the questions the agent could not answer."""

from __future__ import annotations

from agent.call.history import entry
from agent.call.record import CallRecord

PHRASE = "I'm not sure about that one, so let me connect you with someone from our front desk team."


def _call() -> CallRecord:
    call = CallRecord(room="r1", account="harbor-dental", caller="sip_1", sip=True)
    call.started_at, call.caller_number, call.handoff = 100.0, "+15035550123", "taken"
    call.taken_by = "desk-maria-1a2b3c"
    call.turns = [
        {"question": "When are you open?", "answer": "We are open nine to five."},
        {"question": "Do you sell concert tickets?", "answer": PHRASE + " Sorry, nobody..."},
    ]
    return call


def test_an_entry_says_who_when_how_it_ended_and_what_went_unanswered() -> None:
    record = entry(_call(), handoff_phrase=PHRASE, ended_at=130.5, ended="caller left", ttfw_s=0.41)
    assert record["caller_kind"] == "sip" and record["caller_number"] == "+15035550123"
    assert (
        record["seconds"] == 30.5
        and record["ttfw_ms"] == 410
        and record["ended"] == "caller hung up"
    )
    assert [t["answered"] for t in record["turns"]] == [True, False]
    assert record["handoff"] == "taken" and record["taken_by"] == "desk-maria-1a2b3c"
    assert record["unanswered"] == ["Do you sell concert tickets?"]


def test_callers_words_stay_out_of_log_lines() -> None:
    fields = _call().log_fields()
    assert "turns" not in fields and fields["account"] == "harbor-dental"
