"""One phone call over SIP: dial the business's number through LiveKit's SIP bridge, listen, ask.

The SIP counterpart of `simulator.run_call`, with the same report, so the benchmark prints
phone and WebRTC calls side by side. Times are on `time.perf_counter()` (CLOCK_MONOTONIC),
measured from the moment the INVITE leaves:

- `answered_s`: INVITE → 200 OK (the bridge answers once the agent publishes its audio track,
  so this is the caller's ring time);
- `ttfw_s`: INVITE → the first audible G.711 packet of the greeting (WebRTC callers measure
  from their `connect()`; a phone caller's clock starts when they dial);
- each turn's `latency_s`: the last packet of the caller's question sent → the first audible
  packet of the answer, exactly as the WebRTC caller measures it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from caller.recorder import save_wav
from caller.simulator import CallReport, Question, Transcribe, Turn
from caller.sip_ua import PHONE_RATE, SipPhone

logger = logging.getLogger("firstword.caller.sip")

DEFAULT_BRIDGE = "127.0.0.1:5060"


def bridge_address(value: str | None = None) -> tuple[str, int]:
    """`host:port` of the SIP bridge: the argument, FIRSTWORD_SIP_ADDRESS, or 127.0.0.1:5060."""
    text = value or os.environ.get("FIRSTWORD_SIP_ADDRESS") or DEFAULT_BRIDGE
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"FIRSTWORD_SIP_ADDRESS / --sip-address: expected host:port, got {text!r}")
    return host, int(port)


@dataclass
class SipCallOptions:
    number: str  # the dialled number (the business's trunk number)
    bridge: tuple[str, int] = ("127.0.0.1", 5060)
    caller_number: str = "+15035550123"
    greeting_timeout_s: float = 20.0
    answer_timeout_s: float = 20.0
    end_silence_s: float = 1.2
    hang_up_mid_answer: bool = False
    # Leave this many seconds after the INVITE (before the first word when small).
    hang_up_after_s: float | None = None
    # After the questions: stay on the line this long (a transfer in progress), listening.
    linger_s: float = 0.0
    record_dir: Path | None = None


@dataclass
class SipCallReport(CallReport):
    answered_s: float | None = None  # INVITE → 200 OK
    sip_status: int = 0  # the INVITE's final status
    transferred_to: str | None = None  # the Refer-To the bridge sent, if any
    transfer_status: int = 0  # the transfer target's final answer
    ended_by: str = ""  # "caller" or what the far end did ("far end hung up", "transferred")


async def run_sip_call(
    questions: list[Question],
    transcribe: Transcribe | None,
    options: SipCallOptions,
    *,
    phone: SipPhone | None = None,
) -> SipCallReport:
    """Dial `options.number`; without `transcribe` only time the first word, then hang up.

    Pass a started `phone` to keep using it afterwards (a transfer test speaks to the person
    the call was transferred to); it is closed here only when this function made it.
    """
    own = phone is None
    if phone is None:
        phone = SipPhone(user=options.caller_number)
        await phone.start()
    host = options.bridge[0]
    target = f"sip:{options.number}@{host}:{options.bridge[1]}"
    report = SipCallReport(room="", connect_s=0.0, ttfw_s=None, greeting="")
    recorder = phone.recorder
    try:
        dialled = await phone.dial(target, options.bridge, within_s=options.greeting_timeout_s)
        report.sip_status = dialled.status
        report.joined_at = dialled.invite_at
        if dialled.answered_at is None:
            logger.error(
                "call to %s refused: %s %s", options.number, dialled.status, dialled.reason
            )
            return report
        report.answered_s = report.connect_s = dialled.answered_at - dialled.invite_at
        invite_at = dialled.invite_at
        if options.hang_up_after_s is not None:
            start = await recorder.wait_speech_start(invite_at, options.hang_up_after_s)
            report.ttfw_s = None if start is None else start[1] - invite_at
            await asyncio.sleep(max(0.0, invite_at + options.hang_up_after_s - _now()))
            return report
        start = await recorder.wait_speech_start(invite_at, options.greeting_timeout_s)
        if start is None:
            logger.error("no greeting within %.0f s", options.greeting_timeout_s)
            return report
        first, first_at = start
        report.ttfw_s = first_at - invite_at
        if transcribe is None:
            return report
        end = await recorder.wait_speech_end(first, options.end_silence_s, 30.0)
        report.greeting = await asyncio.to_thread(
            transcribe, recorder.audio(first, end), PHONE_RATE
        )
        for question in questions:
            if phone.dialog is None or phone.dialog.ended.is_set():
                break
            ended = await phone.say(question.audio, question.sample_rate)
            start = await recorder.wait_speech_start(ended, options.answer_timeout_s)
            if start is None:
                report.turns.append(Turn(question.text, "", None, ended - invite_at, 0.0))
                continue
            first, first_at = start
            if options.hang_up_mid_answer:
                report.hung_up_mid_answer = True
                report.turns.append(Turn(question.text, "", first_at - ended, ended - invite_at, 0))
                break
            end = await recorder.wait_speech_end(first, options.end_silence_s, 60.0)
            audio = recorder.audio(first, end)
            answer = await asyncio.to_thread(transcribe, audio, PHONE_RATE)
            report.turns.append(
                Turn(
                    question.text,
                    answer,
                    first_at - ended,
                    ended - invite_at,
                    audio.size / PHONE_RATE,
                )
            )
        if options.linger_s > 0:
            await _linger(phone, options.linger_s)
        return report
    finally:
        if phone.transfers:
            report.transferred_to = phone.transfers[-1].refer_to
            report.transfer_status = phone.transfers[-1].status
        if phone.dialog is not None and phone.dialog.ended.is_set():
            report.ended_by = phone.dialog.end_reason
        if options.record_dir is not None and recorder.chunks:
            name = f"sip-{options.number.lstrip('+')}-{int(report.joined_at * 1000)}.wav"
            audio = recorder.audio(0, len(recorder.chunks))
            await asyncio.to_thread(save_wav, options.record_dir / name, audio, PHONE_RATE)
        if own:
            if not report.ended_by:
                report.ended_by = "caller"
            await phone.hang_up()
            await phone.aclose()


async def _linger(phone: SipPhone, seconds: float) -> None:
    """Stay on the line until a transfer settles or `seconds` pass."""
    deadline = _now() + seconds
    while _now() < deadline:
        transfers = phone.transfers
        if transfers and transfers[-1].finished_at is not None:
            return
        await asyncio.sleep(0.1)


def _now() -> float:
    return time.perf_counter()
