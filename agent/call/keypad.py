"""The phone's keys on a call: 0 for a person at any moment, other keys for the answers the
account gives them (`keypad` in its file, e.g. 1 = opening hours).

LiveKit's SIP bridge turns the caller's key presses (RFC 4733 telephone-events, or SIP INFO)
into `sip_dtmf_received` events on the room; only the caller's own presses count. A key cuts
the agent short if it is speaking, as a person pressing a key means it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from livekit import rtc

from .. import metrics
from ..accounts import Account

logger = logging.getLogger("firstword.keypad")

PERSON_KEY = "0"
PRESSED_ZERO = "the caller pressed 0 for a person"


class Handoffs(Protocol):
    def request(self, reason: str, *, line_pending: bool = False) -> bool: ...


class Speaker(Protocol):
    def interrupt(self, *, force: bool = False) -> Any: ...

    def say(self, text: str) -> Any: ...


class Keypad:
    """What a key press does on one call."""

    def __init__(self, account: Account, speaker: Speaker, handoffs: Handoffs) -> None:
        self._account = account
        self._speaker = speaker
        self._handoffs = handoffs
        self._answers = {faq.id: faq.answer for faq in account.faqs}

    def pressed(self, key: str) -> None:
        if key == PERSON_KEY:
            # The handoff starts now (the desk sees it at once); the caller hears the phrase,
            # and what follows waits for it. Nothing is said when one is already under way.
            if self._handoffs.request(PRESSED_ZERO, line_pending=True):
                self._say(self._account.handoff_phrase)
                metrics.KEYPAD_PRESSES.labels("person").inc()
            else:
                metrics.KEYPAD_PRESSES.labels("ignored").inc()
            logger.info("caller pressed 0", extra={"account": self._account.id})
            return
        faq_id = self._account.keypad.get(key)
        if faq_id is None:
            metrics.KEYPAD_PRESSES.labels("ignored").inc()
            logger.info("caller pressed %s: no answer on that key", key)
            return
        metrics.KEYPAD_PRESSES.labels("answer").inc()
        logger.info("caller pressed %s", key, extra={"faq": faq_id})
        self._say(self._answers[faq_id])

    def _say(self, text: str) -> None:
        # A key is meant: stop what is being said. The framework's future needs no waiting
        # (the line below queues after the interruption); its outcome is only logged.
        stopped = self._speaker.interrupt(force=True)
        if isinstance(stopped, asyncio.Future):
            stopped.add_done_callback(_log_failure)
        self._speaker.say(text)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("interrupting the agent for a key press failed: %r", future.exception())


def attach(room: rtc.Room, caller: rtc.RemoteParticipant, keypad: Keypad) -> None:
    """Hand the caller's key presses on `room` to `keypad` until the room closes."""

    def _on_key(event: rtc.SipDTMF) -> None:
        if event.participant is not None and event.participant.identity != caller.identity:
            return  # only the caller's keys (a person brought in could press too)
        keypad.pressed(event.digit)

    room.on("sip_dtmf_received", _on_key)
