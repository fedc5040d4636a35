"""What a call does differently when the caller phoned in through LiveKit's SIP bridge.

- **Ring time**: the bridge answers the INVITE (200 OK) once the agent's audio track is
  subscribed, i.e. the agent's readiness is the caller's ring time, and it flips the caller's
  `sip.callStatus` attribute from `ringing` to `active` then. `watch_answer` turns that into
  `firstword_sip_answer_seconds` (the SIP participant joining, ~ the INVITE, → active) and a
  log line. The greeting goes out on the same subscription, so it is never played to a
  phone that has not been answered.
- **The account** comes from the dialled number: the dispatch rule made by
  agent/sip/provision.py sets `firstword.account`, and `sip.trunkPhoneNumber` is the fallback
  (agent/accounts/resolve.py).
- **Noise**: agent/noise.py picks BVCTelephony for SIP callers (on LiveKit Cloud only).
- **Audio**: the bridge speaks G.711 at 8 kHz to the phone and Opus to the room; the agent
  hears band-limited audio and Whisper resamples it to 16 kHz as for any caller. Nothing else
  to set.
- **DTMF** is ignored: the bridge publishes keypresses as `sip_dtmf_received` data, and
  nothing listens (no menus: the caller says what they want).
- **Hanging up** (BYE) makes the bridge leave the room with CLIENT_INITIATED, which closes
  the session and ends the job at once (entrypoint's `_on_close`).
- **Handoff to a person**: `PhoneHandoff` below (until the shared handoff mechanism,
  agent/handoff.py, calls `SipTransferEnd` itself).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, ConversationItemAddedEvent

from .. import metrics
from ..accounts import Account
from ..handoff_types import HandoffOutcome, HandoffRequest, HandoffResult
from .transfer import SipTransferEnd

logger = logging.getLogger("firstword.sip")

CALL_STATUS = "sip.callStatus"
CALLER_NUMBER = "sip.phoneNumber"
# Said when nobody took the transfer; the caller stays with the agent.
NO_TAKE_LINE = (
    "I'm sorry, nobody could come to the phone just now. If you tell me your name and what "
    "you need, I will pass the message on."
)
TRANSFER_WAIT_S = 30.0


def is_sip_caller(participant: rtc.RemoteParticipant) -> bool:
    return participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def _attributes(participant: rtc.Participant) -> Mapping[str, str]:
    attributes = participant.attributes
    return attributes if isinstance(attributes, Mapping) else {}


def watch_answer(room: rtc.Room, caller: rtc.RemoteParticipant) -> None:
    """Observe the bridge answering the call (sip.callStatus → active) once."""
    seen = False

    def check(participant: rtc.Participant) -> None:
        nonlocal seen
        if seen or participant.identity != caller.identity:
            return
        if _attributes(participant).get(CALL_STATUS) != "active":
            return
        seen = True
        room.off("participant_attributes_changed", on_changed)
        joined = caller.joined_at
        if joined is None:
            return
        seconds = max(0.0, time.time() - joined.timestamp())
        metrics.SIP_ANSWER.observe(seconds)
        logger.info(
            "SIP call answered",
            extra={"room": room.name, "answer_seconds": round(seconds, 3)},
        )

    def on_changed(_changed: Mapping[str, str], participant: rtc.Participant) -> None:
        check(participant)

    room.on("participant_attributes_changed", on_changed)
    check(caller)


class PhoneHandoff:
    """Transfers a phone caller once the agent has said the account's handoff phrase.

    A minimal call site for `SipTransferEnd`: the handoff phrase (said by the FAQ answerer when
    nothing matched, or by a cloud model after `hand_off_to_person`) is the request. While the
    transfer rings the agent does not listen; if nobody takes it the caller is back with the
    agent, who says so and offers to take a message.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        room: rtc.Room,
        caller: rtc.RemoteParticipant,
        account: Account,
        end: SipTransferEnd,
        *,
        wait_s: float = TRANSFER_WAIT_S,
    ) -> None:
        self._session = session
        self._room = room
        self._caller = caller
        self._account = account
        self._end = end
        self._wait_s = wait_s
        self._task: asyncio.Task[None] | None = None
        self.results: list[HandoffResult] = []
        session.on("conversation_item_added", self._on_item)

    def _on_item(self, event: ConversationItemAddedEvent) -> None:
        item = event.item
        if item.type != "message" or item.role != "assistant":
            return
        if (item.text_content or "").strip() != self._account.handoff_phrase.strip():
            return
        if item.interrupted or (self._task is not None and not self._task.done()):
            return
        request = HandoffRequest(
            account_id=self._account.id,
            room=self._room.name,
            caller_identity=self._caller.identity,
            caller_kind="sip",
            caller_number=_attributes(self._caller).get(CALLER_NUMBER),
            reason="no stored answer matched",
            question=self._last_question(),
            requested_at=time.time(),
        )
        if not self._end.handles(request):
            return
        self._task = asyncio.create_task(self._transfer(request), name="sip-transfer")

    def _last_question(self) -> str:
        for item in reversed(self._session.history.items):
            if item.type == "message" and item.role == "user":
                return item.text_content or ""
        return ""

    async def _transfer(self, request: HandoffRequest) -> None:
        self._session.input.set_audio_enabled(False)
        try:
            result = await self._end.connect(request, self._wait_s)
        finally:
            self._session.input.set_audio_enabled(True)
        self.results.append(result)
        logger.info(
            "SIP handoff %s",
            result.outcome.value,
            extra={"room": request.room, "detail": result.detail, "taken_by": result.taken_by},
        )
        if result.outcome is not HandoffOutcome.TAKEN:
            self._session.say(NO_TAKE_LINE)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
