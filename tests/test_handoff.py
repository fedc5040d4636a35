"""The handoff mechanism with fake ends and a fake call: no LiveKit server, no engines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agent import metrics
from agent.accounts import Account, AccountRegistry
from agent.call.handoff.core import (
    CLOSE_GRACE_S,
    HANDOFF,
    HANDOFF_QUESTION,
    HANDOFF_REASON,
    NO_ANSWER_REASON,
    TAKEN_BY,
    CallInfo,
    Handoff,
    HandoffRecords,
    no_take_line,
)
from agent.call.handoff.types import HandoffOutcome, HandoffRequest, HandoffResult


class FakeCall:
    """Records what the mechanism did to the call."""

    def __init__(self) -> None:
        self.attributes: dict[str, str] = {}
        self.published: list[dict[str, str]] = []
        self.said: list[str] = []
        self.stepped_back = False

    async def publish(self, attributes: dict[str, str]) -> None:
        self.published.append(dict(attributes))
        self.attributes.update(attributes)

    async def say(self, text: str) -> None:
        self.said.append(text)

    async def step_back(self) -> None:
        self.stepped_back = True


class FakeEnd:
    def __init__(
        self,
        name: str,
        result: HandoffResult | None = None,
        *,
        kinds: tuple[str, ...] = ("web", "app", "sip"),
        delay: float = 0.0,
        raises: bool = False,
        moves_the_caller: bool = False,
    ) -> None:
        self.name = name
        self.moves_the_caller = moves_the_caller
        self.overrun_s = 0.0
        self._result = result or HandoffResult(HandoffOutcome.TAKEN, taken_by="desk-1")
        self._kinds = kinds
        self._delay = delay
        self._raises = raises
        self.requests: list[tuple[HandoffRequest, float]] = []

    def handles(self, request: HandoffRequest) -> bool:
        return request.caller_kind in self._kinds

    async def connect(self, request: HandoffRequest, wait_s: float) -> HandoffResult:
        self.requests.append((request, wait_s))
        await asyncio.sleep(self._delay)
        if self._raises:
            raise RuntimeError("end broke")
        return self._result


@pytest.fixture
def account(registry: AccountRegistry) -> Account:
    return registry.accounts["harbor-dental"]


def _handoff(
    account: Account,
    ends: list[Any],
    tmp_path: Path,
    *,
    kind: str = "web",
    number: str | None = None,
    wait_s: float = 5.0,
    taken: list[bool] | None = None,
) -> tuple[Handoff, FakeCall]:
    call = FakeCall()
    info = CallInfo(account, "room-1", "web-abc", kind, number)  # type: ignore[arg-type]
    handoff = Handoff(
        info,
        call,
        ends,
        wait_s=wait_s,
        records=HandoffRecords(tmp_path),
        on_taken=(lambda: taken.append(True)) if taken is not None else None,
    )
    return handoff, call


def _count(end: str, outcome: str) -> float:
    return metrics.HANDOFFS.labels(end, outcome)._value.get()


async def test_faq_phrase_starts_a_handoff_that_the_desk_takes(account: Account, tmp_path: Path):
    desk = FakeEnd("desk")
    taken: list[bool] = []
    handoff, call = _handoff(account, [desk], tmp_path, taken=taken)
    before = _count("desk", "taken")
    handoff.caller_said("Do you sell pet insurance?")
    handoff.agent_said(account.handoff_phrase)
    assert handoff.busy
    await handoff.wait()
    # Published as requested (reason and question), then taken, on the agent's attributes.
    assert call.published[0][HANDOFF] == "requested"
    assert call.published[0][HANDOFF_REASON] == NO_ANSWER_REASON
    assert call.published[0][HANDOFF_QUESTION] == "Do you sell pet insurance?"
    assert call.attributes[HANDOFF] == "taken" and call.attributes[TAKEN_BY] == "desk-1"
    assert handoff.taken_by == "desk-1"
    # The phrase was said already: nothing more is said; the agent steps back.
    assert call.said == [] and call.stepped_back and taken == [True]
    assert _count("desk", "taken") == before + 1
    request, wait_s = desk.requests[0]
    assert request.question == "Do you sell pet insurance?" and wait_s == 5.0
    # A call once taken stays taken: later lines start nothing.
    handoff.agent_said(account.handoff_phrase)
    assert not handoff.busy and len(desk.requests) == 1


async def test_tool_handoff_is_requested_at_once_and_acted_on_after_the_agents_line(
    account: Account, tmp_path: Path
):
    desk = FakeEnd("desk")
    handoff, call = _handoff(account, [desk], tmp_path)
    handoff.caller_said("Can I talk to the dentist?")
    handoff.tool_called("wants the dentist")
    assert handoff.busy, "the desk hears of it when the model decides"
    for _ in range(5):
        await asyncio.sleep(0)
    assert call.published[0][HANDOFF] == "requested" and desk.requests
    assert call.said == [] and not call.stepped_back, "nothing before the agent's line is over"
    handoff.agent_said("Sure, one moment.")  # a cloud model's own words, not the phrase
    await handoff.wait()
    assert desk.requests[0][0].reason == "wants the dentist" and len(desk.requests) == 1
    assert call.said == [account.handoff_phrase], "the caller is told they are being connected"
    assert call.stepped_back


async def test_the_phrase_starts_the_handoff_as_the_agent_begins_saying_it(
    account: Account, tmp_path: Path
):
    # The desk sees the request while the phrase plays; the caller hears the phrase to its end
    # before the agent steps back for the person who took the call.
    desk = FakeEnd("desk")
    handoff, call = _handoff(account, [desk], tmp_path)
    handoff.caller_said("Do you sell pet insurance?")
    handoff.reply_started("We are open nine to five.")
    assert not handoff.busy, "an answer starts nothing"
    handoff.reply_started(account.handoff_phrase)
    assert handoff.busy
    for _ in range(5):
        await asyncio.sleep(0)
    assert call.published[0][HANDOFF] == "requested"
    assert call.published[0][HANDOFF_REASON] == NO_ANSWER_REASON
    assert desk.requests and not call.stepped_back, "taken, but the phrase is still playing"
    assert call.attributes[HANDOFF] == "requested", "its outcome is shown once acted on"
    handoff.agent_said(account.handoff_phrase)  # the phrase is over
    await handoff.wait()
    assert call.attributes[HANDOFF] == "taken" and call.stepped_back and call.said == []
    assert len(desk.requests) == 1, "the phrase's own line starts no second handoff"


async def test_a_transfer_waits_for_the_phrase_the_desk_does_not(account: Account, tmp_path: Path):
    # A SIP transfer ends the caller's leg with the agent: it starts once the phrase is over.
    transfer = FakeEnd("sip", moves_the_caller=True)
    handoff, call = _handoff(account, [transfer], tmp_path, kind="sip", number="+15035550123")
    handoff.reply_started(account.handoff_phrase)
    for _ in range(5):
        await asyncio.sleep(0)
    assert call.attributes[HANDOFF] == "requested", "published at once all the same"
    assert transfer.requests == [], "the caller is not moved while the phrase plays"
    handoff.agent_said(account.handoff_phrase)
    await handoff.wait()
    assert len(transfer.requests) == 1 and call.attributes[HANDOFF] == "taken"


async def test_a_line_that_never_ends_holds_the_outcome_only_so_long(
    account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("agent.call.handoff.core.LINE_WAIT_S", 0.05)
    handoff, call = _handoff(account, [FakeEnd("desk")], tmp_path)
    handoff.reply_started(account.handoff_phrase)
    await asyncio.wait_for(handoff.wait(), 2.0)
    assert call.stepped_back and call.attributes[HANDOFF] == "taken"


async def test_nobody_takes_it_the_caller_hears_the_no_take_line_and_the_record_is_kept(
    account: Account, tmp_path: Path
):
    desk = FakeEnd("desk", HandoffResult(HandoffOutcome.NOT_TAKEN, detail="nobody came"))
    handoff, call = _handoff(account, [desk], tmp_path, number=None)
    before = _count("desk", "not_taken")
    handoff.caller_said("Do you sell pet insurance?")
    handoff.agent_said(account.handoff_phrase)
    await handoff.wait()
    assert call.attributes[HANDOFF] == "not_taken" and not call.stepped_back
    assert len(call.said) == 1 and "noted your question" in call.said[0]
    assert _count("desk", "not_taken") == before + 1
    (record,) = HandoffRecords(tmp_path).latest(account.id)
    assert record["question"] == "Do you sell pet insurance?"
    assert record["outcome"] == "not_taken" and record["end"] == "desk"
    assert record["caller_identity"] == "web-abc" and record["reason"] == NO_ANSWER_REASON
    assert {"who": "caller", "text": "Do you sell pet insurance?"} in record["transcript"]
    # A later request is a new attempt (someone may be at the desk now).
    handoff.agent_said(account.handoff_phrase)
    await handoff.wait()
    assert len(desk.requests) == 2


async def test_first_end_that_handles_the_caller_is_used(account: Account, tmp_path: Path):
    sip = FakeEnd("sip", kinds=("sip",))
    desk = FakeEnd("desk", kinds=("web", "app"))
    handoff, _ = _handoff(account, [sip, desk], tmp_path, kind="web")
    handoff.request("x")
    await handoff.wait()
    assert not sip.requests and len(desk.requests) == 1

    busy = HandoffResult(HandoffOutcome.FAILED, detail="486 Busy Here")
    sip = FakeEnd("sip", busy, kinds=("sip",))
    desk = FakeEnd("desk", kinds=("web", "app"))
    handoff, call = _handoff(account, [sip, desk], tmp_path, kind="sip", number="+15550100")
    before = _count("sip", "failed")
    handoff.request("x")
    await handoff.wait()
    assert len(sip.requests) == 1 and not desk.requests
    assert call.attributes[HANDOFF] == "failed" and _count("sip", "failed") == before + 1
    assert "call you back" in call.said[0], "a caller with a number is told they'll be called"
    assert sip.requests[0][0].caller_number == "+15550100"


async def test_no_end_means_the_no_take_line_at_once(account: Account, tmp_path: Path):
    handoff, call = _handoff(account, [FakeEnd("desk", kinds=("app",))], tmp_path)
    before = _count("none", "not_taken")
    handoff.request("x")
    await asyncio.wait_for(handoff.wait(), 1.0)
    assert call.attributes[HANDOFF] == "not_taken" and _count("none", "not_taken") == before + 1
    assert call.said and call.said[0].startswith("I'm sorry")


async def test_an_end_that_overruns_or_raises_does_not_hold_the_caller(
    account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("agent.call.handoff.core.END_GRACE_S", 0.1)
    slow = FakeEnd("desk", delay=10.0)
    handoff, call = _handoff(account, [slow], tmp_path, wait_s=0.2)
    handoff.request("x")
    await asyncio.wait_for(handoff.wait(), 2.0)
    assert call.attributes[HANDOFF] == "not_taken" and call.said

    broken = FakeEnd("desk", raises=True)
    handoff, call = _handoff(account, [broken], tmp_path)
    handoff.request("x")
    await asyncio.wait_for(handoff.wait(), 2.0)
    assert call.attributes[HANDOFF] == "failed" and call.said


async def test_one_handoff_at_a_time_and_staff_taking_a_call_directly(
    account: Account, tmp_path: Path
):
    desk = FakeEnd("desk", delay=0.2)
    handoff, _ = _handoff(account, [desk], tmp_path)
    assert handoff.request("first")
    assert not handoff.request("second"), "one at a time"
    handoff.staff_joined("desk-2")  # the end takes it from here
    await handoff.wait()
    assert len(desk.requests) == 1

    # Take call on a call nobody asked about: the agent steps back at once.
    taken: list[bool] = []
    handoff, call = _handoff(account, [FakeEnd("desk")], tmp_path, taken=taken)
    handoff.staff_joined("desk-3")
    await handoff.wait()
    assert call.stepped_back and taken == [True]
    assert call.attributes[HANDOFF] == "taken" and call.attributes[TAKEN_BY] == "desk-3"
    assert not handoff.request("later"), "a taken call stays taken"


def test_short_lines_do_not_hand_off_and_the_transcript_is_bounded(
    account: Account, tmp_path: Path
) -> None:
    handoff, _ = _handoff(account, [], tmp_path)
    for i in range(40):
        handoff.caller_said(f"question number {i} " + "x" * 400)
    lines = json.loads(handoff.published_transcript)
    assert 1 <= len(lines) <= 12 and len(handoff.published_transcript) <= 3000
    assert lines[-1]["text"].startswith("question number 39")
    handoff.agent_said("Our hours are nine to five.")
    assert not handoff.busy


def test_no_take_line_names_the_business(account: Account) -> None:
    request = HandoffRequest(account.id, "r", "c", "web", None, "x", "q", 0.0)
    assert account.business_name in no_take_line(account, request)


async def test_a_caller_who_leaves_while_waiting_still_leaves_a_record(
    account: Account, tmp_path: Path
):
    handoff, _ = _handoff(account, [FakeEnd("desk", delay=10.0)], tmp_path, number="+15550100")
    handoff.caller_said("Can someone call me about my bill?")
    handoff.request("x")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(handoff.aclose(), CLOSE_GRACE_S + 2.0)
    (record,) = HandoffRecords(tmp_path).latest(account.id)
    assert record["outcome"] == "not_taken" and record["detail"] == "the caller left first"
    assert record["question"] == "Can someone call me about my bill?"
    assert record["caller_number"] == "+15550100"


async def test_a_transfer_that_ends_the_callers_leg_is_recorded_as_taken(
    account: Account, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    # A SIP transfer the person answered ends the caller's leg: the job closes the call
    # (caller gone) a moment before the API's answer arrives. The answer still counts.
    answered = HandoffResult(HandoffOutcome.TAKEN, taken_by="+15550199")
    transfer = FakeEnd("sip", answered, kinds=("sip",), delay=0.5)
    handoff, _ = _handoff(account, [transfer], tmp_path, kind="sip", number="+15550100")
    handoff.caller_said("Do you sell concert tickets?")
    before = _count("sip", "taken")
    handoff.request("x")
    await asyncio.sleep(0.05)
    with caplog.at_level("INFO", logger="firstword.handoff"):
        await asyncio.wait_for(handoff.aclose(), CLOSE_GRACE_S + 2.0)
    (record,) = HandoffRecords(tmp_path).latest(account.id)
    assert record["outcome"] == "taken" and record["taken_by"] == "+15550199", record
    assert _count("sip", "taken") == before + 1
    assert any(r.getMessage() == "handoff taken" for r in caplog.records)
