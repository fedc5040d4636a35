"""The front desk: the business's staff see live calls and take the ones the agent hands off.

Its other half runs in the worker: `agent/call/handoff/desk.py`, the handoff end that waits for the
staff member this page sends into the call's room.

- The page and its API (in the web app, `python -m agent.web`), for staff logins
  (`staff.py`, created with `python -m agent.web add-staff`):
  - `GET /desk`: the page (a login form; it shows nothing about calls by itself);
  - `POST /api/desk/login` `{"name", "password"}`: opens a session (an HttpOnly, SameSite=Strict
    cookie; `sessions.py`); `POST /api/desk/logout` ends it; `GET /api/desk/me`: who is in;
  - `GET /api/desk/calls[?account=<id>]`: the live calls of the person's accounts, read from
    LiveKit's server API (ListRooms, then ListParticipants per room) and the agent
    participant's attributes that the handoff mechanism publishes (account, caller, handoff
    state and reason, the transcript);
  - `POST /api/desk/take` `{"room": ...}`: a token for that room (one of theirs) as a staff
    participant named after the login; the browser joins with its microphone and the agent
    steps back; logged with who took it;
  - `GET /api/desk/messages?account=<id>`: the account's handoff records
    (agent/call/handoff/core.py), for the person's accounts only;
  - `GET /api/desk/voice-messages?account=<id>`: the account's voice messages (left after a
    handoff nobody took, agent/call/voicemail.py: who, their number, the question, the
    transcript), each with the address of its audio,
    `GET /api/desk/voice-messages/audio?account=<id>&id=<message>` (a WAV file),
    `POST /api/desk/voice-messages/done` `{"account", "id", "done"}` (marks a message done or
    not, with who and when: each message then says `done`, `done_by`, `done_at`); for the
    person's accounts only;
  - `POST /api/desk/call-back` `{"account", "number"}`: dials a caller back through the SIP
    bridge (the `firstword-outbound` trunk, agent/sip/provision.py) into a new `callback-…`
    room and answers a token for it, so the staff member talks from the page; only numbers
    that called that account (its voice messages, handoff records and calls), so a login cannot
    dial anywhere through the business's line; logged with who called whom;
  - `GET /api/desk/history?account=<id>[&since=&until=&outcome=&unanswered=1&q=&limit=]`: the
    account's newest calls from the history's database (agent/accounts/history_store.py: who,
    when, how it ended, the first word's time, what was asked and answered), filtered by day,
    handoff outcome, an unanswered question and words, and the questions the agent could not
    answer, the most asked first; for the person's accounts.
  Closed (404) while no staff login exists. Wrong passwords are limited per client and per
  login before any comparison; a locked login says so.

Why the page polls every second instead of a push channel: the state lives in LiveKit (rooms,
participants, attributes), and the server API is the way to read it without joining every
room; webhooks carry joins and leaves but not attribute changes. A second is well inside a
person's reaction time, and one ListRooms + one ListParticipants per live call per second is
light for a business's handful of calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from aiohttp import web
from livekit import api
from sqlalchemy.exc import SQLAlchemyError

from ..accounts import AccountStore
from ..accounts.books import MessageBook
from ..accounts.history_store import OUTCOMES, CallHistory, HistoryError
from ..accounts.resolve import ACCOUNT_ATTRIBUTE
from ..accounts.staff import (
    NAME_PATTERN,
    Staff,
    StaffFile,
    StaffFileError,
    dummy_hash,
    verify_password,
)
from ..call.handoff.core import (
    CALL_ACCOUNT,
    CALL_CALLER_NUMBER,
    CALL_STARTED,
    HANDOFF,
    HANDOFF_AT,
    HANDOFF_QUESTION,
    HANDOFF_REASON,
    TAKEN_BY,
    TRANSCRIPT,
    HandoffRecords,
)
from ..call.handoff.types import CALLBACK_ROOM_PREFIX, STAFF_PREFIX, is_staff
from ..server_api import server_api
from ..settings import Settings
from ..sip.provision import OUTBOUND_TRUNK, outbound_trunk_id
from .clients import PROXIES_KEY, client_address, is_https
from .ratelimit import RateLimiter
from .sessions import COOKIE, LoginLockout, Sessions

logger = logging.getLogger("firstword.desk")

STATIC_DIR = Path(__file__).parent / "static"
BUNDLE = STATIC_DIR / "desk.js"
STAFF_TOKEN_TTL = timedelta(hours=2)
CLOSED = (
    "the front desk is closed: no staff login yet "
    "(python -m agent.web add-staff NAME --accounts ACCOUNT)"
)
# Wrong passwords a client may try: a few, then one every six seconds.
AUTH_FAILURE_BURST = 5
AUTH_FAILURES_PER_MINUTE = 10.0
LIST_TIMEOUT_S = 5.0
# How far back the desk looks for the numbers a login may call back (per book: handoffs, voice
# messages).
CALLERS_KEPT = 200
# `firstword.handoff` as staff read it.
STATE_NAMES = {
    "requested": "handoff requested",
    "taken": "taken",
    "not_taken": "nobody took it",
    "failed": "handoff failed",
}


# --- the calls, from LiveKit's server API ----------------------------------------------------


# Every firstword call room: `call-<account>-…` (web), `call-…` (SIP rule, simulator).
CALL_ROOM_PREFIX = "call-"


def _attributes(participant: api.ParticipantInfo) -> dict[str, str]:
    return dict(participant.attributes)


def call_view(room: api.Room, participants: list[api.ParticipantInfo]) -> dict[str, Any] | None:
    """One call as the desk shows it; None for a room with no caller (yet, or any more), and
    for any room that is not a firstword call: named `call-…` (web, SIP and the simulator
    alike) with its account known. Other rooms on the same LiveKit server (a business's own
    meetings, another product's) are never listed, so they can never be taken either."""
    if not room.name.startswith(CALL_ROOM_PREFIX):
        return None
    agent = next((p for p in participants if p.kind == api.ParticipantInfo.Kind.AGENT), None)
    staff = [p for p in participants if is_staff(p.identity)]
    callers = [
        p
        for p in participants
        if p.kind != api.ParticipantInfo.Kind.AGENT and not is_staff(p.identity)
    ]
    if not callers:
        return None
    caller = callers[0]
    said = _attributes(agent) if agent is not None else {}
    account = said.get(CALL_ACCOUNT) or _attributes(caller).get(ACCOUNT_ATTRIBUTE)
    if not account:
        with contextlib.suppress(ValueError, AttributeError):
            account = json.loads(room.metadata or "{}").get("account")
    if not account:
        return None
    transcript: list[dict[str, str]] = []
    with contextlib.suppress(ValueError):
        transcript = list(json.loads(said.get(TRANSCRIPT) or "[]"))
    handoff = said.get(HANDOFF, "")
    if staff:
        state = "taken"
    elif handoff:
        state = STATE_NAMES.get(handoff, handoff)
    elif agent is not None:
        state = "with agent"
    else:
        state = "waiting for agent"
    started = float(said.get(CALL_STARTED) or caller.joined_at or room.creation_time or 0)
    is_sip = caller.kind == api.ParticipantInfo.Kind.SIP
    return {
        "room": room.name,
        "account": account or None,
        "caller": {
            "identity": caller.identity,
            "name": caller.name,
            "kind": "sip" if is_sip else "web",
            "number": said.get(CALL_CALLER_NUMBER) or _attributes(caller).get("sip.phoneNumber"),
        },
        "started_at": started,
        "state": state,
        "handoff": {
            "state": handoff,
            "reason": said.get(HANDOFF_REASON, ""),
            "question": said.get(HANDOFF_QUESTION, ""),
            "at": float(said.get(HANDOFF_AT) or 0) or None,
            "taken_by": said.get(TAKEN_BY) or None,
        },
        "staff": [{"identity": p.identity, "name": p.name} for p in staff],
        "agent": agent.identity if agent is not None else None,
        "transcript": transcript,
    }


def _sort_key(call: dict[str, Any]) -> tuple[int, float]:
    # Calls waiting for a person first, then the oldest first.
    return (0 if call["state"] == "handoff requested" else 1, call["started_at"])


class CallBackUnavailable(Exception):
    """No outbound trunk: call-backs are not set up on this deployment."""


class CallDirectory(Protocol):
    async def calls(self) -> list[dict[str, Any]]: ...

    def staff_ticket(self, room: str, name: str) -> dict[str, str]: ...

    async def call_back(self, room: str, number: str, caller_id: str) -> None: ...


class LiveKitDirectory:
    """The live calls from the server API, and tokens for staff to join them."""

    def __init__(self, settings: Settings, *, public_url: str | None = None) -> None:
        self._settings = settings
        self._public_url = public_url or settings.livekit_url
        self._api: api.LiveKitAPI | None = None

    def _lk(self) -> api.LiveKitAPI:
        if self._api is None:
            self._api = server_api(self._settings, timeout_s=LIST_TIMEOUT_S)
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    async def calls(self) -> list[dict[str, Any]]:
        lk = self._lk()
        rooms = (await lk.room.list_rooms(api.ListRoomsRequest())).rooms

        async def one(room: api.Room) -> dict[str, Any] | None:
            try:
                reply = await lk.room.list_participants(api.ListParticipantsRequest(room=room.name))
            except api.TwirpError:  # the room closed between the two calls
                return None
            return call_view(room, list(reply.participants))

        views = await asyncio.gather(*(one(room) for room in rooms))
        return sorted((v for v in views if v is not None), key=_sort_key)

    async def call_back(self, room: str, number: str, caller_id: str) -> None:
        """Dial `number` into `room` through the outbound trunk (CreateSIPParticipant: the
        room is made with it). Returns once the bridge took the call, before it is answered;
        the page sees the callee join."""
        lk = self._lk()
        trunk_id = await outbound_trunk_id(lk.sip)
        if trunk_id is None:
            raise CallBackUnavailable(
                f"call-backs are not set up: no {OUTBOUND_TRUNK!r} trunk (set "
                "FIRSTWORD_SIP_OUTBOUND_ADDRESS and run python -m agent.sip.provision)"
            )
        await lk.sip.create_sip_participant(
            api.CreateSIPParticipantRequest(
                sip_trunk_id=trunk_id,
                sip_call_to=number,
                sip_number=caller_id,
                room_name=room,
                participant_identity=f"callee-{uuid.uuid4().hex[:8]}",
                participant_name=number,
                wait_until_answered=False,
            )
        )

    def staff_ticket(self, room: str, name: str) -> dict[str, str]:
        # The login's name is in the identity, so the worker's handoff record says who took
        # the call too (names are restricted to identity-safe characters: staff.py).
        identity = f"{STAFF_PREFIX}{name}-{uuid.uuid4().hex[:6]}"
        token = (
            api.AccessToken(
                self._settings.livekit_api_key,
                self._settings.livekit_api_secret.get_secret_value(),
            )
            .with_identity(identity)
            .with_name(name)
            .with_ttl(STAFF_TOKEN_TTL)
            .with_attributes({"firstword.role": "staff"})
            .with_grants(api.VideoGrants(room_join=True, room=room))
            .to_jwt()
        )
        return {"url": self._public_url, "token": token, "room": room, "identity": identity}


# --- the page and its API --------------------------------------------------------------------


class Desk:
    """The desk's routes: staff log in with their own name and password and see only the
    calls and messages of their accounts. Closed (404) while the staff file lists nobody."""

    def __init__(
        self,
        staff: StaffFile,
        directory: CallDirectory,
        records: HandoffRecords,
        accounts: AccountStore,
        *,
        history: CallHistory | None = None,
        voice_messages: MessageBook | None = None,
        limiter: RateLimiter | None = None,
        lockout: LoginLockout | None = None,
        session_ttl_s: float = 8 * 3600.0,
    ) -> None:
        self._staff = staff
        self._directory = directory
        self._records = records
        self._history = history
        self._voice_messages = voice_messages
        self._accounts = accounts
        self._failures = limiter or RateLimiter(AUTH_FAILURE_BURST, AUTH_FAILURES_PER_MINUTE)
        self._lockout = lockout or LoginLockout()
        self._sessions = Sessions(session_ttl_s)
        # scrypt takes 32 MiB and ~0.1 s: at most two at once, off the event loop.
        # (A semaphore binds to the loop that first waits on it, not the one it is made on.)
        self._hashing = asyncio.Semaphore(2)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/desk", self.page)
        app.router.add_post("/api/desk/login", self.login)
        app.router.add_post("/api/desk/logout", self.logout)
        app.router.add_get("/api/desk/me", self.me)
        app.router.add_get("/api/desk/calls", self.list_calls)
        app.router.add_post("/api/desk/take", self.take)
        app.router.add_post("/api/desk/call-back", self.call_back)
        app.router.add_get("/api/desk/messages", self.messages)
        app.router.add_get("/api/desk/history", self.history)
        app.router.add_get("/api/desk/voice-messages", self.voice_messages)
        app.router.add_get("/api/desk/voice-messages/audio", self.voice_message_audio)
        app.router.add_post("/api/desk/voice-messages/done", self.voice_message_done)

    async def _roster(self) -> dict[str, Staff] | web.Response:
        """Everyone who may log in, or the response to send when nobody may."""
        try:
            roster = await asyncio.to_thread(self._staff.load)
        except (StaffFileError, OSError) as exc:
            logger.error("desk: the staff file cannot be read: %s", exc)
            return _error(503, "the desk's staff file cannot be read; see the web app's log")
        if not roster:
            return _error(404, CLOSED)
        return roster

    async def _signed_in(self, request: web.Request) -> Staff | web.Response:
        """The staff member whose session cookie came with the request, or the refusal."""
        roster = await self._roster()
        if isinstance(roster, web.Response):
            return roster
        token = request.cookies.get(COOKIE)
        session = self._sessions.get(token)
        if session is None:
            return _error(401, "log in first")
        staff = roster.get(session.name)
        if staff is None or staff.password_hash != session.password_hash:
            # Removed, or given a new password, since this session opened: it ends here.
            self._sessions.close(token)
            return _error(401, "your login was changed or removed; log in again")
        return staff

    async def _account_ids(self, staff: Staff) -> list[str]:
        if staff.accounts is not None:
            return sorted(staff.accounts)
        return sorted((await self._accounts.current()).accounts)

    async def page(self, request: web.Request) -> web.StreamResponse:
        roster = await self._roster()
        if isinstance(roster, web.Response):
            return roster
        if not BUNDLE.is_file():
            return _error(503, "the desk's script is not built: run scripts/web-build.sh")
        return web.FileResponse(STATIC_DIR / "desk.html")

    async def login(self, request: web.Request) -> web.Response:
        roster = await self._roster()
        if isinstance(roster, web.Response):
            return roster
        if request.content_type != "application/json":
            return _error(415, 'send Content-Type: application/json and {"name", "password"}')
        # Both limits are asked first: a client or a login over its limit is refused without
        # its password being compared at all, so ignoring the 429s does not let it go on
        # guessing, and neither does guessing one login from many addresses.
        proxies = request.app[PROXIES_KEY]
        client = client_address(request, proxies)
        if (wait := self._failures.wait(client)) > 0:
            return _too_many(wait)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'the body must be JSON: {"name": ..., "password": ...}')
        name = body.get("name") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
            return _error(400, "fields 'name' and 'password' (strings) are required")
        name = name.strip().lower()
        if (locked := self._lockout.locked_for(name)) > 0:
            return _locked(name, locked)
        staff = roster.get(name)
        async with self._hashing:
            # An unknown name is checked against a dummy hash: it takes as long as a wrong
            # password, so the timing does not say which names exist.
            stored = staff.password_hash if staff is not None else dummy_hash()
            right = await asyncio.to_thread(verify_password, password, stored)
        if staff is None or not right:
            # The name is logged only when it is a login: a password typed into the name
            # field must not end up in the log.
            logger.warning(
                "desk: wrong name or password",
                extra={"client": client, "login": name if staff is not None else "(unknown)"},
            )
            locked = self._lockout.failed(name) if NAME_PATTERN.match(name) else 0.0
            if (wait := self._failures.allow(client)) > 0:
                return _too_many(wait)
            if locked > 0:
                return _locked(name, locked)
            return _error(401, "wrong name or password")
        self._lockout.succeeded(name)
        token = self._sessions.open(staff.name, staff.password_hash)
        logger.info("desk: %s logged in", staff.name, extra={"client": client})
        reply = web.json_response({"name": staff.name, "accounts": await self._account_ids(staff)})
        reply.set_cookie(
            COOKIE,
            token,
            max_age=int(self._sessions.ttl_s),
            path="/api/desk",
            httponly=True,
            samesite="Strict",
            secure=is_https(request, proxies),
        )
        return reply

    async def logout(self, request: web.Request) -> web.Response:
        token = request.cookies.get(COOKIE)
        session = self._sessions.get(token)
        self._sessions.close(token)
        if session is not None:
            logger.info("desk: %s logged out", session.name)
        reply = web.json_response({"logged_out": True})
        reply.del_cookie(COOKIE, path="/api/desk")
        return reply

    async def me(self, request: web.Request) -> web.Response:
        staff = await self._signed_in(request)
        if isinstance(staff, web.Response):
            return staff
        return web.json_response({"name": staff.name, "accounts": await self._account_ids(staff)})

    async def _calls_of(self, staff: Staff) -> list[dict[str, Any]] | web.Response:
        try:
            calls = await asyncio.wait_for(self._directory.calls(), LIST_TIMEOUT_S * 2)
        except Exception:
            logger.exception("desk: could not list the calls")
            return _error(502, "the LiveKit server did not answer; try again")
        # Server-side: another business's calls never leave the app for this person.
        return [c for c in calls if staff.sees(c["account"])]

    async def list_calls(self, request: web.Request) -> web.Response:
        staff = await self._signed_in(request)
        if isinstance(staff, web.Response):
            return staff
        calls = await self._calls_of(staff)
        if isinstance(calls, web.Response):
            return calls
        if (account := request.query.get("account") or None) is not None:
            calls = [c for c in calls if c["account"] == account]
        return web.json_response({"calls": calls, "now": time.time()})

    async def take(self, request: web.Request) -> web.Response:
        staff = await self._signed_in(request)
        if isinstance(staff, web.Response):
            return staff
        if request.content_type != "application/json":
            return _error(415, 'send Content-Type: application/json and {"room": "<room name>"}')
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'the body must be JSON: {"room": "<room name>"}')
        room = body.get("room") if isinstance(body, dict) else None
        if not isinstance(room, str) or not room:
            return _error(400, "field 'room' (a string) is required")
        calls = await self._calls_of(staff)
        if isinstance(calls, web.Response):
            return calls
        # Another account's call answers like one that does not exist: nothing about it.
        if not any(c["room"] == room for c in calls):
            return _error(404, f"no live call of yours in room {room!r}")
        ticket = self._directory.staff_ticket(room, staff.name)
        logger.info(
            "desk: call taken by %s",
            staff.name,
            extra={"room": room, "identity": ticket["identity"], "staff": staff.name},
        )
        return web.json_response(ticket)

    async def call_back(self, request: web.Request) -> web.Response:
        staff = await self._signed_in(request)
        if isinstance(staff, web.Response):
            return staff
        usage = '{"account": "<account id>", "number": "<a number that called it>"}'
        fields = await _json_fields(request, usage)
        if isinstance(fields, web.Response):
            return fields
        account, number = fields.get("account"), fields.get("number")
        if not isinstance(account, str) or not isinstance(number, str) or not number:
            return _error(400, f"fields 'account' and 'number' (strings) are required: {usage}")
        if not staff.sees(account):
            return _error(403, f"account {account!r} is not one of yours")
        # Only a number that called this business: a login cannot dial anywhere through its line.
        if number not in await asyncio.to_thread(self._numbers_that_called, account):
            return _error(
                403, f"{number!r} has not called {account!r}: only callers are called back"
            )
        known = (await self._accounts.current()).get(account)
        caller_id = known.phone_numbers[0] if known is not None and known.phone_numbers else ""
        room = f"{CALLBACK_ROOM_PREFIX}{account}-{uuid.uuid4().hex[:8]}"
        try:
            await self._directory.call_back(room, number, caller_id)
        except CallBackUnavailable as error:
            return _error(409, str(error))
        except api.TwirpError as error:
            logger.warning("desk: call-back to %s failed: %s", number, error.message)
            return _error(502, f"the call could not be placed: {error.message}")
        ticket = self._directory.staff_ticket(room, staff.name)
        logger.info(
            "desk: call-back by %s",
            staff.name,
            extra={"room": room, "account": account, "staff": staff.name, "number": number},
        )
        return web.json_response({**ticket, "number": number})

    def _numbers_that_called(self, account: str) -> set[str]:
        """Blocking: the caller numbers in the account's recent handoffs, voice messages and
        calls (its history)."""
        entries = self._records.latest(account, CALLERS_KEPT)
        if self._voice_messages is not None:
            entries += self._voice_messages.latest(account, CALLERS_KEPT)
        if self._history is not None:
            entries += self._history.latest(account, CALLERS_KEPT)
        return {str(e["caller_number"]) for e in entries if e.get("caller_number")}

    async def messages(self, request: web.Request) -> web.Response:
        account = await self._their_account(request)
        if isinstance(account, web.Response):
            return account
        records = await asyncio.to_thread(self._records.latest, account)
        return web.json_response({"account": account, "records": records})

    async def history(self, request: web.Request) -> web.Response:
        account = await self._their_account(request)
        if isinstance(account, web.Response):
            return account
        filters = _history_filters(request.query)
        if isinstance(filters, web.Response):
            return filters
        if self._history is None:
            return web.json_response({"account": account, "calls": [], "unanswered": []})
        history = self._history
        try:
            calls = await asyncio.to_thread(lambda: history.latest(account, **filters))
            unanswered = await asyncio.to_thread(history.unanswered, account)
        except (HistoryError, SQLAlchemyError) as error:
            logger.warning("desk: the call history cannot be read: %s", error)
            return _error(503, "the call history cannot be read right now")
        return web.json_response(
            {"account": account, "calls": calls, "unanswered": unanswered, "filters": filters}
        )

    async def voice_messages(self, request: web.Request) -> web.Response:
        account = await self._their_account(request)
        if isinstance(account, web.Response):
            return account
        if self._voice_messages is None:
            return web.json_response({"account": account, "messages": []})
        messages = await asyncio.to_thread(self._voice_messages.latest, account)
        for message in messages:
            message["audio_url"] = "/api/desk/voice-messages/audio?" + urlencode(
                {"account": account, "id": str(message.get("id", ""))}
            )
        return web.json_response({"account": account, "messages": messages})

    async def voice_message_audio(self, request: web.Request) -> web.StreamResponse:
        account = await self._their_account(request)
        if isinstance(account, web.Response):
            return account
        message_id = request.query.get("id", "")
        if self._voice_messages is None:
            return _error(404, "voice messages are off")
        try:
            path = self._voice_messages.audio_path(account, message_id)
        except ValueError:
            return _error(400, f"not a message id: {message_id!r}")
        if not await asyncio.to_thread(path.is_file):
            return _error(404, f"no voice message {message_id!r} for {account!r}")
        return web.FileResponse(
            path, headers={"Content-Type": "audio/wav", "Cache-Control": "private, no-store"}
        )

    async def voice_message_done(self, request: web.Request) -> web.Response:
        staff = await self._signed_in(request)
        if isinstance(staff, web.Response):
            return staff
        usage = '{"account": "<account id>", "id": "<message id>", "done": true|false}'
        fields = await _json_fields(request, usage)
        if isinstance(fields, web.Response):
            return fields
        account, message_id, done = fields.get("account"), fields.get("id"), fields.get("done")
        if not isinstance(account, str) or not isinstance(message_id, str):
            return _error(400, f"fields 'account' and 'id' (strings) are required: {usage}")
        if not isinstance(done, bool):
            return _error(400, f"field 'done' must be true or false: {usage}")
        if not staff.sees(account):
            return _error(403, f"account {account!r} is not one of yours")
        if self._voice_messages is None:
            return _error(404, "voice messages are off")
        book = self._voice_messages
        try:
            exists = await asyncio.to_thread(book.audio_path(account, message_id).is_file)
        except ValueError:
            return _error(400, f"not a message id: {message_id!r}")
        if not exists:
            return _error(404, f"no voice message {message_id!r} for {account!r}")
        await asyncio.to_thread(
            book.mark, account, message_id, done=done, by=staff.name, at=time.time()
        )
        logger.info(
            "desk: voice message marked %s by %s",
            "done" if done else "not done",
            staff.name,
            extra={"account": account, "message_id": message_id, "staff": staff.name},
        )
        return web.json_response({"id": message_id, "done": done, "done_by": staff.name})

    async def _their_account(self, request: web.Request) -> str | web.Response:
        """The `account` the request names, when the signed-in person sees it."""
        staff = await self._signed_in(request)
        if isinstance(staff, web.Response):
            return staff
        account = request.query.get("account", "")
        if not account or "/" in account or account.startswith("."):
            return _error(400, "query parameter 'account' (an account id) is required")
        if not staff.sees(account):
            return _error(403, f"account {account!r} is not one of yours")
        return account


