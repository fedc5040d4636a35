"""Warm transfer for phone callers: the person is reached and briefed before the caller is.

A blind transfer (transfer.py) hands the caller to whoever picks up, who knows nothing about
the call, and a person who does not answer leaves the caller to start again. With
`handoff_transfer: warm` in the account's file, a phone caller asking for a person is instead:

1. put on hold: the session stops listening, and the caller hears "please stay on the line",
   a soft ring while the person's phone rings, and "still trying" every ~20 s;
2. the agent dials the account's `handoff_number` through the outbound trunk
   (`firstword-outbound`, FIRSTWORD_SIP_OUTBOUND_ADDRESS; LiveKit's `CreateSIPParticipant`)
   into the caller's own room, as a participant the caller cannot hear and who cannot hear
   the caller;
3. once the person answers, the agent tells them who is calling and what they asked, on an
   audio track of its own that only the person may subscribe to, and asks them to press 1 to
   take the call or 2 to decline (asked twice, ANSWER_S each time);
4. 1: the caller hears "I'm putting you through", the two are subscribed to each other and the
   agent steps back (the handoff is TAKEN by that number); when either hangs up, the room is
   deleted, which ends the other's leg;
5. 2, no key, no answer, busy, or the person hanging up: the person's leg is hung up and the
   caller is back with the agent (FAILED), who offers to take a message (voicemail.py).

Why in the caller's room and not a consult room: LiveKit's own warm transfer
(`livekit.agents.beta.workflows.WarmTransferTask`) briefs the person in a second room and then
moves them with `MoveParticipant`, which the self-hosted server (v1.13.5) does not implement
("not implemented" in its room manager). Keeping everyone in one room and deciding who hears
whom with LiveKit's own controls works on any server: the agent's two tracks carry
subscription permissions (`set_track_subscription_permissions`: the caller may subscribe to
the agent's voice, the person only to the briefing), and the caller's and the person's tracks
are kept apart with the server API's `UpdateSubscriptions` until the person accepts. The
person's participant joins (and publishes) while their phone is still ringing
(livekit-sip's `connectToRoom` comes before it dials), so they are kept apart before anyone
can speak.

Without the outbound trunk the warm end falls back to the blind transfer (logged), so a
phone caller still reaches the number.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from google.protobuf.duration_pb2 import Duration
from livekit import api, rtc

from ...accounts import Account
from ...engines.audio import float_to_int16, tone
from ...engines.greetings import each, to_frames
from ...server_api import server_api
from ...settings import Settings
from ...sip.provision import outbound_trunk_id
from .core import played_out
from .transfer import SipTransferEnd
from .types import HandoffEnd, HandoffOutcome, HandoffRequest, HandoffResult

if TYPE_CHECKING:
    from livekit.agents import AgentSession, SpeechHandle

logger = logging.getLogger("firstword.handoff.warm")

# The person's participant identity starts with this (the caller's keypad ignores their keys).
PERSON_PREFIX = "person-"
ACCEPT_KEY = "1"
DECLINE_KEY = "2"
# Seconds the person has to press a key after each ask (asked twice).
ANSWER_S = 10.0
# What a warm transfer may take beyond the ring time: the briefing (~8 s), two asks, the
# lines around them. The handoff mechanism allows an end its wait plus this.
OVERRUN_S = 2 * ANSWER_S + 25.0

# What the caller hears (fixed: pre-rendered with the answers, `caller_lines`).
HOLD_LINE = "Please stay on the line while I reach someone for you."
STILL_HOLDING_LINE = "Thank you for holding. I'm still trying to reach someone."
PUTTING_THROUGH_LINE = "Thank you for holding. I'm putting you through now."
# What the person hears.
ASK_AGAIN = "Press 1 to take the call, or 2 to decline."
CONNECTING = "Connecting you now."
DECLINED = "Okay, I'll take a message from the caller instead. Goodbye."

# Bounds on the call's own steps (every wait has a timeout).
API_TIMEOUT_S = 10.0
DIAL_SLACK_S = 5.0
ISOLATE_TIMEOUT_S = 5.0
RENDER_TIMEOUT_S = 20.0
SAY_TIMEOUT_S = 30.0
HANG_UP_TIMEOUT_S = 5.0
# The hold: ring 2 s, quiet 4 s (a ringback's rhythm, softly), the line again every 3 rings.
RING_S, RING_GAP_S, RINGS_PER_LINE = 2.0, 4.0, 3


def briefing(account: Account, request: HandoffRequest) -> str:
    """What the person hears first: who is calling, what they asked, what to press."""
    number = f" from {_spoken_number(request.caller_number)}" if request.caller_number else ""
    if request.question.strip():
        asked = f' They asked: "{request.question.strip()}".'
    else:
        asked = f" The reason: {request.reason}."
    return (
        f"Hello, this is the {account.business_name} assistant. I have a caller on the line"
        f"{number}.{asked} {ASK_AGAIN}"
    )


def caller_lines(account: Account) -> list[str]:
    """The caller's fixed lines of a warm transfer (for the pre-rendered answers)."""
    if account.handoff_transfer != "warm":
        return []
    return [HOLD_LINE, STILL_HOLDING_LINE, PUTTING_THROUGH_LINE]


