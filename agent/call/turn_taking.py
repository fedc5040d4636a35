"""Turn-taking of a call: when the caller's turn is over, and when they may cut in.

Built from the settings (tuned by measurement: see README "Turn-taking, and the answer
benchmark") for each call's `AgentSession`:

- the STT: the local Whisper gets speculative recognition (`engines/speculative_stt.py`,
  `FIRSTWORD_SPECULATIVE_STT`); cloud recognisers stream and are left as they are, their
  final transcripts read by `Assistant.stt_node` (`TurnTaking.before_final`) before the
  framework decides the turn on them;
- the framework's turn handling: the local turn detector, the endpointing delays after the
  VAD's end of speech, preemptive generation, interruptions by voice after
  `FIRSTWORD_MIN_INTERRUPTION` of caller speech;
- the words, next to the turn detector (which hears only the audio): `EarlyEndpointing` is
  the framework's own endpointing object with three rules. A transcript that reads unfinished
  ("So my question is", "Could you tell me what", "um") waits the long delay even when the
  detector says the caller is done, so a pause mid-question does not end the turn (told by
  the speculative recogniser, which has the words first). And early end of turn
  (`FIRSTWORD_EARLY_TURN_SCORE`): a transcript the FAQ answerer matches with a high score is
  a whole question, so it is not held for the long delay (`max_delay`, used when the
  detector is unsure); each final transcript is matched before the framework gets it
  (`before_final`), since the framework decides the turn ~15 ms after it arrives. With a
  cloud model the match only decides the turn; Gemini still answers. And a transcript that
  reads as a whole question (Whisper's question mark, `FIRSTWORD_QUESTION_ENDS_TURN`) ends
  the turn early too, matched or not: an off-topic question waited the long delay before.
  The framework builds its endpointing from options only, so ours is put in place after
  the session starts (`compat.install_endpointing`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentSession, stt
from livekit.agents.voice.endpointing import BaseEndpointing

from ..compat import install_endpointing
from ..engines.faq_llm import FaqLLM, Match
from ..engines.pools import CallEngines
from ..engines.speculative_stt import SpeculativeSTT
from ..settings import Settings

logger = logging.getLogger("firstword.turns")

# Words a question does not end on: a transcript that ends on one was cut by a pause
# ("So my question is", "Could you tell me what", "um"). Only words that cannot close an
# English question; "me", "do", "in", "that" can ("Can you call me?") and are not here.
_TRAILING = frozenset(
    "to if the a an my your our their and or but of for with about um uh er hmm what how when"
    " where which whether because i i'd i'm so".split()
)


def _words(text: str) -> list[str]:
    # Numbers are words too: "Do you rent city bikes for $25?" ends on "25", not "for".
    return re.findall(r"[a-z0-9']+", text.lower())


# Last words after which even a question mark does not close the question: the caller goes
# on ("Could you tell me? ... what time you open"). Said alone they are rarely the question.
_ASKS_FOR_MORE = frozenset(
    ("tell me", "tell us", "show me", "explain", "know", "ask", "ask you", "wonder", "wondering")
)


def reads_as_question(text: str) -> bool:
    """Whether a transcript is a whole question: Whisper closed it with a question mark
    (it hears the intonation and the syntax), it does not read unfinished, it has at least
    three words, and its last words do not ask for more."""
    text = text.strip()
    if not text.endswith("?") or looks_unfinished(text):
        return False
    words = _words(text)
    if len(words) < 3:
        return False
    return words[-1] not in _ASKS_FOR_MORE and " ".join(words[-2:]) not in _ASKS_FOR_MORE


# Endings that announce the question rather than ask it. Whisper often drops the last word
# before a pause ("So my question is" -> "So my question."), so the phrase is matched, not
# only its last word (the bench's paused question "So my question is ... where your office
# is" was answered in the pause in every configuration before this).
_ANNOUNCING = tuple(
    tuple(p.split())
    for p in ("my question", "question is", "the thing is", "was wondering", "wanted to ask")
)


# Prepositions an English question may end on ("Is that something you deal with?", "Who
# should I talk to?", "What is this charge for?"): closed by Whisper's question mark, such a
# question is whole. Without the mark they still read unfinished ("I'm calling about").
_STRANDED = frozenset(("to", "of", "for", "with", "about"))
# ... unless what comes before asks for more: "Could you tell me about?" goes on.
_INTRODUCES = frozenset(
    ("tell me", "tell us", "ask", "ask you", "asking", "calling", "wondering", "thinking")
)


def _stranded_question(text: str, words: list[str]) -> bool:
    """A whole question ending on a preposition: "?", four words or more, not announcing."""
    if not text.endswith("?") or words[-1] not in _STRANDED or len(words) < 4:
        return False
    return words[-2] not in _INTRODUCES and " ".join(words[-3:-1]) not in _INTRODUCES


def looks_unfinished(text: str) -> bool:
    """Whether a transcript reads as the first part of a sentence (Whisper's "...", a last
    word no question ends on, or words that announce a question still to come)."""
    text = text.strip()
    if not text:
        return False
    if text.endswith(("...", "…")):
        return True
    words = _words(text)
    if not words:
        return False
    if words[-1] in _TRAILING:
        return not _stranded_question(text, words)
    return any(tuple(words[-len(p) :]) == p for p in _ANNOUNCING)


class EarlyEndpointing(BaseEndpointing):
    """The framework's fixed endpointing, read through what the caller said.

    - a transcript that reads unfinished (`looks_unfinished`) waits `unfinished_delay` (at
      least the long delay) even when the turn detector is sure the caller finished (told
      by `SpeculativeSTT`); speech whose transcript is still being made (`on_recognising`)
      waits the long delay;
    - a transcript the FAQ answerer matches at `early_score` or above needs only the short
      delay even when the detector is unsure (told by `FaqLLM`);
    - so does a transcript that reads as a whole question (`reads_as_question`) when
      `question_ends_turn`: an off-topic question is handed off as soon as a matched one is
      answered.
    All are forgotten when the caller speaks again.
    """

    def __init__(
        self,
        min_delay: float,
        max_delay: float,
        *,
        early_score: float,
        question_ends_turn: bool = False,
        unfinished_delay: float | None = None,
    ) -> None:
        super().__init__(min_delay=min_delay, max_delay=max_delay)
        self.unfinished_delay = max(max_delay, unfinished_delay or 0.0)
        self.early_score = early_score
        self.question_ends_turn = question_ends_turn
        self._confident: str | None = None  # the transcript that matched, until speech resumes
        self._unfinished: str | None = None
        self._question: str | None = None  # a transcript that reads as a whole question
        self._recognising = False  # speech not transcribed yet (told by SpeculativeSTT)

    def on_transcript(self, text: str) -> None:
        """Told each transcript of the recogniser (preflight or final) before it is sent."""
        self._unfinished = text if looks_unfinished(text) else None
        if self._unfinished is not None:
            logger.debug("transcript reads unfinished: the long wait", extra={"text": text})
        whole = self.question_ends_turn and reads_as_question(text)
        self._question = text if whole else None

    def on_recognising(self, busy: bool) -> None:
        """Told by the recogniser when speech starts that has no transcript yet (True) and
        when its transcript comes or it had no words (False). Meanwhile the turn waits the
        long delay: the framework decides on the transcript it has, and that was an earlier
        part's ("So my question is...", before a pause) while the rest was still being
        recognised (measured: the paused-question set's one cut-off, in every mode). When
        the transcript comes, the framework decides again, with the short delay."""
        self._recognising = busy

    @property
    def min_delay(self) -> float:
        if self._unfinished is not None:
            return self.unfinished_delay
        return self._max_delay if self._recognising else self._min_delay

    def on_match(self, question: str, match: Match | None) -> None:
        """Told by the FAQ answerer after each match (on the event loop)."""
        if match is not None and match.faq is not None and match.score >= self.early_score:
            self._confident = question
        else:
            self._confident = None

    @property
    def max_delay(self) -> float:
        early = self._confident if self._confident is not None else self._question
        if early is not None and self._unfinished is None and not self._recognising:
            logger.debug(
                "a whole question or a confident match: no long wait", extra={"question": early}
            )
            return self._min_delay
        return self.unfinished_delay if self._unfinished is not None else self._max_delay

    def on_start_of_speech(self, started_at: float, overlapping: bool = False) -> None:
        # The caller goes on: what matched was not the whole turn.
        self._confident = None
        self._unfinished = None
        self._question = None
        super().on_start_of_speech(started_at, overlapping)


@dataclass
class TurnTaking:
    """What one call's session is built with, and what is put in place once it runs."""

    stt: stt.STT
    turn_handling: dict[str, Any]
    endpointing: EarlyEndpointing | None
    # For a recogniser with no hook of its own (cloud STT, or speculation off): awaited by
    # `Assistant.stt_node` with each final transcript before the framework sees it.
    before_final: Callable[[str], Awaitable[None]] | None = None

    def install(self, session: AgentSession[Any]) -> None:
        """After `session.start`: the early-turn endpointing in place of the fixed one."""
        if self.endpointing is not None and not install_endpointing(session, self.endpointing):
            logger.warning("early end of turn is off for this call: no audio recognition yet")


def _match_before_final(
    faq: FaqLLM, endpointing: EarlyEndpointing
) -> Callable[[str], Awaitable[None]]:
    """The FAQ match of each final transcript, told to the endpointing before it is sent.

    The framework decides the turn (and reads `max_delay`) ~15 ms after a final transcript
    arrives; the match made by preemptive generation comes ~50 ms after it, too late for
    that decision, so the early end of turn never applied (measured: every question the
    detector was unsure of waited the full 1.5 s). Matched here first, it does; the answer
    then reuses the match (`FaqLLM.match` keeps the last few).
    """

    async def before_final(text: str) -> None:
        endpointing.on_match(text, await asyncio.to_thread(faq.match, text))

    return before_final


def _read_before_final(
    faq: FaqLLM, endpointing: EarlyEndpointing
) -> Callable[[str], Awaitable[None]]:
    """Both rules for a recogniser that does not tell the endpointing itself (a cloud STT's
    finals, or Whisper with speculation off): whether the final transcript reads unfinished,
    and the FAQ match that may end the turn early.

    With a cloud model the match only decides the turn: Gemini still answers. The account's
    FAQs are the questions its callers ask, so a confident match is a whole question; without
    it every turn the detector was unsure of waited the full `max_delay` (measured: turn
    decided 1.5 s after the caller stopped, README "The answer benchmark").
    """
    match_first = _match_before_final(faq, endpointing)

    async def before_final(text: str) -> None:
        endpointing.on_transcript(text)
        await match_first(text)

    return before_final


def turn_taking(
    settings: Settings, engines: CallEngines, chains_stt: stt.STT, llm: object, *, cloud: bool
) -> TurnTaking:
    """The turn-taking of one call, from the settings."""
    call_stt = chains_stt
    if settings.speculative_stt and chains_stt is engines.stt:
        call_stt = SpeculativeSTT(
            stt=engines.stt, vad=engines.vad, speculate_after_s=settings.speculate_after
        )
    endpointing = EarlyEndpointing(
        settings.min_endpointing_delay,
        settings.max_endpointing_delay,
        # Above any score: never early (the score is a cosine plus a small bonus).
        early_score=settings.early_turn_score or float("inf"),
        question_ends_turn=settings.question_ends_turn,
        unfinished_delay=settings.unfinished_delay,
    )
    early = settings.early_turn_score > 0
    before_final: Callable[[str], Awaitable[None]] | None = None
    if isinstance(call_stt, SpeculativeSTT):
        # Whisper with speculation tells both rules itself, preflight transcripts included.
        call_stt.on_transcript = endpointing.on_transcript
        call_stt.on_recognising = endpointing.on_recognising
        if early:
            call_stt.before_final = _match_before_final(engines.llm, endpointing)
    elif early:
        before_final = _read_before_final(engines.llm, endpointing)
    else:
        before_final = _unfinished_only(endpointing)
    if early and isinstance(llm, FaqLLM):
        # The answer's own match too (a turn the detector decided before the final).
        llm.on_match = endpointing.on_match
    handling: dict[str, Any] = {
        "turn_detection": engines.turn_detector,
        "interruption": {
            "mode": "vad",
            "min_duration": settings.min_interruption,
            # A pause that brought no words ends in the agent resuming its sentence.
            "resume_false_interruption": True,
            "false_interruption_timeout": settings.false_interruption_timeout,
        },
        "endpointing": {
            "min_delay": settings.min_endpointing_delay,
            "max_delay": settings.max_endpointing_delay,
        },
        # Stored answers cost nothing to render before the turn is confirmed, which
        # takes the TTS out of the critical path; a cloud model's tokens do cost, so
        # its speech waits for the turn.
        "preemptive_generation": {"enabled": True, "preemptive_tts": not cloud},
    }
    return TurnTaking(
        stt=call_stt, turn_handling=handling, endpointing=endpointing, before_final=before_final
    )


def _unfinished_only(endpointing: EarlyEndpointing) -> Callable[[str], Awaitable[None]]:
    async def before_final(text: str) -> None:
        endpointing.on_transcript(text)

    return before_final
