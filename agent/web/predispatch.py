"""Create a caller's room with the agent already dispatched, before the caller connects.

The LiveKit server holds each job request ~200 ms and the agent then connects and publishes;
done at token time, all of that overlaps the caller's own page load and WebRTC set-up. The
room is created through the server API with a `RoomAgentDispatch` (LiveKit's own dispatch
mechanism: the server launches the job when the room is created), so it works for automatic
dispatch (empty agent name) and explicit dispatch alike.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from livekit import api

from ..accounts.resolve import ACCOUNT_ATTRIBUTE
from ..server_api import server_api
from ..settings import Settings
from .grants import caller_grants

# A browser has this long to use its token; the room itself closes sooner if nobody comes.
TOKEN_TTL = timedelta(minutes=10)
# Seconds the server keeps a room nobody joined, and after the last participant left: a
# backstop behind the agent's own wait for its caller (FIRSTWORD_CALLER_WAIT_TIMEOUT).
EMPTY_TIMEOUT_S = 60
DEPARTURE_TIMEOUT_S = 5


@dataclass(frozen=True)
class Ticket:
    """What the page needs to join: where, as whom, and when the agent was dispatched."""

    url: str
    token: str
    room: str
    identity: str
    account: str
    dispatch_ms: float  # how long the room + dispatch request took
    # Seconds the dispatched agent waits for this caller before it closes the room.
    wait_s: float = 20.0

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "token": self.token,
            "room": self.room,
            "identity": self.identity,
            "account": self.account,
            "dispatch_ms": round(self.dispatch_ms, 1),
            "wait_s": self.wait_s,
        }


class Predispatcher:
    """Mints caller tokens; with `predispatch`, creates the room and dispatches the agent first."""

    def __init__(self, settings: Settings, *, public_url: str | None = None) -> None:
        self._settings = settings
        # The address the browser connects to may differ from the one this server uses.
        self._public_url = public_url or settings.livekit_url
        self._api: api.LiveKitAPI | None = None

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    def _lk(self) -> api.LiveKitAPI:
        if self._api is None:
            self._api = server_api(self._settings, timeout_s=5.0)
        return self._api

    async def live_rooms(self, names: list[str]) -> set[str]:
        """Which of these rooms exist on the server now."""
        reply = await self._lk().room.list_rooms(api.ListRoomsRequest(names=names))
        return {room.name for room in reply.rooms}

    async def ticket(
        self, account: str, *, predispatch: bool = True, typed_text: bool = False
    ) -> Ticket:
        room = f"call-{account}-{uuid.uuid4().hex[:8]}"
        identity = f"web-{uuid.uuid4().hex[:8]}"
        metadata = json.dumps({"account": account})
        started = time.perf_counter()
        if predispatch:
            await self._lk().room.create_room(
                api.CreateRoomRequest(
                    name=room,
                    empty_timeout=EMPTY_TIMEOUT_S,
                    departure_timeout=DEPARTURE_TIMEOUT_S,
                    metadata=metadata,
                    agents=[
                        api.RoomAgentDispatch(
                            agent_name=self._settings.agent_name, metadata=metadata
                        )
                    ],
                )
            )
        dispatch_ms = (time.perf_counter() - started) * 1000
        token = (
            api.AccessToken(
                self._settings.livekit_api_key,
                self._settings.livekit_api_secret.get_secret_value(),
            )
            .with_identity(identity)
            .with_name("web caller")
            .with_ttl(TOKEN_TTL)
            .with_attributes({ACCOUNT_ATTRIBUTE: account})
            .with_grants(caller_grants(room, data=typed_text))
            .to_jwt()
        )
        wait_s = self._settings.caller_wait_timeout
        return Ticket(self._public_url, token, room, identity, account, dispatch_ms, wait_s)
