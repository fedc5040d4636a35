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
- **Noise**: agent/call/noise.py picks BVCTelephony for SIP callers (on LiveKit Cloud only).
- **Audio**: the bridge speaks G.711 at 8 kHz to the phone and Opus to the room; the agent
  hears band-limited audio and Whisper resamples it to 16 kHz as for any caller. Nothing else
  to set.
- **DTMF** is ignored: the bridge publishes keypresses as `sip_dtmf_received` data, and
  nothing listens (no menus: the caller says what they want).
- **Hanging up** (BYE) makes the bridge leave the room with CLIENT_INITIATED, which closes
  the session and ends the job at once (entrypoint's `_on_close`).
- **Handoff to a person**: the shared mechanism (agent/call/handoff/core.py) hands a phone caller to
  `SipTransferEnd` (agent/call/handoff/transfer.py), which transfers the call by SIP REFER to the
  account's `handoff_number`; a busy or unanswered transfer leaves the caller with the agent,
  who says the no-take line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from livekit import rtc

from .. import metrics

logger = logging.getLogger("firstword.sip")

CALL_STATUS = "sip.callStatus"


def is_sip_caller(participant: rtc.RemoteParticipant) -> bool:
    return participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def caller_number(participant: rtc.RemoteParticipant) -> str | None:
    """A phone caller's number, as the SIP bridge gives it (`sip.phoneNumber`); None otherwise."""
    return _attributes(participant).get("sip.phoneNumber") or None


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
