"""How many calls one client holds at once: a cap for the token endpoint.

Each token mints a room and dispatches an agent, which holds a worker slot for as long as
the call lasts; the rate limit bounds how fast a client asks, not how many calls it keeps
open. This remembers the rooms each client was given and, when a client reaches
FIRSTWORD_WEB_MAX_CALLS_PER_CLIENT, asks the LiveKit server which of them still exist (one
`ListRooms` by name: a call's room goes when its last participant leaves), so a caller who
hung up gets their slot back at once. A room issued in the last `FRESH_S` counts as open
even before it exists (a token asked for without pre-dispatch creates its room on join).

Kept in memory, per web process: with several replicas behind one address, each counts the
calls it issued (an operator who needs one count puts the cap at replicas x N or pins clients).
If the server does not answer, the request is let through with a warning: a caller is never
refused because the count could not be made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger("firstword.web")

FRESH_S = 30.0
LIST_TIMEOUT_S = 5.0
MAX_CLIENTS = 10_000

LiveRooms = Callable[[list[str]], Awaitable[set[str]]]


class OpenCalls:
    def __init__(
        self, cap: int, live_rooms: LiveRooms, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cap = cap
        self._live_rooms = live_rooms
        self._clock = clock
        # client -> [(room, issued at)]
        self._rooms: dict[str, list[tuple[str, float]]] = {}

    async def admit(self, client: str) -> bool:
        """True when `client` may open another call now."""
        if self._cap <= 0:
            return True
        held = self._rooms.get(client, [])
        if len(held) < self._cap:
            return True
        try:
            live = await asyncio.wait_for(
                self._live_rooms([room for room, _ in held]), LIST_TIMEOUT_S
            )
        except Exception:
            logger.warning("could not count a client's open calls; letting the call through")
            return True
        fresh_since = self._clock() - FRESH_S
        held = [(r, at) for r, at in held if r in live or at >= fresh_since]
        self._rooms[client] = held
        return len(held) < self._cap

    def issued(self, client: str, room: str) -> None:
        if self._cap <= 0:
            return
        if client not in self._rooms and len(self._rooms) >= MAX_CLIENTS:
            # Forget the client whose newest room is oldest: the least likely to be open.
            stale = min(self._rooms, key=lambda c: max(at for _, at in self._rooms[c]))
            del self._rooms[stale]
        self._rooms.setdefault(client, []).append((room, self._clock()))
