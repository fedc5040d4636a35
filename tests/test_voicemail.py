"""Voice messages (agent/call/voicemail.py): what ends a message, and a message taken end to end
on a spoken clip with the real Silero VAD and Whisper (the session is a fake that records what
the agent said and whether it still listens)."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from livekit import rtc
from livekit.plugins import silero

from agent import metrics
from agent.accounts import Account, AccountRegistry
from agent.accounts.books import MESSAGE_RATE, MessageBook
from agent.call import voicemail
from agent.call.handoff.types import HandoffRequest
from agent.engines.audio import resample
from agent.engines.greetings import to_frames
from agent.engines.local_tts import LocalTTS
from agent.engines.whisper_stt import WhisperSTT

pytestmark = pytest.mark.slow

LIMITS = voicemail.MessageLimits(max_s=20.0, silence_s=1.0, start_s=2.0)
MESSAGE = "Hi, this is Sam. Please call me back about my cleaning."


def test_a_message_ends_on_silence_after_speech_on_no_speech_or_at_its_length() -> None:
    end = voicemail.EndOfMessage(LIMITS, started_at=0.0)
    assert end.over(1.9) is None
    assert end.over(2.0) == "no message"
    end = voicemail.EndOfMessage(LIMITS, started_at=0.0)
    end.speech_started(1.5)
    assert end.over(5.0) is None  # still speaking: no silence limit
    end.speech_ended(6.0)
    assert end.over(6.9) is None
    assert end.over(7.0) == "silence"
    end.speech_started(6.5)  # speaking again before the silence was long enough
    assert end.over(7.5) is None
    assert end.over(20.0) == "max length"


def test_the_invitation_asks_a_web_caller_for_a_number_and_names_the_business(
    registry: AccountRegistry,
) -> None:
    account = registry.accounts["harbor-dental"]
    web = HandoffRequest(account.id, "call-x", "caller", "web", None, "", "", 0.0)
    phone = HandoffRequest(account.id, "call-x", "caller", "sip", "+15035550123", "", "", 0.0)
    assert "number where we can reach you" in voicemail.invitation(account, web)
    assert "number" not in voicemail.invitation(account, phone)
    for line in (voicemail.invitation(account, web), voicemail.saved_line(account)):
        assert account.business_name in line


class _Handle:
    async def wait_for_playout(self) -> None:
        await asyncio.sleep(0)


class _Input:
    def __init__(self) -> None:
        self.audio_enabled = True

    def set_audio_enabled(self, enabled: bool) -> None:
        self.audio_enabled = enabled


class _Session:
    def __init__(self) -> None:
        self.said: list[str] = []
        self.input = _Input()

    def say(self, text: str, *, audio: Any = None, **_kwargs: Any) -> _Handle:
        self.said.append(text)
        return _Handle()


def _frames(samples: np.ndarray) -> list[rtc.AudioFrame]:
    return list(to_frames((np.clip(samples, -1, 1) * 32767).astype(np.int16), MESSAGE_RATE))


def _caller(speech: list[rtc.AudioFrame], *, then_silence: bool) -> Callable[[], Any]:
    """The caller's track: the speech, then (unless they hang up) a quiet line, at 4x real time."""

    async def audio() -> AsyncIterator[rtc.AudioFrame]:
        quiet = _frames(np.random.default_rng(1).normal(0, 3e-4, MESSAGE_RATE // 50))[0]
        for frame in speech:
            yield frame
            await asyncio.sleep(0.005)
        while then_silence:
            yield quiet
            await asyncio.sleep(0.005)

    return audio


@pytest.fixture(scope="module")
def spoken(piper: LocalTTS) -> list[rtc.AudioFrame]:
    samples = resample(piper.render(MESSAGE), piper.sample_rate, MESSAGE_RATE)
    lead = np.zeros(MESSAGE_RATE // 2, dtype=np.float32)
    return _frames(np.concatenate([lead, samples]))


def _voicemail(
    account: Account,
    tmp_path: Path,
    whisper: WhisperSTT,
    audio: Callable[[], Any],
    ended: list[str],
) -> tuple[voicemail.VoiceMail, _Session, MessageBook]:
    session = _Session()
    book = MessageBook(tmp_path / "messages")

    async def end_call() -> None:
        ended.append("ended")

    mail = voicemail.VoiceMail(
        session=cast(Any, session),
        caller=cast(rtc.RemoteParticipant, None),
        account=account,
        book=book,
        vad=silero.VAD.load(),
        transcriber=whisper,
        limits=LIMITS,
        voice_rate=24000,
        end_call=end_call,
        audio=audio,
    )
    return mail, session, book


def _request(account: Account, kind: str = "sip") -> HandoffRequest:
    number = "+1555" if kind == "sip" else None
    return HandoffRequest(account.id, "call-_+1555_x", "sip_+1555", kind, number, "r", "q?", 0.0)  # type: ignore[arg-type]


def _kept(counter: str) -> float:
    return metrics.VOICE_MESSAGES.labels(counter)._value.get()


async def test_a_message_is_recorded_until_the_caller_stops_then_kept_and_the_call_ended(
    registry: AccountRegistry, tmp_path: Path, whisper: WhisperSTT, spoken: list[rtc.AudioFrame]
) -> None:
    account = registry.accounts["harbor-dental"]
    ended: list[str] = []
    mail, session, book = _voicemail(
        account, tmp_path, whisper, _caller(spoken, then_silence=True), ended
    )
    before = _kept("kept")
    await asyncio.wait_for(mail.take(_request(account)), 60)
    # The invitation, the tone, what was understood, the thanks; nothing the caller said
    # reached the session. A phone caller is not asked for a number (it is known).
    assert session.said[0] == voicemail.invitation(account, _request(account))
    assert session.said[1] == "(tone)" and session.said[3:] == [voicemail.saved_line(account)]
    assert session.said[2].startswith("Thank you. Here is what I understood:")
    assert "call me back" in session.said[2].lower(), session.said
    assert not session.input.audio_enabled and ended == ["ended"]
    (entry,) = book.latest(account.id)
    assert entry["ended"] == "silence" and entry["caller_number"] == "+1555"
    assert entry["question"] == "q?" and "call me back" in entry["text"].lower(), entry
    assert entry["contact"] == ""
    with wave.open(str(book.audio_path(account.id, entry["id"]))) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    # The message (~3.5 s with its lead-in) and the quiet after it, until the silence limit.
    assert seconds >= len(spoken) * 0.02 and abs(seconds - entry["duration_s"]) < 0.05
    assert _kept("kept") == before + 1


async def test_a_caller_who_hangs_up_still_leaves_the_message_and_hears_no_goodbye(
    registry: AccountRegistry, tmp_path: Path, whisper: WhisperSTT, spoken: list[rtc.AudioFrame]
) -> None:
    account = registry.accounts["harbor-dental"]
    ended: list[str] = []
    mail, session, book = _voicemail(
        account, tmp_path, whisper, _caller(spoken, then_silence=False), ended
    )
    await asyncio.wait_for(mail.take(_request(account)), 60)
    (entry,) = book.latest(account.id)
    assert entry["ended"] == "caller left" and "call me back" in entry["text"].lower()
    assert session.said[1:] == ["(tone)"] and ended == []


async def test_a_call_closed_mid_message_keeps_what_was_said(
    registry: AccountRegistry, tmp_path: Path, whisper: WhisperSTT, spoken: list[rtc.AudioFrame]
) -> None:
    account = registry.accounts["harbor-dental"]
    mail, _session, book = _voicemail(
        account, tmp_path, whisper, _caller(spoken, then_silence=True), []
    )
    task = asyncio.create_task(mail.take(_request(account)))
    await asyncio.sleep(len(spoken) * 0.005 + 0.5)  # the whole message has been heard
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (entry,) = book.latest(account.id)
    assert "call me back" in entry["text"].lower(), entry


async def test_a_caller_who_says_nothing_leaves_no_message(
    registry: AccountRegistry, tmp_path: Path, whisper: WhisperSTT
) -> None:
    account = registry.accounts["harbor-dental"]
    ended: list[str] = []
    mail, session, book = _voicemail(
        account, tmp_path, whisper, _caller([], then_silence=True), ended
    )
    before = _kept("none")
    await asyncio.wait_for(mail.take(_request(account)), 30)
    assert book.latest(account.id) == [] and _kept("none") == before + 1
    assert session.said[-1] == voicemail.nothing_heard_line(account) and ended == ["ended"]


def test_the_message_lines_are_pre_rendered_with_the_answers(registry: AccountRegistry) -> None:
    """So that the invitation follows the handoff phrase from memory, not after a synthesis."""
    from agent.engines.answers import prepare_answers

    prepared: list[str] = []

    class _Cache:
        def prepare(self, _voice: object, text: str) -> int:
            prepared.append(text)
            return 1

    prepare_answers(cast(Any, _Cache()), lambda _v: cast(Any, None), registry, voicemail.lines)
    account = registry.accounts["harbor-dental"]
    web = HandoffRequest(account.id, "", "", "web", None, "", "", 0.0)
    phone = HandoffRequest(account.id, "", "", "sip", "+15035550123", "", "", 0.0)
    for line in (
        voicemail.invitation(account, web),
        voicemail.invitation(account, phone),
        voicemail.saved_line(account),
        voicemail.nothing_heard_line(account),
    ):
        assert line in prepared, line


CONTACT = "You can reach me on five oh three, five five five, zero one two three."


@pytest.fixture(scope="module")
def contact_spoken(piper: LocalTTS) -> list[rtc.AudioFrame]:
    samples = resample(piper.render(CONTACT), piper.sample_rate, MESSAGE_RATE)
    return _frames(np.concatenate([np.zeros(MESSAGE_RATE // 2, dtype=np.float32), samples]))


def _clips(*callers: Callable[[], Any]) -> Callable[[], Any]:
    """The caller's track, opened once per recording: each opening hears the next clip."""
    queue = list(callers)

    def audio() -> Any:
        return queue.pop(0)()

    return audio


async def test_a_web_caller_with_no_number_in_the_message_is_asked_for_one(
    registry: AccountRegistry,
    tmp_path: Path,
    whisper: WhisperSTT,
    spoken: list[rtc.AudioFrame],
    contact_spoken: list[rtc.AudioFrame],
) -> None:
    account = registry.accounts["harbor-dental"]
    ended: list[str] = []
    audio = _clips(_caller(spoken, then_silence=True), _caller(contact_spoken, then_silence=True))
    mail, session, book = _voicemail(account, tmp_path, whisper, audio, ended)
    await asyncio.wait_for(mail.take(_request(account, "web")), 90)
    assert session.said[1] == "(tone)" and "call me back" in session.said[2].lower()
    assert session.said[3:] == [voicemail.ASK_CONTACT, "(tone)", voicemail.saved_line(account)]
    (entry,) = book.latest(account.id)
    assert voicemail.has_contact(entry["contact"]), entry
    assert "call me back" in entry["text"].lower() and entry["caller_number"] is None
    # One audio file holds both: the message, a gap, the number.
    with wave.open(str(book.audio_path(account.id, entry["id"]))) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds >= (len(spoken) + len(contact_spoken)) * 0.02 + 0.5
    assert ended == ["ended"]


async def test_a_web_caller_whose_message_has_a_number_is_not_asked_again(
    registry: AccountRegistry,
    tmp_path: Path,
    whisper: WhisperSTT,
    contact_spoken: list[rtc.AudioFrame],
) -> None:
    account = registry.accounts["harbor-dental"]
    mail, session, book = _voicemail(
        account, tmp_path, whisper, _caller(contact_spoken, then_silence=True), []
    )
    await asyncio.wait_for(mail.take(_request(account, "web")), 60)
    assert voicemail.ASK_CONTACT not in session.said
    assert session.said[-1] == voicemail.saved_line(account)
    (entry,) = book.latest(account.id)
    assert entry["contact"] == "" and voicemail.has_contact(entry["text"]), entry


@pytest.mark.parametrize(
    ("text", "contact"),
    [
        ("Call me back on 503-555-0123.", True),
        ("My number is five oh three five five five zero one two three.", True),
        ("It's 555 0199, thanks.", True),
        ("Email me at sam@example.com please.", True),
        ("You can write to sam at example dot com.", True),
        ("Please call me back about my cleaning.", False),
        ("I need two appointments on the 3rd of May.", False),
        ("", False),
    ],
)
def test_what_counts_as_a_way_to_reach_the_caller(text: str, contact: bool) -> None:
    assert voicemail.has_contact(text) is contact
