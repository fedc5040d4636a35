"""The front desk without a server: staff logins and sessions, what each login sees, the call
view, and the desk end."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livekit import api

from agent.accounts import AccountRegistry, AccountStore, load_accounts
from agent.accounts.books import MessageBook
from agent.accounts.history_store import CallHistory
from agent.accounts.staff import StaffFile
from agent.call.handoff.core import HandoffRecords
from agent.call.handoff.desk import DeskEnd
from agent.call.handoff.types import CALLBACK_ROOM_PREFIX, HandoffOutcome, HandoffRequest
from agent.web.app import build_app
from agent.web.clients import NO_PROXIES, TrustedProxies
from agent.web.desk import CallBackUnavailable, Desk, call_view
from agent.web.ratelimit import RateLimiter
from agent.web.sessions import COOKIE, LoginLockout
from tests.conftest import ACCOUNTS_DIR
from tests.test_web import Clock, FakeTickets

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "another long password"


class FakeDirectory:
    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self._calls = calls
        self.tickets: list[tuple[str, str]] = []
        self.dialled: list[tuple[str, str, str]] = []
        self.unavailable = False

    async def calls(self) -> list[dict[str, Any]]:
        return self._calls

    async def call_back(self, room: str, number: str, caller_id: str) -> None:
        if self.unavailable:
            raise CallBackUnavailable("call-backs are not set up")
        self.dialled.append((room, number, caller_id))

    def staff_ticket(self, room: str, name: str) -> dict[str, str]:
        self.tickets.append((room, name))
        return {"url": "ws://x", "token": "jwt", "room": room, "identity": f"desk-{name}-1"}


def _call(room: str, account: str, state: str = "with agent") -> dict[str, Any]:
    return {"room": room, "account": account, "state": state, "started_at": 1.0}


@pytest.fixture(scope="module")
def roster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """maria: harbor-dental only; owner: every account (hashing once per module: ~0.1 s each)."""
    path = tmp_path_factory.mktemp("staff") / "staff.json"
    staff = StaffFile(path)
    staff.add("maria", PASSWORD, frozenset({"harbor-dental"}))
    staff.add("owner", OTHER_PASSWORD, None)
    return path


@pytest.fixture
def staff_file(roster: Path, tmp_path: Path) -> StaffFile:
    path = tmp_path / "staff.json"
    shutil.copy(roster, path)
    return StaffFile(path)


async def _client(
    staff: StaffFile,
    tmp_path: Path,
    directory: FakeDirectory,
    *,
    proxies: TrustedProxies = NO_PROXIES,
    lockout: LoginLockout | None = None,
) -> AsyncIterator[TestClient]:
    store = AccountStore(ACCOUNTS_DIR, "harbor-dental", ttl_seconds=60)
    desk = Desk(
        staff,
        directory,
        HandoffRecords(tmp_path / "records"),
        store,
        history=CallHistory(tmp_path / "history"),
        voice_messages=MessageBook(tmp_path / "messages"),
        limiter=RateLimiter(3, 1),
        lockout=lockout,
    )
    app = build_app(store, FakeTickets(), RateLimiter(3, 1), desk, trusted_proxies=proxies)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory(
        [_call("call-a", "harbor-dental", "handoff requested"), _call("call-b", "bluebird-bikes")]
    )


@pytest.fixture
async def desk(
    staff_file: StaffFile, tmp_path: Path, directory: FakeDirectory
) -> AsyncIterator[TestClient]:
    async for client in _client(staff_file, tmp_path, directory):
        yield client


async def _login(client: TestClient, name: str, password: str, **headers: str) -> Any:
    return await client.post(
        "/api/desk/login", json={"name": name, "password": password}, headers=headers
    )


async def test_desk_is_closed_while_nobody_has_a_login(tmp_path: Path, directory: FakeDirectory):
    async for client in _client(StaffFile(tmp_path / "none.json"), tmp_path, directory):
        for path in ("/desk", "/api/desk/calls", "/api/desk/messages?account=harbor-dental"):
            reply = await client.get(path)
            assert reply.status == 404, path
            assert "add-staff" in (await reply.json())["error"]
        reply = await _login(client, "maria", PASSWORD)
        assert reply.status == 404
        reply = await client.post("/api/desk/take", json={"room": "call-a"})
        assert reply.status == 404 and not directory.tickets


async def test_without_a_session_or_with_a_wrong_password_nothing_about_calls(
    desk: TestClient, directory: FakeDirectory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    for path in ("/api/desk/calls", "/api/desk/me", "/api/desk/messages?account=harbor-dental"):
        reply = await desk.get(path)
        assert reply.status == 401, path
    # The old shared-password header opens nothing.
    reply = await desk.get("/api/desk/calls", headers={"Authorization": f"Bearer {PASSWORD}"})
    assert reply.status == 401
    for name, password in (("maria", "nope-nope-nope"), ("nobody", PASSWORD)):
        reply = await _login(desk, name, password)
        assert reply.status == 401 and "wrong name or password" in (await reply.json())["error"]
        assert "Set-Cookie" not in reply.headers
    reply = await desk.get("/api/desk/calls")
    text = await reply.text()
    assert reply.status == 401 and "call-a" not in text and "harbor" not in text
    # A login is JSON only (a cross-site form cannot post one).
    reply = await desk.post("/api/desk/login", data=f"name=maria&password={PASSWORD}")
    assert reply.status == 415
    # Neither password, nor what was tried, reaches a log line.
    assert PASSWORD not in caplog.text and "nope-nope-nope" not in caplog.text


async def test_the_right_password_is_refused_while_the_client_is_over_its_limit(
    desk: TestClient, directory: FakeDirectory
) -> None:
    # A client that ignores the 429s and keeps guessing: its guesses are not even compared,
    # so the right one, when it comes, is refused too.
    statuses = [(await _login(desk, "maria", f"guess-number-{i}")).status for i in range(8)]
    assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}
    reply = await _login(desk, "maria", PASSWORD)
    assert reply.status == 429 and int(reply.headers["Retry-After"]) >= 1
    assert "Set-Cookie" not in reply.headers


async def test_a_login_guessed_from_many_addresses_locks_and_says_so(
    staff_file: StaffFile, tmp_path: Path, directory: FakeDirectory
) -> None:
    clock = Clock()
    lockout = LoginLockout(free_after=3, base_s=30, max_s=900, clock=clock)
    proxies = TrustedProxies.parse("127.0.0.1")
    async for client in _client(staff_file, tmp_path, directory, proxies=proxies, lockout=lockout):
        # Each guess from a new address (through the trusted proxy): the per-client limit never
        # triggers, the per-login one does.
        for i in range(3):
            reply = await _login(
                client, "maria", f"wrong-{i}-xxxxx", **{"X-Forwarded-For": f"203.0.113.{i}"}
            )
            assert reply.status == 401
        reply = await _login(client, "maria", "wrong-3-xxxxx", **{"X-Forwarded-For": "203.0.113.3"})
        assert reply.status == 429
        assert "'maria' is locked" in (await reply.json())["error"]
        # The right password from yet another address: still locked, not compared.
        reply = await _login(client, "maria", PASSWORD, **{"X-Forwarded-For": "203.0.113.4"})
        assert reply.status == 429 and reply.headers["Retry-After"] == "30"
        # Another login is not affected.
        reply = await _login(client, "owner", OTHER_PASSWORD, **{"X-Forwarded-For": "203.0.113.5"})
        assert reply.status == 200
        # After the lock, one more wrong guess doubles it.
        clock.now += 31
        reply = await _login(client, "maria", "wrong-5-xxxxx", **{"X-Forwarded-For": "203.0.113.6"})
        assert reply.status == 429 and reply.headers["Retry-After"] == "60"
        clock.now += 61
        reply = await _login(client, "maria", PASSWORD, **{"X-Forwarded-For": "203.0.113.7"})
        assert reply.status == 200


async def test_a_session_is_a_strict_httponly_cookie_that_logout_ends(
    staff_file: StaffFile, tmp_path: Path, directory: FakeDirectory
) -> None:
    proxies = TrustedProxies.parse("127.0.0.1")
    async for client in _client(staff_file, tmp_path, directory, proxies=proxies):
        reply = await _login(client, "maria", PASSWORD)
        assert reply.status == 200
        assert await reply.json() == {"name": "maria", "accounts": ["harbor-dental"]}
        cookie = reply.headers["Set-Cookie"]
        assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Path=/api/desk" in cookie and "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        token = client.session.cookie_jar.filter_cookies(client.make_url("/api/desk/me"))[COOKIE]
        assert (await client.get("/api/desk/me")).status == 200
        reply = await client.post("/api/desk/logout", json={})
        assert reply.status == 200
        # The old cookie, sent again by hand (a copy someone kept), opens nothing any more.
        client.session.cookie_jar.clear()
        reply = await client.get("/api/desk/me", headers={"Cookie": f"{COOKIE}={token.value}"})
        assert reply.status == 401
        # Behind the TLS proxy: Secure too.
        reply = await _login(client, "maria", PASSWORD, **{"X-Forwarded-Proto": "https"})
        assert "Secure" in reply.headers["Set-Cookie"]


async def test_a_removed_or_repassworded_login_ends_its_sessions(
    desk: TestClient, staff_file: StaffFile
) -> None:
    assert (await _login(desk, "maria", PASSWORD)).status == 200
    assert (await desk.get("/api/desk/calls")).status == 200
    staff_file.add("maria", "a brand new password", frozenset({"harbor-dental"}), replace=True)
    reply = await desk.get("/api/desk/calls")
    assert reply.status == 401 and "changed or removed" in (await reply.json())["error"]
    assert (await _login(desk, "maria", "a brand new password")).status == 200
    staff_file.remove("maria")
    assert (await desk.get("/api/desk/calls")).status == 401


async def test_staff_read_the_call_history_of_their_accounts_only(desk: TestClient, tmp_path: Path):
    history = CallHistory(tmp_path / "history")
    for question in ("Do you take pets?", "Do you take pets", "Is there parking?"):
        history.append(
            {
                "account": "harbor-dental",
                "ended_at": 1.0,
                "turns": [{"question": question, "answer": "...", "answered": False}],
                "unanswered": [question],
            }
        )
    history.append({"account": "bluebird-bikes", "unanswered": ["the other business's caller"]})
    assert (await desk.get("/api/desk/history?account=harbor-dental")).status == 401
    assert (await _login(desk, "maria", PASSWORD)).status == 200
    reply = await desk.get("/api/desk/history?account=bluebird-bikes")
    assert reply.status == 403 and "other business" not in await reply.text()
    assert (await desk.get("/api/desk/history")).status == 400
    body = await (await desk.get("/api/desk/history?account=harbor-dental")).json()
    assert len(body["calls"]) == 3
    assert body["calls"][0]["turns"][0]["question"] == "Is there parking?", "newest first"
    # The most asked first; the same question asked with or without its "?" counts once.
    assert [(q["question"], q["times"]) for q in body["unanswered"]] == [
        ("Do you take pets", 2),
        ("Is there parking?", 1),
    ]
    # The filters reach the database (their behaviour: tests/test_history_store.py).
    history.append(
        {"account": "harbor-dental", "started_at": 500.0, "ended_at": 530.0, "handoff": "taken"}
    )
    url = "/api/desk/history?account=harbor-dental"
    body = await (await desk.get(f"{url}&since=400&until=600")).json()
    assert [c["ended_at"] for c in body["calls"]] == [530.0]
    assert body["filters"] == {"since": 400.0, "until": 600.0, "limit": 50}
    body = await (await desk.get(f"{url}&outcome=taken")).json()
    assert [c["handoff"] for c in body["calls"]] == ["taken"]
    body = await (await desk.get(f"{url}&q=PARKING&unanswered=1")).json()
    assert [c["turns"][0]["question"] for c in body["calls"]] == ["Is there parking?"]
    for bad in ("since=yesterday", "outcome=lost", "limit=many"):
        reply = await desk.get(f"{url}&{bad}")
        assert reply.status == 400, bad
        assert bad.split("=")[0] in (await reply.json())["error"]


async def test_staff_see_take_and_read_only_their_accounts(
    desk: TestClient, directory: FakeDirectory, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    records = HandoffRecords(tmp_path / "records")
    records.append({"account_id": "harbor-dental", "question": "pets?"})
    records.append({"account_id": "bluebird-bikes", "question": "the other business's caller"})
    assert (await _login(desk, "maria", PASSWORD)).status == 200
    reply = await desk.get("/api/desk/calls")
    assert [c["room"] for c in (await reply.json())["calls"]] == ["call-a"]
    # Asking for another account's calls by name gives nothing either.
    reply = await desk.get("/api/desk/calls?account=bluebird-bikes")
    assert (await reply.json())["calls"] == []
    # Taking another account's call: as if it did not exist.
    reply = await desk.post("/api/desk/take", json={"room": "call-b"})
    assert reply.status == 404 and not directory.tickets
    reply = await desk.get("/api/desk/messages?account=bluebird-bikes")
    assert reply.status == 403 and "other business" not in await reply.text()
    # Their own: the call, the token (named after the login), the messages.
    reply = await desk.post("/api/desk/take", json={"room": "call-a", "name": "Someone Else"})
    assert reply.status == 200 and (await reply.json())["identity"].startswith("desk-maria-")
    assert directory.tickets == [("call-a", "maria")]
    assert any(r.getMessage() == "desk: call taken by maria" for r in caplog.records)
    reply = await desk.get("/api/desk/messages?account=harbor-dental")
    assert (await reply.json())["records"][0]["question"] == "pets?"
    reply = await desk.get("/api/desk/messages?account=../etc")
    assert reply.status == 400
    reply = await desk.post(
        "/api/desk/take", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400
    reply = await desk.post("/api/desk/take", data=b"room=call-a")
    assert reply.status == 415
    # The owner ('*') sees both businesses.
    desk.session.cookie_jar.clear()
    reply = await _login(desk, "owner", OTHER_PASSWORD)
    accounts = (await reply.json())["accounts"]
    assert {"harbor-dental", "bluebird-bikes"} <= set(accounts)
    reply = await desk.get("/api/desk/calls")
    assert [c["room"] for c in (await reply.json())["calls"]] == ["call-a", "call-b"]
    page = await desk.get("/desk")
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
    assert end.handles(_request("web")) and end.handles(_request("sip"))
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


async def test_the_desk_end_answers_at_once_when_no_login_sees_the_account(tmp_path: Path) -> None:
    staff = StaffFile(tmp_path / "staff.json")
    room = FakeRoom()
    result = await DeskEnd(room, staff).connect(_request(), 5.0)  # type: ignore[arg-type]
    assert result.outcome == HandoffOutcome.NOT_TAKEN and "harbor-dental" in result.detail
    staff.add("maria", PASSWORD, frozenset({"bluebird-bikes"}))
    result = await DeskEnd(room, staff).connect(_request(), 5.0)  # type: ignore[arg-type]
    assert result.outcome == HandoffOutcome.NOT_TAKEN, "another account's staff is no one here"
    staff.add("ana", PASSWORD, frozenset({"harbor-dental"}))
    task = asyncio.create_task(DeskEnd(room, staff).connect(_request(), 5.0))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert not task.done(), "someone could take it: the end waits"
    room.join("desk-ana-1")
    assert (await asyncio.wait_for(task, 1.0)).outcome == HandoffOutcome.TAKEN


async def test_staff_hear_the_voice_messages_of_their_accounts_only(
    desk: TestClient, tmp_path: Path
) -> None:
    book = MessageBook(tmp_path / "messages")
    pcm = b"\x01\x00" * 16000
    mine = {"id": "call-a-1", "text": "please call me back", "caller_number": "+15035550123"}
    book.save("harbor-dental", mine, pcm)
    book.save("bluebird-bikes", {"id": "call-b-1", "text": "the other business's caller"}, pcm)
    url = "/api/desk/voice-messages?account=harbor-dental"
    assert (await desk.get(url)).status == 401
    assert (await _login(desk, "maria", PASSWORD)).status == 200
    body = await (await desk.get(url)).json()
    (message,) = body["messages"]
    assert message["text"] == "please call me back" and message["caller_number"] == "+15035550123"
    audio = await desk.get(message["audio_url"])
    assert audio.status == 200 and audio.headers["Content-Type"] == "audio/wav"
    wav = await audio.read()
    assert wav[:4] == b"RIFF" and len(wav) == 44 + len(pcm)
    # Another business's: neither the list nor the audio, by any name.
    reply = await desk.get("/api/desk/voice-messages?account=bluebird-bikes")
    assert reply.status == 403 and "other business" not in await reply.text()
    reply = await desk.get("/api/desk/voice-messages/audio?account=bluebird-bikes&id=call-b-1")
    assert reply.status == 403
    for bad in ("../bluebird-bikes/call-b-1", "call-b-1.wav", ""):
        reply = await desk.get(
            "/api/desk/voice-messages/audio", params={"account": "harbor-dental", "id": bad}
        )
        assert reply.status == 400, bad
    reply = await desk.get("/api/desk/voice-messages/audio?account=harbor-dental&id=call-x-9")
    assert reply.status == 404


async def test_staff_call_back_only_numbers_that_called_their_account(
    desk: TestClient, directory: FakeDirectory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = HandoffRecords(tmp_path / "records")
    records.append({"account_id": "harbor-dental", "caller_number": "+15035550123"})
    records.append({"account_id": "bluebird-bikes", "caller_number": "+15035550999"})
    MessageBook(tmp_path / "messages").save(
        "harbor-dental", {"id": "m-1", "caller_number": "+15035550777"}, b"\x00\x00"
    )
    CallHistory(tmp_path / "history").append(
        {"account": "harbor-dental", "caller_number": "+15035550555"}
    )
    assert (await desk.post("/api/desk/call-back", json={})).status == 401
    assert (await _login(desk, "maria", PASSWORD)).status == 200
    caplog.set_level(logging.INFO, logger="firstword.desk")
    # A handoff's caller, a message's, a past call's.
    for number in ("+15035550123", "+15035550777", "+15035550555"):
        reply = await desk.post(
            "/api/desk/call-back", json={"account": "harbor-dental", "number": number}
        )
        assert reply.status == 200, await reply.text()
        ticket = await reply.json()
        assert ticket["room"].startswith(CALLBACK_ROOM_PREFIX + "harbor-dental-")
        assert ticket["identity"].startswith("desk-maria-") and ticket["number"] == number
    # Dialled from the business's own number, into the room the ticket is for.
    harbor = load_accounts(ACCOUNTS_DIR, "harbor-dental").accounts["harbor-dental"]
    assert [(d[1], d[2]) for d in directory.dialled] == [
        ("+15035550123", harbor.phone_numbers[0]),
        ("+15035550777", harbor.phone_numbers[0]),
        ("+15035550555", harbor.phone_numbers[0]),
    ]
    assert directory.dialled[0][0] == directory.tickets[0][0]
    assert any(r.getMessage() == "desk: call-back by maria" for r in caplog.records)
    # Any other number, another business's caller, another business: refused, nothing dialled.
    refused = [
        ({"account": "harbor-dental", "number": "+19005550100"}, 403),
        ({"account": "harbor-dental", "number": "+15035550999"}, 403),
        ({"account": "bluebird-bikes", "number": "+15035550999"}, 403),
        ({"account": "harbor-dental"}, 400),
    ]
    for body, status in refused:
        reply = await desk.post("/api/desk/call-back", json=body)
        assert reply.status == status, (body, await reply.text())
    assert len(directory.dialled) == 3
    directory.unavailable = True
    reply = await desk.post(
        "/api/desk/call-back", json={"account": "harbor-dental", "number": "+15035550123"}
    )
    assert reply.status == 409 and "not set up" in (await reply.json())["error"]


async def test_staff_mark_voice_messages_done_on_their_accounts_only(
    desk: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    book = MessageBook(tmp_path / "messages")
    for message_id in ("call-a-1", "call-a-2"):
        book.save("harbor-dental", {"id": message_id, "text": "call me"}, b"\x00\x00")
    book.save("bluebird-bikes", {"id": "call-b-1", "text": "theirs"}, b"\x00\x00")
    url = "/api/desk/voice-messages/done"
    mark = {"account": "harbor-dental", "id": "call-a-1", "done": True}
    assert (await desk.post(url, json=mark)).status == 401
    assert (await _login(desk, "maria", PASSWORD)).status == 200
    caplog.set_level(logging.INFO, logger="firstword.desk")
    reply = await desk.post(url, json=mark)
    assert reply.status == 200 and (await reply.json())["done_by"] == "maria"
    listed = "/api/desk/voice-messages?account=harbor-dental"
    messages = {m["id"]: m for m in (await (await desk.get(listed)).json())["messages"]}
    assert messages["call-a-1"]["done"] and messages["call-a-1"]["done_by"] == "maria"
    assert messages["call-a-1"]["done_at"] is not None
    assert not messages["call-a-2"]["done"] and messages["call-a-2"]["done_by"] is None
    assert any(r.getMessage() == "desk: voice message marked done by maria" for r in caplog.records)
    # Not done again: the last mark wins; the messages' own lines are never rewritten.
    assert (await desk.post(url, json={**mark, "done": False})).status == 200
    messages = {m["id"]: m for m in (await (await desk.get(listed)).json())["messages"]}
    assert not messages["call-a-1"]["done"]
    assert len(book.path("harbor-dental").read_text().splitlines()) == 2
    refused = [
        ({"account": "bluebird-bikes", "id": "call-b-1", "done": True}, 403),
        ({"account": "harbor-dental", "id": "../bluebird-bikes/call-b-1", "done": True}, 400),
        ({"account": "harbor-dental", "id": "call-a-9", "done": True}, 404),
        ({"account": "harbor-dental", "id": "call-a-1", "done": "yes"}, 400),
        ({"account": "harbor-dental"}, 400),
    ]
    for body, status in refused:
        reply = await desk.post(url, json=body)
        assert reply.status == status, (body, await reply.text())
    reply = await desk.post(url, data="x", headers={"Content-Type": "text/plain"})
    assert reply.status == 415
    # Another business's message was not marked by any of that.
    assert not book.marks_path("bluebird-bikes").exists()


def test_a_phone_caller_goes_to_the_transfer_with_a_handoff_number_else_to_the_desk(
    registry: AccountRegistry,
) -> None:
    from agent.call.handoff.core import ends_for
    from agent.settings import Settings

    base = registry.accounts["harbor-dental"]
    for number, expected in (("+15035550111", "sip"), (None, "desk")):
        account = base.model_copy(update={"handoff_number": number})
        ends = ends_for(FakeRoom(), account, Settings())  # type: ignore[arg-type]
        first = next(e for e in ends if e.handles(_request("sip")))
        assert first.name == expected, (number, [e.name for e in ends])
        assert next(e for e in ends if e.handles(_request("web"))).name == "desk"
