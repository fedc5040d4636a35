"""The front desk: the business's staff see live calls and take the ones the agent hands off.

Two halves, one per process:

- `DeskEnd` (in the worker): the handoff end for web and app callers (agent/handoff.py picks
  it). A staff member takes the call by joining its room with an identity starting `desk-`;
  `connect` waits for that participant (present already, or joining within the wait).
- The page and its API (in the web app, `python -m agent.web`):
  - `GET /desk`: the page (a password form; it shows nothing about calls by itself);
  - `GET /api/desk/calls[?account=<id>]`: the live calls, read from LiveKit's server API
    (ListRooms, then ListParticipants per room) and the agent participant's attributes that the
    handoff mechanism publishes (account, caller, handoff state and reason, the transcript);
  - `POST /api/desk/take` `{"room": ..., "name": ...}`: a token for that room as a staff
    participant; the browser joins with its microphone and the agent steps back;
  - `GET /api/desk/messages?account=<id>`: the account's handoff records (agent/handoff.py).
  Closed (404) unless FIRSTWORD_DESK_SECRET is set; every API call needs
  `Authorization: Bearer <secret>` (compared in constant time, never logged) or gets 401 with
  nothing about calls; wrong passwords are rate-limited per client.

Why the page polls every second instead of a push channel: the state lives in LiveKit (rooms,
participants, attributes), and the server API is the way to read it without joining every
room; webhooks carry joins and leaves but not attribute changes. A second is well inside a
person's reaction time, and one ListRooms + one ListParticipants per live call per second is
light for a business's handful of calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from livekit import api, rtc

from ..accounts.resolve import ACCOUNT_ATTRIBUTE
from ..handoff import (
    CALL_ACCOUNT,
    CALL_CALLER_NUMBER,
    CALL_STARTED,
    HANDOFF,
    HANDOFF_AT,
    HANDOFF_QUESTION,
    HANDOFF_REASON,
    STAFF_PREFIX,
    TAKEN_BY,
    TRANSCRIPT,
    HandoffRecords,
    is_staff,
)
from ..handoff_types import HandoffOutcome, HandoffRequest, HandoffResult
from ..settings import Settings
from .clients import PROXIES_KEY, client_address
from .ratelimit import RateLimiter

logger = logging.getLogger("firstword.desk")

STATIC_DIR = Path(__file__).parent / "static"
BUNDLE = STATIC_DIR / "desk.js"
STAFF_TOKEN_TTL = timedelta(hours=2)
# Wrong passwords a client may try: a few, then one every six seconds.
AUTH_FAILURE_BURST = 5
AUTH_FAILURES_PER_MINUTE = 10.0
LIST_TIMEOUT_S = 5.0
# `firstword.handoff` as staff read it.
STATE_NAMES = {
    "requested": "handoff requested",
    "taken": "taken",
    "not_taken": "nobody took it",
    "failed": "handoff failed",
}


# --- the end, in the worker ------------------------------------------------------------------


class DeskEnd:
    """A staff member takes the call from the desk page by joining its room."""

    name = "desk"

    def __init__(self, room: rtc.Room) -> None:
        self._room = room

    def handles(self, request: HandoffRequest) -> bool:
        # Phone callers go to the SIP transfer (agent/sip/transfer.py), listed before this end.
        return request.caller_kind in ("web", "app")

    async def connect(self, request: HandoffRequest, wait_s: float) -> HandoffResult:
        joined: asyncio.Future[rtc.RemoteParticipant] = asyncio.get_running_loop().create_future()

        def _on_joined(participant: rtc.RemoteParticipant) -> None:
            if is_staff(participant.identity) and not joined.done():
                joined.set_result(participant)

        self._room.on("participant_connected", _on_joined)
        try:
            for participant in list(self._room.remote_participants.values()):
                _on_joined(participant)
            staff = await asyncio.wait_for(joined, wait_s)
        except TimeoutError:
            return HandoffResult(
                HandoffOutcome.NOT_TAKEN, detail=f"nobody took it within {wait_s:.0f} s"
            )
        except Exception as error:  # `connect` never raises (agent/handoff_types.py)
            return HandoffResult(HandoffOutcome.FAILED, detail=repr(error))
        finally:
            self._room.off("participant_connected", _on_joined)
        return HandoffResult(
            HandoffOutcome.TAKEN, taken_by=staff.identity, extra={"name": staff.name}
        )


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


class CallDirectory(Protocol):
    async def calls(self) -> list[dict[str, Any]]: ...

    def staff_ticket(self, room: str, name: str) -> dict[str, str]: ...


def _http_url(ws_url: str) -> str:
    return ws_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)


class LiveKitDirectory:
    """The live calls from the server API, and tokens for staff to join them."""

    def __init__(self, settings: Settings, *, public_url: str | None = None) -> None:
        self._settings = settings
        self._public_url = public_url or settings.livekit_url
        self._api: api.LiveKitAPI | None = None

    def _lk(self) -> api.LiveKitAPI:
        if self._api is None:
            self._api = api.LiveKitAPI(
                url=_http_url(self._settings.livekit_url),
                api_key=self._settings.livekit_api_key,
                api_secret=self._settings.livekit_api_secret.get_secret_value(),
                timeout=aiohttp.ClientTimeout(total=LIST_TIMEOUT_S),
            )
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

    def staff_ticket(self, room: str, name: str) -> dict[str, str]:
        identity = f"{STAFF_PREFIX}{uuid.uuid4().hex[:8]}"
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
    """The desk's routes; closed when `secret` is None."""

    def __init__(
        self,
        secret: str | None,
        directory: CallDirectory,
        records: HandoffRecords,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._secret = secret.encode() if secret else None
        self._directory = directory
        self._records = records
        self._failures = limiter or RateLimiter(AUTH_FAILURE_BURST, AUTH_FAILURES_PER_MINUTE)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/desk", self.page)
        app.router.add_get("/api/desk/calls", self.list_calls)
        app.router.add_post("/api/desk/take", self.take)
        app.router.add_get("/api/desk/messages", self.messages)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """None when the request carries the secret; else the response to send instead."""
        if self._secret is None:
            return _error(404, "the front desk is closed: set FIRSTWORD_DESK_SECRET to open it")
        # The limit is asked first: a client over it is refused without its password being
        # compared at all, so ignoring the 429s does not let it go on guessing.
        client = client_address(request, request.app[PROXIES_KEY])
        if (wait := self._failures.wait(client)) > 0:
            return _too_many(wait)
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ").encode() if header.startswith("Bearer ") else b""
        if hmac.compare_digest(given, self._secret):
            return None
        logger.warning("desk: refused a request without the right password from %s", client)
        if (wait := self._failures.allow(client)) > 0:
            return _too_many(wait)
        return _error(401, "wrong or missing password", **{"WWW-Authenticate": "Bearer"})

    async def page(self, request: web.Request) -> web.StreamResponse:
        if self._secret is None:
            return _error(404, "the front desk is closed: set FIRSTWORD_DESK_SECRET to open it")
        if not BUNDLE.is_file():
            return _error(503, "the desk's script is not built: run scripts/web-build.sh")
        return web.FileResponse(STATIC_DIR / "desk.html")

    async def list_calls(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        account = request.query.get("account") or None
        try:
            calls = await asyncio.wait_for(self._directory.calls(), LIST_TIMEOUT_S * 2)
        except Exception:
            logger.exception("desk: could not list the calls")
            return _error(502, "the LiveKit server did not answer; retrying")
        if account is not None:
            calls = [c for c in calls if c["account"] == account]
        return web.json_response({"calls": calls, "now": time.time()})

    async def take(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'the body must be JSON: {"room": "<room name>"}')
        room = body.get("room") if isinstance(body, dict) else None
        if not isinstance(room, str) or not room:
            return _error(400, "field 'room' (a string) is required")
        name = body.get("name") if isinstance(body.get("name"), str) else ""
        try:
            calls = await asyncio.wait_for(self._directory.calls(), LIST_TIMEOUT_S * 2)
        except Exception:
            logger.exception("desk: could not list the calls")
            return _error(502, "the LiveKit server did not answer; try again")
        if not any(c["room"] == room for c in calls):
            return _error(404, f"no live call in room {room!r}")
        ticket = self._directory.staff_ticket(room, name.strip()[:60] or "Front desk")
        logger.info("desk: call taken", extra={"room": room, "identity": ticket["identity"]})
        return web.json_response(ticket)

    async def messages(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        account = request.query.get("account", "")
        if not account or "/" in account or account.startswith("."):
            return _error(400, "query parameter 'account' (an account id) is required")
        records = await asyncio.to_thread(self._records.latest, account)
        return web.json_response({"account": account, "records": records})


def _too_many(wait: float) -> web.Response:
    retry = {"Retry-After": f"{max(1.0, wait):.0f}"}
    return _error(429, "too many wrong passwords; try again shortly", **retry)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def desk_from_settings(settings: Settings) -> tuple[Desk, LiveKitDirectory]:
    directory = LiveKitDirectory(settings)
    secret = settings.desk_secret.get_secret_value() if settings.desk_secret else None
    return Desk(secret, directory, HandoffRecords(settings.handoff_records)), directory