async def _json_fields(request: web.Request, usage: str) -> dict[str, Any] | web.Response:
    """A JSON object body (anything else: {}), or the error that says what to send."""
    if request.content_type != "application/json":
        return _error(415, f"send Content-Type: application/json and {usage}")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, f"the body must be JSON: {usage}")
    return body if isinstance(body, dict) else {}


def _history_filters(query: Mapping[str, str]) -> dict[str, Any] | web.Response:
    """The history's filters from the query: `since`/`until` (unix seconds: the page sends the
    bounds of the staff member's own day), `outcome` (a handoff outcome, or `none`),
    `unanswered=1`, `q` (words), `limit` (1-500, default 50)."""
    filters: dict[str, Any] = {}
    for name in ("since", "until"):
        if query.get(name):
            try:
                filters[name] = float(query[name])
            except ValueError:
                return _error(400, f"{name} must be unix seconds, not {query[name]!r}")
    outcome = query.get("outcome", "")
    if outcome:
        if outcome not in OUTCOMES:
            return _error(400, f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        filters["outcome"] = outcome
    if query.get("unanswered") in ("1", "true"):
        filters["unanswered"] = True
    if query.get("q"):
        filters["words"] = query["q"][:200]
    try:
        filters["limit"] = min(500, max(1, int(query.get("limit") or 50)))
    except ValueError:
        return _error(400, f"limit must be a number, not {query['limit']!r}")
    return filters


def _locked(name: str, seconds: float) -> web.Response:
    return _error(
        429,
        f"the login {name!r} is locked after too many wrong passwords; "
        f"try again in {max(1.0, seconds):.0f} s",
        **{"Retry-After": f"{max(1.0, seconds):.0f}"},
    )


def _too_many(wait: float) -> web.Response:
    retry = {"Retry-After": f"{max(1.0, wait):.0f}"}
    return _error(429, "too many wrong passwords; try again shortly", **retry)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def desk_from_settings(settings: Settings, accounts: AccountStore) -> tuple[Desk, LiveKitDirectory]:
    directory = LiveKitDirectory(settings)
    messages = MessageBook(settings.voice_messages_dir) if settings.voice_messages else None
    desk = Desk(
        StaffFile(settings.staff_file),
        directory,
        HandoffRecords(settings.handoff_records),
        accounts,
        history=(
            CallHistory(settings.call_history_where, retention_days=settings.call_history_days)
            if settings.call_history
            else None
        ),
        voice_messages=messages,
        session_ttl_s=settings.desk_session_hours * 3600.0,
    )
    return desk, directory
