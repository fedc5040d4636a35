"""The warm transfer's decisions (agent/call/handoff/warm.py) with a fake consult: no server.

What it does over a real SIP leg (the bridge dialling a phone that answers, keys pressed as
RFC 4733 events, who hears whom) is in tests/test_e2e_sip.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.accounts import Account, AccountRegistry
from agent.call.handoff import core, warm
from agent.call.handoff.core import CallInfo, Handoff, HandoffRecords
from agent.call.handoff.types import CallerKind, HandoffOutcome, HandoffRequest, HandoffResult

NUMBER = "+15035550177"


class FakeConsult:
    """Records what the warm transfer did; keys and failures are scripted."""

    def __init__(
        self,
        keys: list[str | None] | None = None,
        *,
        trunk: bool = True,
        dial_error: str | None = None,
        leaves_after: int | None = None,
        ring_s: float = 0.0,
    ) -> None:
        self.keys = list(keys or [])
        self.trunk = trunk
        self.dial_error = dial_error
        self.leaves_after = leaves_after  # the person hangs up after this many lines
        self.ring_s = ring_s
        self.steps: list[str] = []
        self.to_person: list[str] = []
        self.to_caller: list[str] = []
        self.dialled: list[tuple[str, float, list[str]]] = []
        self.finished: list[bool] = []

    async def can_dial(self) -> bool:
        self.steps.append("can_dial")
        return self.trunk

    async def start_hold(self) -> None:
        self.steps.append("hold")

    async def stop_hold(self) -> None:
        self.steps.append("unhold")

    async def dial(self, number: str, ring_s: float, lines: list[str]) -> None:
        self.steps.append("dial")
        self.dialled.append((number, ring_s, lines))
        await asyncio.sleep(self.ring_s)
        if self.dial_error:
            raise warm.DialFailed(self.dial_error)

    async def tell_person(self, text: str) -> None:
        if self.leaves_after is not None and len(self.to_person) >= self.leaves_after:
            raise warm.PersonLeft
        self.to_person.append(text)

    async def next_key(self, timeout_s: float) -> str | None:
        self.steps.append(f"key?{timeout_s:g}")
        return self.keys.pop(0) if self.keys else None

    async def tell_caller(self, text: str) -> None:
        self.to_caller.append(text)

    async def connect(self) -> None:
        self.steps.append("connect")

    async def finish(self, *, connected: bool) -> None:
        self.finished.append(connected)


class FakeBlind:
    name = "sip"
    moves_the_caller = True
    overrun_s = 0.0

    def __init__(self) -> None:
        self.requests: list[HandoffRequest] = []

    def handles(self, request: HandoffRequest) -> bool:
        return True

    async def connect(self, request: HandoffRequest, wait_s: float) -> HandoffResult:
        self.requests.append(request)
        return HandoffResult(HandoffOutcome.TAKEN, taken_by=NUMBER)


@pytest.fixture
def account(registry: AccountRegistry) -> Account:
    base = registry.accounts["harbor-dental"]
    return base.model_copy(update={"handoff_transfer": "warm", "handoff_number": NUMBER})


def _request(
    kind: CallerKind = "sip", question: str = "Do you sell concert tickets?"
) -> HandoffRequest:
    return HandoffRequest(
        "harbor-dental", "call-1", "sip_+1555", kind, "+15035550123", "why", question, 0.0
    )


def _end(account: Account, consult: FakeConsult) -> tuple[warm.WarmTransferEnd, FakeBlind]:
    blind = FakeBlind()
    return warm.WarmTransferEnd(account, consult, blind, answer_s=0.5), blind


async def test_the_person_who_presses_1_is_connected_after_the_briefing(account: Account):
    consult = FakeConsult(["1"])
    end, blind = _end(account, consult)
    result = await end.connect(_request(), 20.0)
    assert result.outcome == HandoffOutcome.TAKEN and result.taken_by == NUMBER
    # The caller is on hold before the person's phone rings; the person is dialled with the
    # ring time the handoff allows and the lines that may be said to them, made ahead.
    assert consult.steps[:3] == ["can_dial", "hold", "dial"]
    number, ring_s, lines = consult.dialled[0]
    assert number == NUMBER and ring_s == 20.0
    briefing = consult.to_person[0]
    assert briefing in lines and warm.CONNECTING in lines and warm.DECLINED in lines
    # Briefed first (who, what they asked, what to press), connected only after the 1.
    assert "concert tickets" in briefing and "Press 1" in briefing
    assert consult.to_person == [briefing, warm.CONNECTING]
    assert consult.to_caller == [warm.PUTTING_THROUGH_LINE]
    # The hold stops before the caller is told (its ring would go on under the line).
    assert consult.steps[-2:] == ["unhold", "connect"] and consult.finished == [True]
    assert blind.requests == []


async def test_a_2_declines_and_the_caller_is_given_back(account: Account):
    consult = FakeConsult(["2"])
    end, _ = _end(account, consult)
    result = await end.connect(_request(), 20.0)
    assert result.outcome == HandoffOutcome.FAILED and result.detail == "declined"
    assert consult.to_person[-1] == warm.DECLINED
    assert "connect" not in consult.steps and consult.to_caller == []
    assert consult.finished == [False]  # hung up on the person, the caller back with the agent


async def test_other_keys_are_ignored_until_1_or_2(account: Account):
    consult = FakeConsult(["5", "#", "1"])
    end, _ = _end(account, consult)
    assert (await end.connect(_request(), 20.0)).outcome == HandoffOutcome.TAKEN
    assert consult.to_person[1:] == [warm.CONNECTING]  # asked once: the 1 came in time


async def test_no_key_asks_again_then_gives_the_caller_back(account: Account):
    consult = FakeConsult([None, None])
    end, _ = _end(account, consult)
    result = await end.connect(_request(), 20.0)
    assert result.outcome == HandoffOutcome.FAILED
    assert result.detail == "no answer to the briefing"
    assert consult.to_person[1:] == [warm.ASK_AGAIN, warm.DECLINED]
    assert consult.steps.count("key?0.5") == 2 and consult.finished == [False]


async def test_a_busy_or_unanswered_phone_is_a_failure_with_its_status(account: Account):
    consult = FakeConsult(dial_error="486 Busy Here")
    end, _ = _end(account, consult)
    result = await end.connect(_request(), 20.0)
    assert result.outcome == HandoffOutcome.FAILED and result.detail == "486 Busy Here"
    assert result.extra == {"dialled": NUMBER}
    assert consult.to_person == [] and consult.finished == [False]


async def test_the_person_hanging_up_during_the_briefing_gives_the_caller_back(account: Account):
    consult = FakeConsult(leaves_after=0)
    end, _ = _end(account, consult)
    result = await end.connect(_request(), 20.0)
    assert result.outcome == HandoffOutcome.FAILED and result.detail == "the person hung up"
    assert consult.finished == [False]


async def test_the_caller_hanging_up_while_it_rings_still_hangs_up_on_the_person(
    account: Account,
):
    consult = FakeConsult(["1"], ring_s=5.0)
    end, _ = _end(account, consult)
    task = asyncio.create_task(end.connect(_request(), 20.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consult.finished == [False] and consult.to_person == []


async def test_without_the_outbound_trunk_the_caller_is_transferred_blind(account: Account):
    consult = FakeConsult(["1"], trunk=False)
    end, blind = _end(account, consult)
    result = await end.connect(_request(), 20.0)
    assert result.outcome == HandoffOutcome.TAKEN and len(blind.requests) == 1
    assert consult.steps == ["can_dial"]  # no hold, nothing dialled


def test_only_phone_callers_of_a_warm_account(account: Account, registry: AccountRegistry):
    end, _ = _end(account, FakeConsult())
    assert end.handles(_request("sip")) and not end.handles(_request("web"))
    blind_account = registry.accounts["harbor-dental"].model_copy(update={"handoff_number": NUMBER})
    blind_end, _ = _end(blind_account, FakeConsult())
    assert not blind_end.handles(_request("sip"))


def test_the_briefing_says_the_number_digit_by_digit_and_the_reason_without_a_question(
    account: Account,
):
    text = warm.briefing(account, _request())
    assert "5 0 3 5 5 5 0 1 2 3" in text and account.business_name in text
    bare = warm.briefing(account, _request(question=""))
    assert "The reason: why." in bare


def test_the_callers_lines_are_pre_rendered_for_warm_accounts_only(
    account: Account, registry: AccountRegistry
):
    assert warm.HOLD_LINE in warm.caller_lines(account)
    assert warm.caller_lines(registry.accounts["harbor-dental"]) == []


def test_a_warm_account_needs_an_e164_handoff_number(account: Account):
    data = account.model_dump()
    for number in (None, "sip:frontdesk@pbx.example.com"):
        with pytest.raises(ValidationError, match="handoff_transfer: warm"):
            Account.model_validate({**data, "handoff_number": number})
    with pytest.raises(ValidationError, match="handoff_transfer"):
        Account.model_validate({**data, "handoff_transfer": "cold"})
    assert Account.model_validate({**data, "handoff_transfer": "blind"}).handoff_number == NUMBER


class _Call:
    def __init__(self) -> None:
        self.said: list[str] = []

    async def publish(self, attributes: dict[str, str]) -> None:
        pass

    async def say(self, text: str) -> None:
        self.said.append(text)

    async def step_back(self) -> None:
        pass


class _Messages:
    def __init__(self) -> None:
        self.taken: list[HandoffRequest] = []

    async def take(self, request: HandoffRequest) -> None:
        self.taken.append(request)


async def test_the_mechanism_waits_out_the_briefing_and_offers_a_message_on_decline(
    account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The briefing comes after the ring time: the mechanism allows the end its overrun
    (here the whole decline takes longer than the handoff's wait plus its grace)."""

    class SlowConsult(FakeConsult):
        async def next_key(self, timeout_s: float) -> str | None:
            await asyncio.sleep(0.3)
            return await super().next_key(timeout_s)

    consult = SlowConsult(["2"])
    end = warm.WarmTransferEnd(account, consult, FakeBlind(), answer_s=0.5)
    end.overrun_s = 1.0
    messages = _Messages()
    info = CallInfo(account, "call-1", "sip_+1555", "sip", "+15035550123")
    handoff = Handoff(
        info,
        _Call(),
        [end],
        wait_s=0.01,
        records=HandoffRecords(tmp_path),
        messages=messages,
    )
    monkeypatch.setattr(core, "END_GRACE_S", 0.1)
    assert handoff.request("the caller asked for a person")
    await handoff.wait()
    (name, result), *_ = handoff.results
    assert name == "warm" and result.detail == "declined"
    assert [r.caller_kind for r in messages.taken] == ["sip"]
