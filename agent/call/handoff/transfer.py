"""The phone end of a handoff: transfer a SIP caller to the business's handoff number.

`SipTransferEnd` implements `HandoffEnd` (agent/call/handoff/types.py). It asks LiveKit for a
blind transfer with `TransferSIPParticipant`: the SIP bridge sends the caller's carrier a
REFER to `tel:<handoff_number>` (or the SIP URI as written), the carrier dials it, and
reports back with NOTIFY; LiveKit's call returns once the person answered (then the bridge
hangs up its leg: the caller and the person talk directly, the agent's job ends) or fails with
the SIP status (486 Busy Here, 480/408 no answer...). `connect` maps that to TAKEN / FAILED
within `wait_s` and never raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from google.protobuf.duration_pb2 import Duration
from livekit import api

from ...server_api import server_api
from ...settings import Settings
from .types import HandoffEnd, HandoffOutcome, HandoffRequest, HandoffResult

logger = logging.getLogger("firstword.sip.transfer")

# Seconds allowed for the API round trip on top of the ring time.
_API_SLACK_S = 2.0


def transfer_uri(number: str) -> str:
    """What LiveKit's Refer-To gets: `tel:+1…` for an E.164 number, a SIP URI as written."""
    return number if number.startswith(("sip:", "sips:", "tel:")) else f"tel:{number}"


class SipTransferEnd:
    """Reaches a person for phone callers by transferring the call (SIP REFER)."""

    name = "sip"
    moves_the_caller = True  # the transfer ends the caller's leg with the agent
    overrun_s = 0.0

    def __init__(
        self,
        settings: Settings,
        handoff_number_for: Callable[[str], str | None],
        *,
        play_dialtone: bool = False,
    ) -> None:
        self._settings = settings
        self._number_for = handoff_number_for
        self._play_dialtone = play_dialtone

    def handles(self, request: HandoffRequest) -> bool:
        return request.caller_kind == "sip" and bool(self._number_for(request.account_id))

    async def connect(self, request: HandoffRequest, wait_s: float) -> HandoffResult:
        number = self._number_for(request.account_id)
        if not number or request.caller_kind != "sip":
            return HandoffResult(HandoffOutcome.FAILED, detail="not a SIP caller with a number")
        uri = transfer_uri(number)
        transfer = api.TransferSIPParticipantRequest(
            participant_identity=request.caller_identity,
            room_name=request.room,
            transfer_to=uri,
            play_dialtone=self._play_dialtone,
            ringing_timeout=Duration(seconds=max(1, int(wait_s))),
        )
        logger.info(
            "transferring SIP caller",
            extra={"room": request.room, "account": request.account_id, "transfer_to": uri},
        )
        try:
            async with server_api(self._settings, timeout_s=wait_s + _API_SLACK_S) as lk:
                response = await asyncio.wait_for(
                    lk.sip.transfer_sip_participant(transfer, timeout=wait_s + _API_SLACK_S),
                    timeout=wait_s + _API_SLACK_S,
                )
        except TimeoutError:
            return HandoffResult(HandoffOutcome.FAILED, detail=f"no answer within {wait_s:.0f} s")
        except api.SipCallError as error:
            code = error.sip_status_code
            detail = f"{code} {error.sip_status or ''}".strip() if code else str(error)
            return HandoffResult(HandoffOutcome.FAILED, detail=detail, extra={"transfer_to": uri})
        except Exception as error:  # the protocol's promise: a failure is a result, not a raise
            logger.warning("SIP transfer failed: %s", error)
            return HandoffResult(HandoffOutcome.FAILED, detail=str(error) or type(error).__name__)
        if response.status == api.STS_TRANSFER_FAILED:
            return HandoffResult(
                HandoffOutcome.FAILED,
                detail=f"{response.sip_status.code} {response.sip_status.status}".strip(),
                extra={"transfer_to": uri},
            )
        return HandoffResult(HandoffOutcome.TAKEN, taken_by=number, extra={"transfer_to": uri})


def _check_protocol(end: SipTransferEnd) -> HandoffEnd:
    return end  # mypy checks that SipTransferEnd satisfies HandoffEnd
