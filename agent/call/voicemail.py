"""Voice messages: when nobody takes a handoff, the caller leaves a message after the tone.

After a handoff nobody took (agent/call/handoff/core.py: not taken, or the transfer failed),
the caller used to hear only "someone will get back to you", and what they said next was
answered by the agent, not kept. Now (FIRSTWORD_VOICE_MESSAGES, on by default) the agent says
`invitation()`, plays a tone, and records what the caller says from the caller's own audio
track, while the session hears nothing (its audio input is switched off, so nothing is
answered or handed off again), until:
- they stop speaking: FIRSTWORD_VOICE_MESSAGE_SILENCE_SECONDS after their last word (Silero's
  end of speech, on a VAD stream of its own over the recorded audio);
- they hang up: what was recorded is kept, the usual way to end a message on a phone;
- the message reaches FIRSTWORD_VOICE_MESSAGE_MAX_SECONDS;
- they say nothing for FIRSTWORD_VOICE_MESSAGE_START_SECONDS after the tone: no message.
The recording is transcribed (the worker's Whisper, in a thread) and read back ("Here is
what I understood: ..."), so a caller hears a wrong number before hanging up; a web caller
whose message holds no number or e-mail address (`has_contact`) is asked for one after a
second tone (`CONTACT_LIMITS`), kept as the message's `contact`. It is kept in the account's
message book (`MessageBook`: `<FIRSTWORD_VOICE_MESSAGES_DIR>/<account>.jsonl` and a WAV file per
message beside it), with who called (the number on a phone line), the question that led to
the handoff, how long it is and how it ended. The desk lists and plays them
(agent/web/desk.py). Then the agent thanks the caller and ends the call (the room is deleted,
which ends a SIP caller's leg too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents import vad as vad_api

from .. import metrics
from ..accounts import Account
from ..accounts.books import MESSAGE_RATE, MessageBook
from ..engines.audio import float_to_int16, tone
from ..engines.greetings import each, to_frames
from .handoff.core import nobody_free, played_out
from .handoff.types import HandoffRequest

logger = logging.getLogger("firstword.voicemail")

RATE = MESSAGE_RATE  # what is recorded and kept
TONE_HZ = 1000.0
TONE_S = 0.4
# Bounds on what follows the recording: a long message's transcription, the file writes.
TRANSCRIBE_TIMEOUT_S = 20.0
SAVE_TIMEOUT_S = 10.0
DELETE_TIMEOUT_S = 5.0


def invitation(account: Account, request: HandoffRequest) -> str:
    """What the caller hears when nobody could take the call and a message can be left.
    ("I've noted your question" as before: the question is in the handoff record already.)"""
    reach = "" if request.caller_number else ", with a number where we can reach you"
    return (
        f"{nobody_free(account)} I've noted your question. Please leave a message after the "
        f"tone{reach}, and someone will get back to you as soon as they can."
    )


def read_back(text: str) -> str:
    """What the agent says after a message: what it understood, so a caller can hear a wrong
    number before hanging up (said live: the words are the caller's)."""
    return f"Thank you. Here is what I understood: {text.strip()}"


ASK_CONTACT = (
    "What phone number or e-mail address can we reach you at? Please say it after the tone."
)
# A message that holds this many digits (or number words), or an e-mail address, says how to
# reach the caller already.
_CONTACT_DIGITS = 7
_NUMBER_WORDS = re.compile(
    r"\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple)\b", re.IGNORECASE
)
_EMAIL = re.compile(r"\S+@\S+\.\w+|\b\w+ at \w[\w ]* dot \w+", re.IGNORECASE)


def has_contact(text: str) -> bool:
    """Whether a message (as transcribed) gives a number or an e-mail address to reach them."""
    digits = sum(c.isdigit() for c in text) + len(_NUMBER_WORDS.findall(text))
    return digits >= _CONTACT_DIGITS or bool(_EMAIL.search(text))


def saved_line(account: Account) -> str:
    return f"Thank you, your message is saved for {account.business_name}. Goodbye."


def nothing_heard_line(account: Account) -> str:
    return f"I didn't hear a message. Thank you for calling {account.business_name}. Goodbye."


def lines(account: Account) -> list[str]:
    """The fixed lines of a voice message, pre-rendered with the answers (worker/server.py), so
    the invitation follows the handoff phrase without a synthesis gap."""
    web = HandoffRequest(account.id, "", "", "web", None, "", "", 0.0)
    phone = HandoffRequest(account.id, "", "", "sip", "+1", "", "", 0.0)
    return [
        invitation(account, web),
        invitation(account, phone),
        ASK_CONTACT,
        saved_line(account),
        nothing_heard_line(account),
    ]


@dataclass(frozen=True)
class MessageLimits:
    max_s: float
    silence_s: float
    start_s: float


class EndOfMessage:
    """When a message is over, from the caller's starts and ends of speech and the clock
    (seconds on any one clock). `over()` says why, or None while it goes on."""

    def __init__(self, limits: MessageLimits, started_at: float) -> None:
        self._limits = limits
        self._started_at = started_at
        self.spoke = False
        self._speaking = False
        self._last_end = started_at

    def speech_started(self, _at: float) -> None:
        self.spoke = True
        self._speaking = True

    def speech_ended(self, at: float) -> None:
        self._speaking = False
        self._last_end = at

    def over(self, now: float) -> str | None:
        if now - self._started_at >= self._limits.max_s:
            return "max length"
        if not self.spoke and now - self._started_at >= self._limits.start_s:
            return "no message"
        if self.spoke and not self._speaking and now - self._last_end >= self._limits.silence_s:
            return "silence"
        return None


def tone_frames(rate: int, *, seconds: float = TONE_S) -> list[rtc.AudioFrame]:
    """The tone after the invitation, 20 ms frames at the voice's rate, faded in and out."""
    beep = tone(rate, (TONE_HZ,), seconds, amplitude=0.3, fade_s=0.02)
    return list(to_frames(float_to_int16(beep), rate))


class Transcriber(Protocol):
    def transcribe_pcm(self, samples: np.ndarray, sample_rate: int, language: str) -> str: ...


# The contact a web caller is asked for after their message: a number read with pauses.
CONTACT_LIMITS = MessageLimits(max_s=30.0, silence_s=2.0, start_s=6.0)
# Between the message and the contact in the kept audio.
_GAP_S = 0.5


@dataclass
class _Recording:
    pcm: bytearray
    ended: str
    spoke: bool
    # Its transcript once made (None: not yet).
    text: str | None = None
    # A web caller's answer to ASK_CONTACT, when asked.
    contact: _Recording | None = None


class VoiceMail:
    """One call's voice message, taken when its handoff was not taken (`take`)."""

    def __init__(
        self,
        *,
        session: AgentSession[Any],
        caller: rtc.RemoteParticipant,
        account: Account,
        book: MessageBook,
        vad: vad_api.VAD,
        transcriber: Transcriber,
        limits: MessageLimits,
        voice_rate: int,
        end_call: Callable[[], Awaitable[None]],
        audio: Callable[[], AsyncIterator[rtc.AudioFrame]] | None = None,
    ) -> None:
        self._session = session
        self._caller = caller
        self._account = account
        self._book = book
        self._vad = vad
        self._transcriber = transcriber
        self._limits = limits
        self._voice_rate = voice_rate
        self._end_call = end_call
        self._audio = audio or self._caller_audio
        self._saved: asyncio.Task[dict[str, Any] | None] | None = None

    async def take(self, request: HandoffRequest) -> None:
        """Invite, record, keep, thank, end the call. Cancelled (the caller hung up and the
        job is closing): what was recorded is still kept."""
        await self._say(invitation(self._account, request))
        # From here the session hears nothing: what the caller says is the message.
        self._session.input.set_audio_enabled(False)
        recording = _Recording(bytearray(), "caller left", False)
        try:
            await self._say("(tone)", audio=each(tone_frames(self._voice_rate)))
            await self._record(recording, self._limits)
            if recording.spoke and recording.ended != "caller left":
                await self._read_back(request, recording)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(
                    asyncio.shield(self._keep(request, recording)),
                    TRANSCRIBE_TIMEOUT_S + SAVE_TIMEOUT_S,
                )
            raise
        entry = await self._keep(request, recording)
        contact = recording.contact
        if recording.ended == "caller left" or (contact and contact.ended == "caller left"):
            return
        await self._say(
            saved_line(self._account) if entry is not None else nothing_heard_line(self._account)
        )
        try:
            await asyncio.wait_for(self._end_call(), DELETE_TIMEOUT_S)
        except Exception:  # the caller can still hang up; the server reaps the room
            logger.warning("voice message: could not end the call", exc_info=True)

    async def _read_back(self, request: HandoffRequest, recording: _Recording) -> None:
        """Say what was understood; a web caller whose message gives no number or e-mail is
        asked for one (a phone caller's number is known)."""
        recording.text = await self._transcribe(recording.pcm)
        if recording.text:
            await self._say(read_back(recording.text))
        if request.caller_kind == "sip" or has_contact(recording.text):
            return
        await self._say(ASK_CONTACT)
        await self._say("(tone)", audio=each(tone_frames(self._voice_rate)))
        recording.contact = _Recording(bytearray(), "caller left", False)
        await self._record(recording.contact, CONTACT_LIMITS)

    async def _transcribe(self, pcm: bytearray) -> str:
        samples = np.frombuffer(bytes(pcm), dtype=np.int16).astype(np.float32) / 32768
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(
                    self._transcriber.transcribe_pcm, samples, RATE, self._account.language
                ),
                TRANSCRIBE_TIMEOUT_S,
            )
        except Exception:  # the audio is the message; its transcript only helps
            logger.warning("voice message: transcription failed", exc_info=True)
            return ""

    async def _say(self, text: str, **kwargs: Any) -> None:
        handle = self._session.say(text, allow_interruptions=False, add_to_chat_ctx=False, **kwargs)
        await played_out(handle, "a voice-message line")

    async def _caller_audio(self) -> AsyncIterator[rtc.AudioFrame]:
        stream = rtc.AudioStream.from_participant(
            participant=self._caller,
            track_source=rtc.TrackSource.SOURCE_MICROPHONE,
            sample_rate=RATE,
            num_channels=1,
        )
        try:
            async for event in stream:
                yield event.frame
        finally:
            await stream.aclose()

    async def _record(self, into: _Recording, limits: MessageLimits) -> None:
        """Until the message is over (`EndOfMessage`) or the caller's audio ends (they left)."""
        loop = asyncio.get_running_loop()
        end = EndOfMessage(limits, loop.time())
        vad_stream = self._vad.stream()

        async def hear() -> None:
            async for event in vad_stream:
                if event.type == vad_api.VADEventType.START_OF_SPEECH:
                    end.speech_started(loop.time())
                elif event.type == vad_api.VADEventType.END_OF_SPEECH:
                    end.speech_ended(loop.time())

        async def listen() -> None:
            async for frame in self._audio():
                into.pcm += bytes(frame.data)
                vad_stream.push_frame(frame)

        tasks = [
            asyncio.create_task(hear(), name="voicemail-vad"),
            asyncio.create_task(listen(), name="voicemail-audio"),
        ]
        try:
            while (why := end.over(loop.time())) is None:
                if tasks[1].done():  # the caller's audio ended: they left
                    why = "caller left"
                    break
                await asyncio.sleep(0.1)
            into.ended = why
        finally:
            into.spoke = end.spoke
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await vad_stream.aclose()

    def _keep(self, request: HandoffRequest, recording: _Recording) -> asyncio.Task[Any]:
        """The message kept once (a second call, from a cancellation, joins the first)."""
        if self._saved is None:
            self._saved = asyncio.create_task(self._save(request, recording), name="voicemail-save")
        return self._saved

    async def _save(self, request: HandoffRequest, recording: _Recording) -> dict[str, Any] | None:
        if not recording.spoke:
            metrics.VOICE_MESSAGES.labels("none").inc()
            logger.info("no voice message left", extra={"room": request.room})
            return None
        text = recording.text
        if text is None:
            text = await self._transcribe(recording.pcm)
        pcm = bytes(recording.pcm)
        contact = ""
        if recording.contact is not None and recording.contact.spoke:
            contact = await self._transcribe(recording.contact.pcm)
            # One audio file: the message, a short gap, the number or address.
            pcm += bytes(int(RATE * _GAP_S) * 2) + bytes(recording.contact.pcm)
        duration_s = len(pcm) / 2 / RATE
        recorded_at = time.time()
        entry = {
            # The audio's file name: the room's name (a SIP room's has a "+") made safe.
            "id": f"{re.sub(r'[^A-Za-z0-9_-]', '_', request.room)[:60]}-{int(recorded_at * 1000)}",
            "account_id": request.account_id,
            "room": request.room,
            "caller_identity": request.caller_identity,
            "caller_kind": request.caller_kind,
            "caller_number": request.caller_number,
            "question": request.question,
            "reason": request.reason,
            "text": text,
            # A web caller's answer to "what number or e-mail" ("" when not asked or silent).
            "contact": contact,
            "duration_s": round(duration_s, 2),
            "ended": recording.ended,
            "recorded_at": recorded_at,
        }
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._book.save, request.account_id, entry, pcm),
                SAVE_TIMEOUT_S,
            )
        except Exception:  # logged with what it said, so the message is not lost
            logger.exception("could not keep the voice message", extra=entry)
            metrics.VOICE_MESSAGES.labels("lost").inc()
            return None
        metrics.VOICE_MESSAGES.labels("kept").inc()
        logger.info(
            "voice message kept",
            extra={
                "room": request.room,
                "duration_s": entry["duration_s"],
                "ended": entry["ended"],
            },
        )
        return entry