def _spoken_number(number: str) -> str:
    # Digits one by one ("+1 5 0 3 ..."): a voice reads "+15035550123" as a large number.
    return " ".join(number.lstrip("+"))


class DialFailed(Exception):
    """The person could not be reached (busy, no answer, the trunk's error)."""


class PersonLeft(Exception):
    """The person hung up during the briefing."""


class Consult(Protocol):
    """What a warm transfer does to the call (LiveKit's in `LiveKitConsult`, fakes in tests)."""

    async def can_dial(self) -> bool:
        """Whether the outbound trunk is there to dial through."""
        ...

    async def start_hold(self) -> None: ...

    async def stop_hold(self) -> None: ...

    async def dial(self, number: str, ring_s: float, lines: list[str]) -> None:
        """Ring the person into the call, kept apart from the caller; returns once they
        answered (raises DialFailed). `lines` are what may be said to them (made ahead)."""
        ...

    async def tell_person(self, text: str) -> None:
        """Say `text` to the person only (raises PersonLeft)."""
        ...

    async def next_key(self, timeout_s: float) -> str | None:
        """The person's next key press, None after `timeout_s` (raises PersonLeft)."""
        ...

    async def tell_caller(self, text: str) -> None: ...

    async def connect(self) -> None:
        """The caller and the person hear each other from now on."""
        ...

    async def finish(self, *, connected: bool) -> None:
        """Stop the hold and undo the consult; not connected: hang up on the person and give
        the caller back to the agent. Never raises."""
        ...


class WarmTransferEnd:
    """Reaches a person for phone callers of a `handoff_transfer: warm` account."""

    name = "warm"
    moves_the_caller = True  # starts once the agent's handoff line has been said
    overrun_s = OVERRUN_S

    def __init__(
        self,
        account: Account,
        consult: Consult,
        blind: HandoffEnd,
        *,
        answer_s: float = ANSWER_S,
    ) -> None:
        self._account = account
        self._consult = consult
        self._blind = blind
        self._answer_s = answer_s

    def handles(self, request: HandoffRequest) -> bool:
        return (
            request.caller_kind == "sip"
            and self._account.handoff_transfer == "warm"
            and bool(self._account.handoff_number)
        )

    async def connect(self, request: HandoffRequest, wait_s: float) -> HandoffResult:
        number = self._account.handoff_number
        if not number:
            return HandoffResult(HandoffOutcome.FAILED, detail="no handoff number")
        if not await self._consult.can_dial():
            logger.warning(
                "warm transfer: no outbound trunk to dial through; transferring blind",
                extra={"account": request.account_id, "room": request.room},
            )
            return await self._blind.connect(request, wait_s)
        extra = {"dialled": number}
        connected = False
        await self._consult.start_hold()
        try:
            text = briefing(self._account, request)
            try:
                await self._consult.dial(number, wait_s, [text, ASK_AGAIN, CONNECTING, DECLINED])
            except DialFailed as error:
                return HandoffResult(HandoffOutcome.FAILED, detail=str(error), extra=extra)
            logger.info("warm transfer: the person answered", extra={"room": request.room})
            try:
                decision = await self._ask(text)
                if decision != "accepted":
                    await self._consult.tell_person(DECLINED)
            except PersonLeft:
                decision = "the person hung up"
            if decision != "accepted":
                return HandoffResult(HandoffOutcome.FAILED, detail=decision, extra=extra)
            await self._consult.stop_hold()
            await asyncio.gather(
                self._consult.tell_person(CONNECTING),
                self._consult.tell_caller(PUTTING_THROUGH_LINE),
            )
            await self._consult.connect()
            connected = True
            return HandoffResult(HandoffOutcome.TAKEN, taken_by=number, extra=extra)
        except PersonLeft:
            return HandoffResult(HandoffOutcome.FAILED, detail="the person hung up", extra=extra)
        finally:
            # Shielded: the caller hanging up cancels the handoff, and the person's phone
            # must still be put down.
            await asyncio.shield(self._consult.finish(connected=connected))

    async def _ask(self, text: str) -> str:
        """ "accepted", "declined" or "no answer to the briefing"."""
        for line in (text, ASK_AGAIN):
            await self._consult.tell_person(line)
            key = await self._consult.next_key(self._answer_s)
            while key is not None and key not in (ACCEPT_KEY, DECLINE_KEY):
                key = await self._consult.next_key(self._answer_s)
            if key == ACCEPT_KEY:
                return "accepted"
            if key == DECLINE_KEY:
                return "declined"
        return "no answer to the briefing"


