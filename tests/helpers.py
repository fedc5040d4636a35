"""Comparing what the agent said (as Whisper heard it) with what it should have said."""

from __future__ import annotations

import difflib
import re

_NUMBER_WORDS = {"eight": "8", "nine": "9", "one": "1", "six": "6", "ten": "10", "seven": "7"}


def words(text: str) -> list[str]:
    tokens = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return [_NUMBER_WORDS.get(t, t) for t in tokens]


def similarity(heard: str, expected: str) -> float:
    """0..1 word-sequence similarity, tolerant of punctuation, case and small slips."""
    return difflib.SequenceMatcher(None, words(heard), words(expected)).ratio()
