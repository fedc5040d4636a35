"""The phone end of a handoff: transfer a SIP caller to the business's handoff number.

`SipTransferEnd` implements `HandoffEnd` (agent/handoff_types.py). It asks LiveKit for a
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
import time
from collections.abc import Callable

import aiohttp
from google.protobuf.duration_pb2 import Duration
from livekit import api

from ..handoff_types import HandoffEnd, HandoffOutcome, HandoffRequest, HandoffResult
from ..settings import Settings

logger = logging.getLogger("firstword.sip.transfer")

# Seconds allowed for the API round trip on top of the ring time.
_API_SLACK_S = 2.0
# How often the caller's leg is looked at after an inconclusive transfer error.
_LEG_POLL_S = 0.25


def transfer_uri(number: str) -> str:
    """What LiveKit's Refer-To gets: `tel:+1…` for an E.164 number, a SIP URI as written."""
    return number if number.startswith(("sip:", "sips:", "tel:")) else f"tel:{number}"


class SipTransferEnd:
    """Reaches a person for phone callers by transferring the call (SIP REFER)."""

    name = "sip"

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
            async with api.LiveKitAPI(
                self._settings.livekit_url,
                self._settings.livekit_api_key,
                self._settings.livekit_api_secret.get_secret_value(),
                timeout=aiohttp.ClientTimeout(total=wait_s + _API_SLACK_S),
            ) as lk:
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
        except api.ServerError as error:
            # The server answered, without a SIP status: the bridge's own REFER transaction
            # failed ("transaction failed to complete (0 intermediate responses)"). That does
            # not say the carrier refused: CI saw the bridge report it 1 ms after its REFER
            # while the carrier accepted it, connected the person and ended the bridge's leg
            # 5 s later; the agent then recorded a failure and spoke the no-take line to a
            # caller already with the person. The caller's leg ending is the carrier's answer.
            logger.warning("SIP transfer reported an error; watching the caller's leg: %s", error)
            if await self._leg_ended(request, wait_s):
                return HandoffResult(
                    HandoffOutcome.TAKEN,
                    taken_by=number,
                    detail=f"the caller's leg ended after the bridge reported: {error}",
                    extra={"transfer_to": uri},
                )
            return HandoffResult(
                HandoffOutcome.FAILED, detail=str(error), extra={"transfer_to": uri}
            )
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

    async def _leg_ended(self, request: HandoffRequest, wait_s: float) -> bool:
        """Whether the caller's SIP participant leaves the room within `wait_s` (a completed
        transfer ends the bridge's leg); False at once if the server cannot be asked."""
        deadline = time.monotonic() + wait_s
        try:
            async with api.LiveKitAPI(
                self._settings.livekit_url,
                self._settings.livekit_api_key,
                self._settings.livekit_api_secret.get_secret_value(),
                timeout=aiohttp.ClientTimeout(total=_API_SLACK_S),
            ) as lk:
                while time.monotonic() < deadline:
                    listed = await asyncio.wait_for(
                        lk.room.list_participants(api.ListParticipantsRequest(room=request.room)),
                        _API_SLACK_S,
                    )
                    identities = {p.identity for p in listed.participants}
                    if request.caller_identity not in identities:
                        return True
                    await asyncio.sleep(_LEG_POLL_S)
        except Exception as error:  # cannot tell: the transfer counts as failed
            logger.warning("could not watch the caller's leg: %s", error)
        return False


def _check_protocol(end: SipTransferEnd) -> HandoffEnd:
    return end  # mypy checks that SipTransferEnd satisfies HandoffEnd
