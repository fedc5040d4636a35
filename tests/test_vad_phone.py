"""The VAD on telephone speech as a LiveKit room delivers it (phone thresholds, the VAD bench).

tests/data/phone-question-after-opus.wav is "Are you open at 7:45 in the morning?" in the
Piper voice through the telephone line of `caller/telephone.py`, sent by the caller
simulator's microphone with a -65 dBFS floor through the local LiveKit server and received
at 16 kHz, as the worker's session hears it (recorded 2026-12-07). With Silero's own
thresholds (what web callers get) the pause-free question is cut in two after "open"
(benchmarks/RESULTS.md "The VAD on a phone line"): the agent would answer "Are you open?".
Phone callers' calls get the phone thresholds.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from livekit.plugins import silero
from pydantic import ValidationError

from agent.engines.pools import call_vad, load_vad
from agent.settings import Settings
from benchmarks.vad_accuracy import measure_clip, score

CLIP = Path(__file__).parent / "data" / "phone-question-after-opus.wav"
# Where the question's speech is in the clip (by its level, checked when it was cut).
SPEECH = ((0.6, 2.9),)


def _clip() -> np.ndarray:
    with wave.open(str(CLIP)) as w:
        assert w.getframerate() == 16000
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768


def _speech_span(audio: np.ndarray) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    return loud[0] / 16000, loud[-1] / 16000


def test_the_clip_holds_one_question_without_a_pause() -> None:
    begin, end = _speech_span(_clip())
    assert begin == pytest.approx(SPEECH[0][0], abs=0.1)
    assert end == pytest.approx(SPEECH[0][1], abs=0.15)


async def test_silero_defaults_cut_the_telephone_question_in_two() -> None:
    vad = silero.VAD.load(min_silence_duration=0.25)
    utterances, _ = await measure_clip(vad, _clip(), 16000)
    assert len(utterances) == 2
    splits, _late, _false, _delay = score(SPEECH, utterances)
    assert splits == 1


@pytest.fixture(scope="module")
def loaded_vad(settings: Settings) -> silero.VAD:
    return load_vad(settings)


@pytest.mark.parametrize(("phone", "pieces"), [(True, 1), (False, 2)])
async def test_a_phone_callers_vad_hears_the_telephone_question_as_one_utterance(
    loaded_vad: silero.VAD, settings: Settings, phone: bool, pieces: int
) -> None:
    """A SIP caller's call gets the phone thresholds; a web caller's keeps Silero's own."""
    # Unshared: a shared VAD's stream ends with its call, not with one listener's input.
    vad = call_vad(loaded_vad, settings.model_copy(update={"shared_vad": False}), phone=phone)
    utterances, _ = await measure_clip(vad, _clip(), 16000)
    assert len(utterances) == pieces
    if phone:
        assert score(SPEECH, utterances)[:3] == (0, 0, 0)


@pytest.mark.parametrize("prefix", ["FIRSTWORD_VAD", "FIRSTWORD_PHONE_VAD"])
def test_a_deactivation_above_the_activation_is_refused_by_name(prefix: str) -> None:
    with pytest.raises(ValidationError, match=rf"{prefix}_DEACTIVATION \(0.4\).*{prefix}_ACT"):
        Settings.model_validate({f"{prefix}_ACTIVATION": 0.3, f"{prefix}_DEACTIVATION": 0.4})


# --- the bench's scoring ---------------------------------------------------------------


def test_an_end_inside_speech_is_a_split_and_one_at_a_pause_is_not() -> None:
    speech = ((0.5, 1.5), (2.5, 3.5))  # a 1 s pause between
    at_pause = [(0.45, 1.5, 1.8), (2.45, 3.5, 3.8)]
    assert score(speech, at_pause) == (0, 0, 0, pytest.approx(0.3))
    inside = [(0.45, 1.0, 1.3), (1.1, 1.5, 1.8), (2.45, 3.5, 3.8)]
    assert score(speech, inside)[0] == 1


def test_a_stretch_joined_late_or_never_is_a_late_start() -> None:
    speech = ((0.5, 1.5), (2.5, 3.5))
    late = [(0.45, 1.5, 1.8), (3.1, 3.5, 3.8)]  # 0.6 s after the second stretch began
    assert score(speech, late)[1] == 1
    never = [(0.45, 1.5, 1.8)]
    splits, late_starts, _false, delay = score(speech, never)
    assert (splits, late_starts, delay) == (0, 1, None)


def test_speech_found_in_the_silence_is_a_false_start() -> None:
    speech = ((0.5, 1.5),)
    assert score(speech, [(0.45, 1.5, 1.8), (2.5, 2.7, 3.0)])[2] == 1
