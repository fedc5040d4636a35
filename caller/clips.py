"""A labelled set of caller questions, spoken with the project's own voices.

Used by `scripts/asr_eval.py` and the recognition tests: each question is rendered with
hibari ("heart") and Piper ("joe"), clean and through a telephone line (`telephone.py`),
and recognition is scored by word error rate against the text. Numbers are written the
way Whisper writes them (digits), so a right answer scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from agent.engines.local_tts import LocalTTS
from caller.telephone import telephone

QUESTIONS: tuple[str, ...] = (
    "Hi, what time do you open on Saturdays?",
    "How much does a teeth cleaning cost?",
    "Do you take Delta Dental insurance?",
    "Can I book an appointment for Tuesday at 3:30?",
    "Is there parking near your office?",
    "My number is 503-555-0142, can you call me back?",
    "Is a filling still $150?",
    "Are you open at 7:45 in the morning?",
    "How much is it to rent an electric bike for a day?",
    "Can you fix a flat tire while I wait?",
    "I need an emergency appointment, I chipped a tooth.",
    "Do you sell helmets for kids?",
    "What is your address?",
    "I paid $89.99 last time, is that still the price?",
    "Can I come in at 10 past 4?",
    "Please call me at 415-555-0199 after 6 pm.",
)


@dataclass(frozen=True)
class Clip:
    text: str
    voice: str  # engine:voice
    line: str  # "clean" or "telephone"
    audio: np.ndarray  # mono float32
    sample_rate: int


def render_clips(voices: list[LocalTTS], questions: tuple[str, ...] = QUESTIONS) -> Iterator[Clip]:
    """Every question in every voice, clean and telephone (blocking: synthesis)."""
    for voice in voices:
        for i, text in enumerate(questions):
            audio = voice.render(text)
            yield Clip(text, voice.model, "clean", audio, voice.sample_rate)
            phone = telephone(audio, voice.sample_rate, seed=i)
            yield Clip(text, voice.model, "telephone", phone, voice.sample_rate)


def normalise(text: str) -> list[str]:
    """Words for scoring: lower case, no punctuation; digit groups joined ("3:30" -> "330")."""
    text = text.lower().replace("%", " percent")
    text = re.sub(r"(?<=\d)[:.,\-](?=\d)", "", text)
    text = re.sub(r"(?<=\d) (?=\d\d\b)", "", text)  # "3 30" is how Whisper may write 3:30
    return re.findall(r"[a-z0-9']+", text.replace("$", ""))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length) for a word error rate."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)
