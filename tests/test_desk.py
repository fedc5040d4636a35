"""The front desk without a server: its password, its API, the call view, and the desk end."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livekit import api

from agent.accounts import AccountStore
from agent.handoff import HandoffRecords
from agent.handoff_types import HandoffOutcome, HandoffRequest
from agent.web.app import build_app
from agent.web.desk import Desk, DeskEnd, call_view
from agent.web.ratelimit import RateLimiter
from tests.conftest import ACCOUNTS_DIR
from tests.test_web import FakeTickets

SECRET = "correct horse battery staple"


class FakeDirectory:
    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self._calls = calls
        self.tickets: list[tuple[str, str]] = []

    async def calls(self) -> list[dict[str, Any]]:
        return self._calls

    def staff_ticket(self, room: str, name: str) -> dict[str, str]:
        self.tickets.append((room, name))
        return {"url": "ws://x", "token": "jwt", "room": room, "identity": "desk-1"}


def _call(room: str, account: str, state: str = "with agent") -> dict[str, Any]:
    return {"room": room, "account": account, "state": state, "started_at": 1.0}


async def _client(
    secret: str | None, tmp_path: Path, directory: FakeDirectory
) -> AsyncIterator[TestClient]:
    store = AccountStore(ACCOUNTS_DIR, "harbor-dental", ttl_seconds=60)
    desk = Desk(secret, directory, HandoffRecords(tmp_path), limiter=RateLimiter(3, 1))
    app = build_app(store, FakeTickets(), RateLimiter(3, 1), desk)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory(
        [_call("call-a", "harbor-dental", "handoff requested"), _call("call-b", "bluebird-bikes")]
    )


@pytest.fixture
async def open_desk(tmp_path: Path, directory: FakeDirectory) -> AsyncIterator[TestClient]:
    async for client in _client(SECRET, tmp_path, directory):
        yield client


AUTH = {"Authorization": f"Bearer {SECRET}"}


async def test_desk_is_closed_without_a_secret(tmp_path: Path, directory: FakeDirectory):
    async for client in _client(None, tmp_path, directory):
        for path in ("/desk", "/api/desk/calls", "/api/desk/messages?account=harbor-dental"):
            reply = await client.get(path, headers=AUTH)
            assert reply.status == 404, path
            assert "FIRSTWORD_DESK_SECRET" in (await reply.json())["error"]
        reply = await client.post("/api/desk/take", json={"room": "call-a"}, headers=AUTH)
        assert reply.status == 404 and not directory.tickets


async def test_wrong_or_missing_password_gets_401_and_nothing_about_calls(
    open_desk: TestClient, directory: FakeDirectory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": SECRET}):
        reply = await open_desk.get("/api/desk/calls", headers=headers)
        assert reply.status == 401
        text = await reply.text()
        assert "call-a" not in text and "harbor" not in text
    # Over the limit of wrong passwords: 429, still nothing about calls.
    reply = await open_desk.post("/api/desk/take", json={"room": "call-a"})
    assert reply.status == 429 and "Retry-After" in reply.headers
    assert not directory.tickets
    # The secret never reaches a log line (nor does what was tried).
    assert SECRET not in caplog.text and "nope" not in caplog.text


async def test_the_right_password_is_refused_while_the_client_is_over_its_limit(
    open_desk: TestClient, directory: FakeDirectory
) -> None:
    # A client that ignores the 429s and keeps guessing: its guesses are not even compared,
    # so the right one, when it comes, is refused too.
    statuses = [
        (await open_desk.get("/api/desk/calls", headers={"Authorization": f"Bearer g{i}"})).status
        for i in range(30)
    ]
    assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}
    reply = await open_desk.get("/api/desk/calls", headers=AUTH)
    assert reply.status == 429 and int(reply.headers["Retry-After"]) >= 1
    assert "call-a" not in await reply.text()


async def test_calls_filtered_by_account_and_take_gives_a_staff_token(
    open_desk: TestClient, directory: FakeDirectory
):
    reply = await open_desk.get("/api/desk/calls", headers=AUTH)
    assert reply.status == 200
    assert [c["room"] for c in (await reply.json())["calls"]] == ["call-a", "call-b"]
    reply = await open_desk.get("/api/desk/calls?account=harbor-dental", headers=AUTH)
    assert [c["room"] for c in (await reply.json())["calls"]] == ["call-a"]

    reply = await open_desk.post(
        "/api/desk/take", json={"room": "call-a", "name": "Maria"}, headers=AUTH
    )
    assert reply.status == 200 and (await reply.json())["identity"].startswith("desk-")
    assert directory.tickets == [("call-a", "Maria")]
    reply = await open_desk.post("/api/desk/take", json={"room": "call-zz"}, headers=AUTH)
    assert reply.status == 404 and "call-zz" in (await reply.json())["error"]
    reply = await open_desk.post("/api/desk/take", data=b"{", headers=AUTH)
    assert reply.status == 400


async def test_messages_are_the_accounts_handoff_records(open_desk: TestClient, tmp_path: Path):
    HandoffRecords(tmp_path).append({"account_id": "harbor-dental", "question": "pets?"})
    reply = await open_desk.get("/api/desk/messages?account=harbor-dental", headers=AUTH)
    assert (await reply.json())["records"][0]["question"] == "pets?"
    reply = await open_desk.get("/api/desk/messages?account=../etc", headers=AUTH)
    assert reply.status == 400
    page = await open_desk.get("/desk")
    assert page.status in (200, 503)  # 503 only where the bundle is not built
    if page.status == 200:
        assert "call-a" not in await page.text()


def _participant(
    identity: str, kind: api.ParticipantInfo.Kind, **attributes: str
) -> api.ParticipantInfo:
    return api.ParticipantInfo(identity=identity, kind=kind, attributes=attributes, joined_at=5)


def test_call_view_reads_the_agents_attributes() -> None:
    room = api.Room(name="call-x", metadata=json.dumps({"account": "harbor-dental"}))
    agent = _participant(
        "agent-1",
        api.ParticipantInfo.Kind.AGENT,
        **{
            "firstword.account": "harbor-dental",
            "firstword.handoff": "requested",
            "firstword.handoff_reason": "no stored answer matched the question",
            "firstword.handoff_question": "pet insurance?",
            "firstword.transcript": json.dumps([{"who": "caller", "text": "pet insurance?"}]),
            "firstword.call_started": "100.5",
        },
    )
    caller = _participant("web-1", api.ParticipantInfo.Kind.STANDARD)
    view = call_view(room, [agent, caller])
    assert view is not None
    assert view["account"] == "harbor-dental" and view["state"] == "handoff requested"
    assert view["handoff"]["question"] == "pet insurance?" and view["started_at"] == 100.5
    assert view["caller"]["identity"] == "web-1" and view["transcript"][0]["who"] == "caller"
    staff = _participant("desk-9", api.ParticipantInfo.Kind.STANDARD)
    taken = call_view(room, [agent, caller, staff])
    assert taken is not None and taken["state"] == "taken"
    assert taken["caller"]["identity"] == "web-1", "staff is never the caller"
    assert call_view(room, [agent]) is None, "a room waiting for its caller is no call yet"
    bare = call_view(room, [caller])
    assert bare is not None and bare["account"] == "harbor-dental"
    assert bare["state"] == "waiting for agent"


def test_the_desk_lists_only_firstword_call_rooms_of_a_known_account() -> None:
    caller = _participant("web-1", api.ParticipantInfo.Kind.STANDARD)
    meeting = api.Room(name="board-meeting", metadata=json.dumps({"account": "harbor-dental"}))
    assert call_view(meeting, [caller]) is None, "not a firstword call room"
    assert call_view(api.Room(name="call-y"), [caller]) is None, "no account: not ours"


class FakeRoom:
    def __init__(self) -> None:
        self.remote_participants: dict[str, Any] = {}
        self.handlers: list[Callable[[Any], None]] = []

    def on(self, _event: str, handler: Callable[[Any], None]) -> None:
        self.handlers.append(handler)

    def off(self, _event: str, handler: Callable[[Any], None]) -> None:
        self.handlers.remove(handler)

    def join(self, identity: str) -> None:
        participant = type("P", (), {"identity": identity, "name": "Maria"})()
        self.remote_participants[identity] = participant
        for handler in list(self.handlers):
            handler(participant)


def _request(kind: str = "web") -> HandoffRequest:
    return HandoffRequest("harbor-dental", "r", "web-1", kind, None, "x", "q", 0.0)  # type: ignore[arg-type]


async def test_desk_end_waits_for_a_staff_participant() -> None:
    room = FakeRoom()
    end = DeskEnd(room)  # type: ignore[arg-type]
    assert end.handles(_request("web")) and not end.handles(_request("sip"))
    task = asyncio.create_task(end.connect(_request(), 5.0))
    await asyncio.sleep(0.05)
    room.join("web-2")  # another caller is not staff
    await asyncio.sleep(0.05)
    assert not task.done()
    room.join("desk-7")
    result = await asyncio.wait_for(task, 1.0)
    assert result.outcome == HandoffOutcome.TAKEN and result.taken_by == "desk-7"
    assert not room.handlers, "the end stops listening"
    # Nobody comes: not taken after the wait.
    result = await DeskEnd(FakeRoom()).connect(_request(), 0.1)  # type: ignore[arg-type]
    assert result.outcome == HandoffOutcome.NOT_TAKEN
