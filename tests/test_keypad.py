"""A phone's keys: 0 asks for a person at any moment, the account's keys say their answers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent.accounts import Account, AccountRegistry
from agent.call.keypad import PRESSED_ZERO, Keypad, attach


class FakeSession:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def interrupt(self, *, force: bool = False) -> None:
        self.events.append(("interrupt", str(force)))

    def say(self, text: str) -> None:
        self.events.append(("say", text))


class FakeHandoffs:
    def __init__(self, *, busy: bool = False) -> None:
        self.busy = busy
        self.requests: list[tuple[str, bool]] = []

    def request(self, reason: str, *, line_pending: bool = False) -> bool:
        self.requests.append((reason, line_pending))
        return not self.busy


@pytest.fixture
def account(registry: AccountRegistry) -> Account:
    base = registry.accounts["harbor-dental"]
    return base.model_copy(update={"keypad": {"1": base.faqs[0].id}})


def test_zero_cuts_the_agent_short_says_the_phrase_and_starts_the_handoff(account: Account) -> None:
    session, handoffs = FakeSession(), FakeHandoffs()
    Keypad(account, session, handoffs).pressed("0")
    assert handoffs.requests == [(PRESSED_ZERO, True)]
    assert session.events == [("interrupt", "True"), ("say", account.handoff_phrase)]


def test_zero_during_a_handoff_says_nothing_more(account: Account) -> None:
    session, handoffs = FakeSession(), FakeHandoffs(busy=True)
    Keypad(account, session, handoffs).pressed("0")
    assert len(handoffs.requests) == 1 and session.events == []


def test_a_key_says_its_answer_and_other_keys_do_nothing(account: Account) -> None:
    session, handoffs = FakeSession(), FakeHandoffs()
    keypad = Keypad(account, session, handoffs)
    keypad.pressed("1")
    assert session.events == [("interrupt", "True"), ("say", account.faqs[0].answer)]
    keypad.pressed("7")
    keypad.pressed("#")
    assert len(session.events) == 2 and handoffs.requests == []


def test_only_the_callers_own_keys_count(account: Account) -> None:
    from livekit import rtc

    class Room:
        def __init__(self) -> None:
            self.handlers: dict[str, Any] = {}

        def on(self, event: str, handler: Any) -> None:
            self.handlers[event] = handler

    class Person:
        def __init__(self, identity: str) -> None:
            self.identity = identity

    session, handoffs = FakeSession(), FakeHandoffs()
    room, caller = Room(), Person("sip_+15035550123")
    attach(room, caller, Keypad(account, session, handoffs))  # type: ignore[arg-type]
    on_key = room.handlers["sip_dtmf_received"]
    on_key(rtc.SipDTMF(code=0, digit="0", participant=Person("desk-ana-1")))  # type: ignore[arg-type]
    assert handoffs.requests == []
    on_key(rtc.SipDTMF(code=0, digit="0", participant=caller))  # type: ignore[arg-type]
    assert handoffs.requests == [(PRESSED_ZERO, True)]


def test_an_account_file_names_keys_and_faqs_it_has(account: Account) -> None:
    data = account.model_dump()
    with pytest.raises(ValidationError, match="'0' is not a key"):
        Account.model_validate({**data, "keypad": {"0": account.faqs[0].id}})
    with pytest.raises(ValidationError, match="names FAQ 'parking-lot'"):
        Account.model_validate({**data, "keypad": {"2": "parking-lot"}})
    assert Account.model_validate(data).keypad == {"1": account.faqs[0].id}
