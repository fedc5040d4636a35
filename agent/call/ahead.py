"""What a call does before its caller is there: the agent's track, and a pre-dispatched session.

livekit-agents publishes the agent's audio track only after RoomIO has linked a caller, so
every call paid for the publication (~30 ms) and the caller's subscription after the caller
arrived, and in a room made ahead of its caller (`agent/web/`) the session's start too.

- `AgentTrack`: the agent's audio output, published the moment the agent is in the room, in
  every call, while the account is resolved and the session is built (and, in a room made
  ahead, while nobody is there yet). A SIP bridge that answers the phone only once the agent
  publishes audio sees it at once. The output is the framework's own (see
  `compat.EarlyRoomAudioOutput`); the session is handed it instead of making its own.
- `named_before_caller`: a room whose account is named by the dispatch or the room itself
  (a pre-dispatched room) gets its session built and started before the caller joins, and its
  greeting said at once (see `agent/worker/job.py`): the greeting's frames wait in the track's
  output, which sends its first frame the moment a participant subscribes. The server tells
  the agent of the caller's subscription ~0.1-0.3 s before it tells it that the caller joined
  (measured here, see README), so waiting for the caller's `participant_connected` to start
  speaking cost that much again.
- `TextAfterCaller`: the greeting's transcript, said before anyone is there, is held back until
  RoomIO has linked the caller (RoomIO drops agent text until then, and a text stream sent to
  an empty room reaches nobody).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from livekit import rtc
from livekit.agents.voice import io

from ..accounts import Resolution
from ..compat import TRACK_NAME, EarlyRoomAudioOutput

logger = logging.getLogger("firstword.ahead")

# Where an account can come from before any caller is in the room (`resolve_account`).
_NAMED_BEFORE_CALLER = ("job metadata", "room metadata")


def named_before_caller(resolution: Resolution) -> bool:
    """True when the room itself names the account: it is known before the caller joins."""
    return resolution.source in _NAMED_BEFORE_CALLER


class AgentTrack:
    """The agent's audio track, published now; `output` becomes the session's audio output."""

    def __init__(self, room: rtc.Room) -> None:
        self._room = room
        self._io = EarlyRoomAudioOutput(room)
        # The task publishes, then waits for the first subscriber (the framework's own
        # `start`), which is when frames may flow; cancelled in `aclose`.
        self._publishing = asyncio.create_task(self._io.publish(), name="firstword-agent-track")
        self._publishing.add_done_callback(self._log_failure)
        self._closed = False

    @property
    def output(self) -> EarlyRoomAudioOutput:
        return self._io

    @property
    def closed(self) -> bool:
        return self._closed

    @staticmethod
    def _log_failure(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("publishing the agent's track failed", exc_info=task.exception())

    async def aclose(self, *, unpublish: bool = False) -> None:
        """Stop the output; with `unpublish`, take the track out of the room (hold mode
        publishes its own)."""
        if self._closed:
            return
        self._closed = True
        await self._until_published(5.0)
        self._publishing.cancel()
        await asyncio.gather(self._publishing, return_exceptions=True)
        await self._io.aclose()
        if unpublish and self._room.isconnected():
            local = self._room.local_participant
            for publication in list(local.track_publications.values()):
                if publication.name == TRACK_NAME:
                    try:
                        await asyncio.wait_for(local.unpublish_track(publication.sid), 5.0)
                    except Exception as error:  # the room may be closing; nothing to keep
                        logger.warning("could not unpublish the agent's track: %s", error)

    async def _until_published(self, limit_s: float) -> None:
        """Until the track is in the room (or publishing ended), at most `limit_s`.

        Cancelling `publish_track` halfway leaves livekit-rtc a `local_track_published` event
        for a track it never recorded (a KeyError traceback in its room listener), so the
        publication is let finish first. Polled: livekit-rtc offers no event for "this
        publish call finished" other than the call itself, which is the task we cancel.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        local = self._room.local_participant
        while not self._publishing.done() and loop.time() < deadline:
            if any(p.name == TRACK_NAME for p in local.track_publications.values()):
                return
            await asyncio.sleep(0.01)


class TextAfterCaller(io.TextOutput):
    """A transcript output that forwards nothing until `linked` (the caller is linked)."""

    def __init__(self, next_in_chain: io.TextOutput, linked: Callable[[], Awaitable[None]]):
        super().__init__(label="TextAfterCaller", next_in_chain=next_in_chain)
        self._next = next_in_chain
        self._linked = linked

    async def capture_text(self, text: str) -> None:
        # The framework awaits each chunk before it flushes the segment, so a flush never
        # overtakes text that is still waiting here. No timeout: the job ends (and this
        # with it) when no caller comes (FIRSTWORD_CALLER_WAIT_TIMEOUT).
        await self._linked()
        await self._next.capture_text(text)

    def flush(self) -> None:
        self._next.flush()
