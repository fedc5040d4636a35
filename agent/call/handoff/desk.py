"""The front desk's end of a handoff, in the worker: a staff member takes a web or app caller's
call by joining its room from the desk page (agent/web/desk.py mints their token with an
identity starting `desk-`). `connect` waits for that participant, present already or joining
within the wait. With no staff login that sees the call's account (agent/accounts/staff.py), nobody
could come: it answers "not taken" at once.
"""

from __future__ import annotations

import asyncio

from livekit import rtc

from ...accounts.staff import StaffFile, StaffFileError
from .types import HandoffOutcome, HandoffRequest, HandoffResult, is_staff


class DeskEnd:
    """A staff member takes the call from the desk page by joining its room."""

    name = "desk"
    moves_the_caller = False  # the person joins the caller's room
    overrun_s = 0.0

    def __init__(self, room: rtc.Room, staff: StaffFile | None = None) -> None:
        self._room = room
        self._staff = staff

    def handles(self, request: HandoffRequest) -> bool:
        # Every caller: a phone caller reaches the desk when the account has no handoff
        # number (the transfers, listed before this end, take the others); the staff member
        # joins the room from the browser and the bridge carries their voice to the phone.
        return request.caller_kind in ("web", "app", "sip")

    async def connect(self, request: HandoffRequest, wait_s: float) -> HandoffResult:
        if self._staff is not None:
            try:
                anyone = await asyncio.to_thread(self._staff.anyone_for, request.account_id)
            except (StaffFileError, OSError) as error:
                return HandoffResult(HandoffOutcome.FAILED, detail=f"staff file: {error}")
            if not anyone:
                return HandoffResult(
                    HandoffOutcome.NOT_TAKEN,
                    detail=f"no staff login sees account {request.account_id!r}",
                )
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
        except Exception as error:  # `connect` never raises (agent/call/handoff/types.py)
            return HandoffResult(HandoffOutcome.FAILED, detail=repr(error))
        finally:
            self._room.off("participant_connected", _on_joined)
        return HandoffResult(
            HandoffOutcome.TAKEN, taken_by=staff.identity, extra={"name": staff.name}
        )
