"""The handoff to a person: one mechanism, several ends (types in agent/call/handoff/types.py).

What starts a handoff, on a call that has a session:
- the `hand_off_to_person` tool (a cloud model calls it; the session's
  `function_tools_executed` event carries its `reason`), and
- the FAQ answerer speaking the account's handoff phrase (it has no tools: the phrase *is* its
  handoff), noticed the moment the agent starts saying it (`agent_state_changed` to speaking,
  with the reply's text from the Assistant), and otherwise when the line has been said
  (`conversation_item_added`).
The request is published at once, so the desk sees it while the phrase plays (it used to
appear ~4.7 s after the question, once the phrase was over); what follows the outcome (the
agent stepping back, the no-take line) waits until the agent's line has been said, so the
caller never hears the no-take line before the promise it answers, nor loses its end.

What it does (`Handoff._run`):
1. publishes the request on the agent participant's attributes (LiveKit's own state, which the
   desk reads through the server API): `firstword.handoff` = requested, the reason, the question;
2. picks the first end whose `handles()` is true (`ends_for`: the desk for web callers; the SIP
   transfer joins that list for phone callers, after the warm transfer (warm.py) where the
   account asks for it), and waits for it at most FIRSTWORD_HANDOFF_TIMEOUT (plus the end's
   `overrun_s`: a warm transfer's briefing comes after the person answered);
3. TAKEN: says the handoff phrase if it was not said yet, steps the agent back (its audio input
   and output are switched off: the agent stays in the room, silent and deaf, so the call stays
   up with the caller and the person in it, and the desk still sees the call's state) and marks
   the call taken;
4. NOT_TAKEN / FAILED: marks it, and the caller hears the no-take line instead of silence, or,
   with voice messages on, is asked to leave a message after a tone (agent/call/voicemail.py).
Every handoff is appended to `<FIRSTWORD_HANDOFF_RECORDS>/<account>.jsonl` (the question, the
caller's number if any, the outcome, the transcript so far): the business's message book,
which the desk shows.

A staff member may also take a call nobody asked about (the desk's Take call on any call): the
agent notices the staff participant joining and steps back the same way.

The transcript so far is published too (`firstword.transcript`, the last lines as JSON) so that
the desk, which lists calls through the server API without joining their rooms, can show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from livekit import rtc

from ... import metrics
from ...accounts import Account
from ...accounts.books import AccountBook
from ...accounts.staff import StaffFile
from ...settings import Settings
from ...sip import phone
from .desk import DeskEnd
from .transfer import SipTransferEnd
from .types import CallerKind, HandoffEnd, HandoffOutcome, HandoffRequest, HandoffResult, is_staff

if TYPE_CHECKING:  # the web app imports this module for its names; it needs no agents runtime
    from livekit.agents import (
        AgentSession,
        AgentStateChangedEvent,
        ConversationItemAddedEvent,
        FunctionToolsExecutedEvent,
        SpeechHandle,
    )

logger = logging.getLogger("firstword.handoff")

# The agent participant's attributes: the state of the call as the desk reads it.
HANDOFF = "firstword.handoff"  # requested | taken | not_taken | failed
HANDOFF_REASON = "firstword.handoff_reason"
HANDOFF_QUESTION = "firstword.handoff_question"
HANDOFF_AT = "firstword.handoff_at"  # unix seconds of the request
TAKEN_BY = "firstword.taken_by"
CALL_ACCOUNT = "firstword.account"
CALL_CALLER = "firstword.caller"
CALL_CALLER_KIND = "firstword.caller_kind"
CALL_CALLER_NUMBER = "firstword.caller_number"
CALL_STARTED = "firstword.call_started"  # unix seconds
TRANSCRIPT = "firstword.transcript"  # JSON: [{"who": "caller"|"agent", "text": ...}, ...]

# The reason recorded when the FAQ answerer found no stored answer (it has no tool to give one).
NO_ANSWER_REASON = "no stored answer matched the question"
TOOL_NAME = "hand_off_to_person"

# Transcript lines kept on the attributes: the desk shows the call's recent turns, and
# attributes travel with every participant update, so they stay small.
TRANSCRIPT_LINES = 12
TRANSCRIPT_CHARS = 3000
# An end that overruns its own wait is cut off this much later (it should never happen:
# `connect` waits at most `wait_s`; this keeps a broken end from holding the caller).
END_GRACE_S = 5.0
# Time limits on the call's own steps (every wait has a timeout).
PUBLISH_TIMEOUT_S = 5.0
# The longest wait for the agent's handoff line to be said before the outcome is acted on
# (the phrases last ~3-5 s; a line cut short by the caller still ends the wait when its
# conversation item comes).
LINE_WAIT_S = 10.0
SAY_TIMEOUT_S = 30.0
# When the call ends while an end is connecting, that end's answer may already be on its
# way: a SIP transfer the person answered ends the caller's leg, and the bridge's "left the
# room" can reach the job before the API's "transferred" does. The call's close waits this
# long for the outcome before it cancels (and records "the caller left first").
CLOSE_GRACE_S = 3.0


async def played_out(handle: SpeechHandle, what: str, timeout_s: float = SAY_TIMEOUT_S) -> None:
    """Until a line the call says (the handoff's, a voice message's, a warm transfer's) has
    played out, at most `timeout_s`: a stuck one is logged and the call goes on."""
    try:
        await asyncio.wait_for(handle.wait_for_playout(), timeout_s)
    except TimeoutError:
        logger.warning("%s did not finish playing in %.0f s", what, timeout_s)


def nobody_free(account: Account) -> str:
    """How every line after a handoff nobody took begins (here, and the voice message's)."""
    return f"I'm sorry, nobody from {account.business_name} is free to take your call right now."


def no_take_line(account: Account, request: HandoffRequest) -> str:
    """What the caller hears when nobody could take the call: never silence."""
    back = "call you back" if request.caller_number else "get back to you"
    return (
        f"{nobody_free(account)} I've noted your question, and someone will {back} as soon as "
        "they can."
    )


class MessageTaker(Protocol):
    """Takes the caller's message after a handoff nobody took (agent/call/voicemail.py)."""

    async def take(self, request: HandoffRequest) -> None: ...


class CallSide(Protocol):
    """What the mechanism does to the call (LiveKit's in `_LiveKitCall`; a fake in the tests)."""

    async def publish(self, attributes: dict[str, str]) -> None: ...

    async def say(self, text: str) -> None: ...

    async def step_back(self) -> None: ...


@dataclass(frozen=True)
class CallInfo:
    account: Account
    room: str
    caller_identity: str
    caller_kind: CallerKind
    caller_number: str | None


class HandoffRecords(AccountBook):
    """The business's record of handoffs (its message book, which the desk shows): one JSON
    line per handoff, one file per account (agent/accounts/books.py)."""

    def append(self, record: dict[str, Any]) -> None:
        """Blocking (a small append): call it off the event loop."""
        self.write(str(record["account_id"]), record)


class Handoff:
    """One call's handoff: at most one in progress; a call once taken stays taken."""

    def __init__(
        self,
        call: CallInfo,
        side: CallSide,
        ends: Sequence[HandoffEnd],
        *,
        wait_s: float,
        records: HandoffRecords | None,
        on_taken: Callable[[], None] | None = None,
        on_state: Callable[[str, str | None], None] | None = None,
        messages: MessageTaker | None = None,
    ) -> None:
        self.call = call
        self._messages = messages
        self._side = side
        self._ends = list(ends)
        self._wait_s = wait_s
        self._records = records
        self._on_taken = on_taken
        self._task: asyncio.Task[None] | None = None
        # Set while an end's `connect` is under way, and set once its outcome is recorded.
        self._outcome: asyncio.Event | None = None
        self._on_state = on_state
        self._state = ""
        # Who took the call (staff identity, or the number that answered), once taken.
        self.taken_by: str | None = None
        self.phrase_said = False
        self.results: list[tuple[str, HandoffResult]] = []
        self.transcript: list[dict[str, str]] = []
        # The transcript as published on the attributes (the last lines, bounded in size).
        self.published_transcript = "[]"
        self._question = ""
        # Set when the agent's line that announced the handoff under way has been said.
        self._line_said = asyncio.Event()
        self._line_said.set()
        self.closers: list[Callable[[], Awaitable[None]]] = []

    @property
    def state(self) -> str:
        """The value of `firstword.handoff`; "" before any handoff."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        if self._on_state is not None:
            self._on_state(value, self.taken_by)

    # What the session tells us -----------------------------------------------------------

    def caller_said(self, text: str) -> None:
        self._question = text
        self._add_line("caller", text)

    def tool_called(self, reason: str) -> None:
        """The model called `hand_off_to_person`: the handoff starts now; its outcome is acted
        on once the agent's line (the phrase the tool says) has been said."""
        self.request(reason or "the caller asked for a person", line_pending=True)

    def reply_started(self, text: str) -> None:
        """The agent started speaking a reply whose text is `text`: the handoff phrase starts
        the handoff now, while it plays."""
        if _said(self.call.account.handoff_phrase, text):
            self.request(NO_ANSWER_REASON, line_pending=True)

    def agent_said(self, text: str) -> None:
        self._add_line("agent", text)
        phrase = _said(self.call.account.handoff_phrase, text)
        self.phrase_said = self.phrase_said or phrase
        if not self._line_said.is_set():
            self._line_said.set()  # the line of the handoff under way is over
        elif phrase:
            self.request(NO_ANSWER_REASON)

    def staff_joined(self, identity: str) -> None:
        """A staff member joined. While a handoff waits, its end takes it from here; otherwise
        (Take call on a call nobody asked about, or after a no-take) the agent steps back now."""
        if self.busy or self.state == HandoffOutcome.TAKEN:
            return
        self._task = asyncio.create_task(self._taken_directly(identity), name="firstword-handoff")

    # The mechanism ----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def request(self, reason: str, *, line_pending: bool = False) -> bool:
        """Start a handoff; False when one is already under way or the call is taken.

        `line_pending`: the agent is saying (or about to say) its handoff line; the outcome
        waits for it (at most LINE_WAIT_S)."""
        if self.busy or self.state == HandoffOutcome.TAKEN:
            return False
        if line_pending:
            self._line_said.clear()
        request = HandoffRequest(
            account_id=self.call.account.id,
            room=self.call.room,
            caller_identity=self.call.caller_identity,
            caller_kind=self.call.caller_kind,
            caller_number=self.call.caller_number,
            reason=reason,
            question=self._question,
            requested_at=time.time(),
        )
        self._task = asyncio.create_task(self._run(request), name="firstword-handoff")
        return True

    async def wait(self) -> None:
        """Until the handoff under way (if any) has finished."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def aclose(self) -> None:
        """Cancel what is under way (the call is over); the job's shutdown calls this."""
        if self._outcome is not None and not self._outcome.is_set():
            # The outcome may be on its way (CLOSE_GRACE_S); what follows it (a line to a
            # caller who is gone) is cut short below.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outcome.wait(), CLOSE_GRACE_S)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for closer in self.closers:
            await closer()

    async def _run(self, request: HandoffRequest) -> None:
        self.state = "requested"
        logger.info(
            "handoff requested",
            extra={"account": request.account_id, "room": request.room, "reason": request.reason},
        )
        await self._publish(
            {
                HANDOFF: "requested",
                HANDOFF_REASON: request.reason,
                HANDOFF_QUESTION: request.question,
                HANDOFF_AT: f"{request.requested_at:.3f}",
                TAKEN_BY: "",
            }
        )
        end = next((e for e in self._ends if _handles(e, request)), None)
        end_name = end.name if end is not None else "none"
        if end is None:
            result = HandoffResult(HandoffOutcome.NOT_TAKEN, detail="no end can reach this caller")
        else:
            self._outcome = asyncio.Event()
            try:
                if end.moves_the_caller:  # the caller hears the whole line before leaving
                    await self._line_over()
                result = await _connect(end, request, self._wait_s)
            except asyncio.CancelledError:
                # The caller hung up while waiting: the business still gets the message.
                left = HandoffResult(HandoffOutcome.NOT_TAKEN, detail="the caller left first")
                metrics.HANDOFFS.labels(end_name, left.outcome.value).inc()
                await self._record(request, end_name, left)
                raise
        metrics.HANDOFFS.labels(end_name, result.outcome.value).inc()
        self.results.append((end_name, result))
        self.taken_by = result.taken_by
        self.state = result.outcome.value
        logger.info(
            "handoff %s",
            result.outcome.value,
            extra={
                "account": request.account_id,
                "room": request.room,
                "end": end_name,
                "taken_by": result.taken_by,
                "detail": result.detail,
            },
        )
        # Recorded first: the business keeps it even when the room is already gone.
        await self._record(request, end_name, result)
        if self._outcome is not None:
            self._outcome.set()
        await self._line_over()  # the caller hears the agent's line to its end before the rest
        await self._publish({HANDOFF: result.outcome.value, TAKEN_BY: result.taken_by or ""})
        if result.outcome == HandoffOutcome.TAKEN:
            if not self.phrase_said:
                await self._side.say(self.call.account.handoff_phrase)
                self.phrase_said = True
            await self._step_back()
        elif self._messages is not None:
            await self._messages.take(request)
        else:
            await self._side.say(no_take_line(self.call.account, request))

    async def _line_over(self) -> None:
        """Until the agent's handoff line has been said (at most LINE_WAIT_S)."""
        if self._line_said.is_set():
            return
        try:
            await asyncio.wait_for(self._line_said.wait(), LINE_WAIT_S)
        except TimeoutError:
            logger.warning("the handoff line was not said within %.0f s", LINE_WAIT_S)
        self._line_said.set()

    async def _taken_directly(self, identity: str) -> None:
        self.taken_by = identity
        self.state = HandoffOutcome.TAKEN.value
        metrics.HANDOFFS.labels("desk", "taken").inc()
        logger.info("call taken by %s without a handoff request", identity)
        await self._publish({HANDOFF: "taken", TAKEN_BY: identity})
        await self._step_back()

    async def _step_back(self) -> None:
        await self._side.step_back()
        logger.info("agent stepped back", extra={"room": self.call.room})
        if self._on_taken is not None:
            self._on_taken()

    async def _publish(self, attributes: dict[str, str]) -> None:
        try:
            await asyncio.wait_for(self._side.publish(attributes), PUBLISH_TIMEOUT_S)
        except Exception as error:  # the call goes on; the desk just sees it later
            logger.warning("could not publish the handoff state: %r", error)

    async def _record(self, request: HandoffRequest, end: str, result: HandoffResult) -> None:
        if self._records is None:
            return
        record = {
            **asdict(request),
            "end": end,
            "outcome": result.outcome.value,
            "taken_by": result.taken_by,
            "detail": result.detail,
            "recorded_at": time.time(),
            "transcript": list(self.transcript),
        }
        try:
            await asyncio.to_thread(self._records.append, record)
        except Exception:  # the caller still hears their line; the log has the record
            logger.exception(
                "could not keep the handoff record in %s", self._records.directory, extra=record
            )

    def _add_line(self, who: str, text: str) -> None:
        self.transcript.append({"who": who, "text": text})
        del self.transcript[:-TRANSCRIPT_LINES]
        lines = list(self.transcript)
        encoded = json.dumps(lines, ensure_ascii=False)
        while len(encoded) > TRANSCRIPT_CHARS and len(lines) > 1:
            lines.pop(0)
            encoded = json.dumps(lines, ensure_ascii=False)
        self.published_transcript = encoded


def _said(phrase: str, text: str) -> bool:
    def norm(s: str) -> str:
        return " ".join(s.lower().split())

    return norm(phrase) in norm(text)


def _handles(end: HandoffEnd, request: HandoffRequest) -> bool:
    try:
        return end.handles(request)
    except Exception:
        logger.exception("handoff end %s failed in handles()", end.name)
        return False


async def _connect(end: HandoffEnd, request: HandoffRequest, wait_s: float) -> HandoffResult:
    """The end's result; a timeout or an exception (the protocol says it never raises) too."""
    try:
        limit = wait_s + end.overrun_s + END_GRACE_S
        return await asyncio.wait_for(end.connect(request, wait_s), limit)
    except TimeoutError:
        return HandoffResult(HandoffOutcome.NOT_TAKEN, detail=f"timed out after {wait_s:.0f} s")
    except Exception as error:
        logger.exception("handoff end %s raised", end.name)
        return HandoffResult(HandoffOutcome.FAILED, detail=repr(error))


# --- LiveKit binding -------------------------------------------------------------------------


def ends_for(
    room: rtc.Room, account: Account, settings: Settings, first: Sequence[HandoffEnd] = ()
) -> list[HandoffEnd]:
    """The ends a call can be handed to, in order of preference: the first that `handles()`
    the request is used. `first` (a phone call's warm transfer, warm.py), then the SIP
    transfer (agent/call/handoff/transfer.py: phone callers, to the account's handoff number);
    the desk takes web and app callers."""
    ends: list[HandoffEnd] = [*first, SipTransferEnd(settings, lambda _id: account.handoff_number)]
    # The desk end asks the staff file (in a thread, when a handoff starts) whether anyone can
    # see this account: a login added while the worker runs counts from the next handoff.
    ends.append(DeskEnd(room, StaffFile(settings.staff_file)))
    return ends


def records_for(account: Account, settings: Settings) -> HandoffRecords | None:
    """Where a call's handoff is recorded; None for an account that keeps nothing of its
    calls (`recording: false`)."""
    return HandoffRecords(settings.handoff_records) if account.recording else None


@runtime_checkable
class StepsBack(Protocol):
    """An agent that stops answering once told (`Assistant.stepped_back`)."""

    stepped_back: bool


class _LiveKitCall:
    """The call side on a real session: attributes on the agent participant, `say`, step back."""

    def __init__(self, session: AgentSession[Any], room: rtc.Room) -> None:
        self._session = session
        self._room = room

    async def publish(self, attributes: dict[str, str]) -> None:
        await self._room.local_participant.set_attributes(attributes)

    async def say(self, text: str) -> None:
        await played_out(self._session.say(text), "the handoff line")

    async def step_back(self) -> None:
        # Stop what it is saying, stop listening and stop speaking: the session and its track
        # stay, so the call (caller + person) goes on, and ends as before when the caller leaves.
        # A turn the caller finished just before (its transcript still on the way) is dropped
        # by the agent (`StopResponse`), and nothing more is shown on the caller's page.
        agent = self._session.current_agent
        if isinstance(agent, StepsBack):
            agent.stepped_back = True
        self._session.interrupt()
        self._session.input.set_audio_enabled(False)
        self._session.output.set_audio_enabled(False)
        self._session.output.set_transcription_enabled(False)
        with contextlib.suppress(RuntimeError):  # the session is closing
            self._session.clear_user_turn()


def attach(
    session: AgentSession[Any],
    room: rtc.Room,
    account: Account,
    caller: rtc.RemoteParticipant,
    settings: Settings,
    *,
    on_taken: Callable[[], None] | None = None,
    on_state: Callable[[str, str | None], None] | None = None,
    messages: MessageTaker | None = None,
    first_ends: Sequence[HandoffEnd] = (),
    closers: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Handoff:
    """Wire the mechanism to a started session (after the first frame: not on its path).
    `first_ends` go before the usual ends (`ends_for`); `closers` run at the call's end."""
    kind: CallerKind = "sip" if phone.is_sip_caller(caller) else "web"
    call = CallInfo(
        account=account,
        room=room.name,
        caller_identity=caller.identity,
        caller_kind=kind,
        caller_number=phone.caller_number(caller),
    )
    side = _LiveKitCall(session, room)
    handoff = Handoff(
        call,
        side,
        ends_for(room, account, settings, first_ends),
        wait_s=settings.handoff_timeout,
        records=records_for(account, settings),
        on_taken=on_taken,
        on_state=on_state,
        messages=messages,
    )
    publisher = _Publisher(side)
    publisher.update(
        {
            CALL_ACCOUNT: account.id,
            CALL_CALLER: caller.identity,
            CALL_CALLER_KIND: kind,
            CALL_CALLER_NUMBER: call.caller_number or "",
            CALL_STARTED: f"{time.time():.3f}",
        }
    )

    @session.on("conversation_item_added")
    def _on_item(event: ConversationItemAddedEvent) -> None:
        text = getattr(event.item, "text_content", None)
        role = getattr(event.item, "role", None)
        if not text:
            return
        if role == "user":
            handoff.caller_said(text)
        elif role == "assistant":
            handoff.agent_said(text)
        else:
            return
        publisher.update({TRANSCRIPT: handoff.published_transcript})

    @session.on("agent_state_changed")
    def _on_state(event: AgentStateChangedEvent) -> None:
        if event.new_state == "speaking":
            handoff.reply_started(str(getattr(session.current_agent, "reply_text", "")))

    @session.on("function_tools_executed")
    def _on_tools(event: FunctionToolsExecutedEvent) -> None:
        for call_ in event.function_calls:
            if call_.name == TOOL_NAME:
                try:
                    reason = str(json.loads(call_.arguments or "{}").get("reason", ""))
                except ValueError:
                    reason = ""
                handoff.tool_called(reason)

    def _on_joined(participant: rtc.RemoteParticipant) -> None:
        if is_staff(participant.identity):
            handoff.staff_joined(participant.identity)

    room.on("participant_connected", _on_joined)
    for participant in list(room.remote_participants.values()):
        _on_joined(participant)

    @session.on("close")
    def _on_close(_event: object) -> None:
        room.off("participant_connected", _on_joined)

    handoff.closers.append(publisher.aclose)
    handoff.closers.extend(closers)
    return handoff


class _Publisher:
    """Coalesces attribute updates into one `set_attributes` at a time, latest values winning:
    a transcript line per turn must not queue a request per line behind a slow server."""

    def __init__(self, side: CallSide) -> None:
        self._side = side
        self._pending: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="firstword-handoff-publisher")

    def update(self, attributes: dict[str, str]) -> None:
        self._pending.update(attributes)
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            attributes, self._pending = self._pending, {}
            try:
                await asyncio.wait_for(self._side.publish(attributes), PUBLISH_TIMEOUT_S)
            except Exception as error:
                logger.warning("could not publish the call's attributes: %r", error)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