def _check_protocol(end: WarmTransferEnd) -> HandoffEnd:
    return end  # mypy checks that WarmTransferEnd satisfies HandoffEnd


# --- LiveKit binding -------------------------------------------------------------------------


class Voice(Protocol):
    """The account's local voice (agent/engines/local_tts.py)."""

    @property
    def sample_rate(self) -> int: ...

    def render(self, text: str) -> np.ndarray: ...


class LiveKitConsult:
    """One call's warm transfer on LiveKit: the hold through the session, the person dialled
    into the room, the briefing on a track only they may hear, keys from `sip_dtmf_received`."""

    def __init__(
        self,
        room: rtc.Room,
        session: AgentSession[Any],
        account: Account,
        caller_identity: str,
        settings: Settings,
        voice: Voice,
        end_call: Callable[[], Awaitable[None]],
    ) -> None:
        self._room = room
        self._session = session
        self._account = account
        self._caller = caller_identity
        self._settings = settings
        self._voice = voice
        self._end_call = end_call
        self.identity = f"{PERSON_PREFIX}{uuid.uuid4().hex[:8]}"
        self._trunk_id: str | None = None
        self._hold: asyncio.Task[None] | None = None
        self._speech: SpeechHandle | None = None
        self._source: rtc.AudioSource | None = None
        self._track: rtc.LocalAudioTrack | None = None
        self._rendered: dict[str, asyncio.Task[np.ndarray]] = {}
        self._keys: asyncio.Queue[str] = asyncio.Queue()
        self._left = asyncio.Event()
        self._seen = asyncio.Event()
        self._isolated: asyncio.Task[None] | None = None
        self._ended: asyncio.Task[None] | None = None
        self._listening = False

    # the trunk

    async def can_dial(self) -> bool:
        try:
            async with server_api(self._settings, timeout_s=API_TIMEOUT_S) as lk:
                self._trunk_id = await outbound_trunk_id(lk.sip)
        except Exception as error:  # the blind transfer is the way left
            logger.warning("warm transfer: could not list the outbound trunks: %r", error)
            return False
        return self._trunk_id is not None

    # the caller's side

    async def start_hold(self) -> None:
        # From here nothing the caller says is answered (or starts another handoff).
        self._session.input.set_audio_enabled(False)
        self._hold = asyncio.create_task(self._hold_loop(), name="firstword-warm-hold")

    async def _hold_loop(self) -> None:
        await self.tell_caller(HOLD_LINE)
        ring = _ring_frames(self._voice.sample_rate)
        while True:
            for _ in range(RINGS_PER_LINE):
                await self._say_to_caller("(ringing)", each(ring))
            await self.tell_caller(STILL_HOLDING_LINE)

    async def tell_caller(self, text: str) -> None:
        await self._say_to_caller(text, None)

    async def _say_to_caller(self, text: str, audio: AsyncIterator[rtc.AudioFrame] | None) -> None:
        if audio is None:
            handle = self._session.say(text, allow_interruptions=False, add_to_chat_ctx=False)
        else:
            handle = self._session.say(
                text, audio=audio, allow_interruptions=False, add_to_chat_ctx=False
            )
        self._speech = handle
        await played_out(handle, "warm transfer: a line to the caller")

    async def stop_hold(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            await asyncio.gather(self._hold, return_exceptions=True)
            self._hold = None
        speech = self._speech
        if speech is not None and not speech.done():
            speech.interrupt(force=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(speech.wait_for_playout(), 2.0)

    # the person's side

    async def dial(self, number: str, ring_s: float, lines: list[str]) -> None:
        for text in lines:  # made while the phone rings
            self._rendered[text] = asyncio.create_task(
                asyncio.wait_for(asyncio.to_thread(self._voice.render, text), RENDER_TIMEOUT_S)
            )
        await self._publish_briefing_track()
        self._listen()
        self._isolated = asyncio.create_task(self._keep_apart(), name="firstword-warm-apart")
        request = api.CreateSIPParticipantRequest(
            sip_trunk_id=self._trunk_id or "",
            sip_call_to=number,
            sip_number=self._account.phone_numbers[0] if self._account.phone_numbers else "",
            room_name=self._room.name,
            participant_identity=self.identity,
            participant_name=f"{self._account.business_name} ({number})",
            wait_until_answered=True,
            ringing_timeout=Duration(seconds=max(1, int(ring_s))),
            play_dialtone=False,
        )
        logger.info("warm transfer: dialling the person", extra={"room": self._room.name})
        try:
            async with server_api(self._settings, timeout_s=ring_s + DIAL_SLACK_S) as lk:
                await asyncio.wait_for(
                    lk.sip.create_sip_participant(request, timeout=ring_s + DIAL_SLACK_S),
                    ring_s + DIAL_SLACK_S,
                )
        except TimeoutError as error:
            raise DialFailed(f"no answer within {ring_s:.0f} s") from error
        except api.SipCallError as error:
            code = error.sip_status_code
            detail = f"{code} {error.sip_status or ''}".strip() if code else str(error)
            raise DialFailed(detail) from error
        except Exception as error:
            raise DialFailed(str(error) or type(error).__name__) from error
        # Nobody speaks before the two are apart: it happened while the phone rang.
        try:
            await asyncio.wait_for(asyncio.shield(self._isolated), ISOLATE_TIMEOUT_S)
        except Exception as error:
            why = f"could not keep the caller and the person apart: {error!r}"
            raise DialFailed(why) from error

    async def _publish_briefing_track(self) -> None:
        local = self._room.local_participant
        voice_sids = [p.sid for p in local.track_publications.values()]
        # Anyone else in the call (a staff member from the desk) hears the agent as before.
        others = [
            rtc.ParticipantTrackPermission(participant_identity=p.identity, allow_all=True)
            for p in self._room.remote_participants.values()
            if p.identity not in (self._caller, self.identity)
        ]
        caller = rtc.ParticipantTrackPermission(
            participant_identity=self._caller, allowed_track_sids=voice_sids
        )
        # Before the briefing track exists: the caller keeps the agent's voice (the hold plays
        # on it) and can never subscribe to what is published next; the person, not listed
        # yet, to nothing.
        local.set_track_subscription_permissions(
            allow_all_participants=False, participant_permissions=[caller, *others]
        )
        self._source = rtc.AudioSource(self._voice.sample_rate, 1)
        self._track = rtc.LocalAudioTrack.create_audio_track("firstword-briefing", self._source)
        published = await local.publish_track(
            self._track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        person = rtc.ParticipantTrackPermission(
            participant_identity=self.identity, allowed_track_sids=[published.sid]
        )
        local.set_track_subscription_permissions(
            allow_all_participants=False, participant_permissions=[caller, person, *others]
        )

    def _listen(self) -> None:
        self._listening = True
        self._room.on("sip_dtmf_received", self._on_key)
        self._room.on("participant_disconnected", self._on_left)
        self._room.on("track_published", self._on_published)
        self._room.on("participant_connected", self._on_joined)

    def _unlisten(self) -> None:
        if self._listening:
            self._listening = False
            self._room.off("sip_dtmf_received", self._on_key)
            self._room.off("participant_disconnected", self._on_left)
            self._room.off("track_published", self._on_published)
            self._room.off("participant_connected", self._on_joined)

    def _on_key(self, event: rtc.SipDTMF) -> None:
        if event.participant is not None and event.participant.identity == self.identity:
            self._keys.put_nowait(event.digit)

    def _on_left(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.identity:
            self._left.set()

    def _on_published(self, _pub: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant) -> None:
        if who.identity == self.identity:
            self._seen.set()

    def _on_joined(self, who: rtc.RemoteParticipant) -> None:
        if who.identity == self.identity:
            self._seen.set()

    async def _keep_apart(self) -> None:
        """Once the person's audio track is published: the person unsubscribed from the
        caller's tracks and the caller from the person's (LiveKit subscribed both on join)."""
        person = self._room.remote_participants.get(self.identity)
        while person is None or not person.track_publications:
            self._seen.clear()
            await self._seen.wait()
            person = self._room.remote_participants.get(self.identity)
        await self._subscribe(False)
        logger.info("warm transfer: caller and person kept apart", extra={"room": self._room.name})

    async def _subscribe(self, subscribe: bool) -> None:
        caller = self._room.remote_participants.get(self._caller)
        person = self._room.remote_participants.get(self.identity)
        if caller is None or person is None:
            raise RuntimeError("the caller or the person is not in the room")
        async with server_api(self._settings, timeout_s=API_TIMEOUT_S) as lk:
            for who, other in ((person, caller), (caller, person)):
                sids = [p.sid for p in other.track_publications.values()]
                if sids:
                    await lk.room.update_subscriptions(
                        api.UpdateSubscriptionsRequest(
                            room=self._room.name,
                            identity=who.identity,
                            track_sids=sids,
                            subscribe=subscribe,
                        )
                    )

    async def tell_person(self, text: str) -> None:
        if self._left.is_set():
            raise PersonLeft
        task = self._rendered.get(text)
        if task is None:
            task = self._rendered[text] = asyncio.create_task(
                asyncio.wait_for(asyncio.to_thread(self._voice.render, text), RENDER_TIMEOUT_S)
            )
        audio = await task
        assert self._source is not None
        pcm = float_to_int16(audio)
        for frame in to_frames(pcm, self._voice.sample_rate):
            if self._left.is_set():
                raise PersonLeft
            await self._source.capture_frame(frame)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._source.wait_for_playout(), SAY_TIMEOUT_S)

    async def next_key(self, timeout_s: float) -> str | None:
        if not self._keys.empty():
            return self._keys.get_nowait()
        key = asyncio.ensure_future(self._keys.get())
        left = asyncio.ensure_future(self._left.wait())
        try:
            await asyncio.wait({key, left}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
            if not key.done():
                key.cancel()
        if key.done() and not key.cancelled():
            return key.result()
        if self._left.is_set():
            raise PersonLeft
        return None

    # the end of the consult

    async def connect(self) -> None:
        await self.stop_hold()
        await self._subscribe(True)
        self._room.local_participant.set_track_subscription_permissions(allow_all_participants=True)
        # From now the call is the caller's and the person's: when either leaves, it ends.
        self._room.on("participant_disconnected", self._on_call_left)
        logger.info("warm transfer: caller and person connected", extra={"room": self._room.name})

    def _on_call_left(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity in (self._caller, self.identity) and self._ended is None:
            self._room.off("participant_disconnected", self._on_call_left)
            self._ended = asyncio.create_task(self._end(), name="firstword-warm-end")

    async def _end(self) -> None:
        try:
            await asyncio.wait_for(self._end_call(), HANG_UP_TIMEOUT_S)
        except Exception:  # the server reaps an emptied room; the bridge's media timeout too
            logger.warning("warm transfer: could not end the call", exc_info=True)

    async def finish(self, *, connected: bool) -> None:
        with contextlib.suppress(Exception):
            await self.stop_hold()
        self._unlisten()
        for task in [*self._rendered.values(), self._isolated]:
            if task is not None and not task.done():
                task.cancel()
        if not connected:
            await self._hang_up_person()
            with contextlib.suppress(Exception):
                self._room.local_participant.set_track_subscription_permissions(
                    allow_all_participants=True
                )
            with contextlib.suppress(Exception):
                self._session.input.set_audio_enabled(True)  # back with the agent
        if self._track is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._room.local_participant.unpublish_track(self._track.sid), API_TIMEOUT_S
                )
            self._track = None
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.aclose()
            self._source = None

    async def _hang_up_person(self) -> None:
        try:
            async with server_api(self._settings, timeout_s=HANG_UP_TIMEOUT_S) as lk:
                await lk.room.remove_participant(
                    api.RoomParticipantIdentity(room=self._room.name, identity=self.identity)
                )
        except api.TwirpError as error:
            if error.code != api.TwirpErrorCode.NOT_FOUND:  # never joined, or gone already
                logger.warning("warm transfer: could not hang up on the person: %s", error)
        except Exception as error:
            logger.warning("warm transfer: could not hang up on the person: %r", error)

    async def aclose(self) -> None:
        """The job's shutdown: what the end of a connected call started is awaited."""
        self._room.off("participant_disconnected", self._on_call_left)
        if self._ended is not None:
            await asyncio.gather(self._ended, return_exceptions=True)


@functools.lru_cache(maxsize=4)
def _ring_frames(rate: int) -> list[rtc.AudioFrame]:
    """A soft ringback (440 + 480 Hz) for RING_S, then RING_GAP_S of quiet."""
    ring = tone(rate, (440.0, 480.0), RING_S, amplitude=0.06, fade_s=0.05)
    audio = np.concatenate([ring, np.zeros(int(rate * RING_GAP_S))])
    return list(to_frames(float_to_int16(audio), rate))


def end_for(account: Account, consult: LiveKitConsult, settings: Settings) -> WarmTransferEnd:
    """The warm end of one phone call over its consult, the blind transfer as its fallback."""
    blind = SipTransferEnd(settings, lambda _id: account.handoff_number)
    return WarmTransferEnd(account, consult, blind)
