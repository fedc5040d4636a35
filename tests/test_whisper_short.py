"""The short-window Whisper path: right text on clean and telephone audio, its guard, accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import agent.engines.whisper_stt as whisper_stt
from agent.engines.local_tts import LocalTTS, load_piper
from agent.engines.whisper_stt import WhisperMode, WhisperSTT, _repeats
from caller.clips import QUESTIONS, render_clips, word_errors
from caller.telephone import PHONE_RATE, narrowband, telephone
from tests.helpers import similarity

QUESTION = "Hi, what time do you open on Saturdays?"


@pytest.fixture
def short(whisper: WhisperSTT) -> WhisperSTT:
    stt = whisper.lease()
    stt.mode = "short"
    return stt


@pytest.fixture(scope="module")
def piper_steady() -> LocalTTS:
    """Piper without its sampled prosody: the same audio every run. With the sampling, tiny.en
    slips on a different word of the narrowband render each run, the short and the full
    window apart (CI once heard "setter days" for "Saturdays" in the short window only)."""
    return load_piper(None, threads=2, verify=True, steady=True)


@pytest.mark.parametrize("line", ["clean", "telephone"])
@pytest.mark.parametrize("voice", ["hibari", "piper_steady"])
def test_short_path_transcribes(
    voice: str, line: str, short: WhisperSTT, request: pytest.FixtureRequest
) -> None:
    tts: LocalTTS = request.getfixturevalue(voice)
    audio = tts.render(QUESTION)
    if line == "telephone":
        audio = telephone(audio, tts.sample_rate)
    before = short.fallbacks
    text = short.transcribe_pcm(audio, tts.sample_rate, "en")
    after = short.fallbacks
    if line == "clean":
        assert similarity(text, QUESTION) > 0.8, text
        assert after == before  # answered by the short window itself
    else:  # tiny.en itself mishears narrowband speech; no worse than its full window
        full = short.transcribe_pcm(audio, tts.sample_rate, "en", mode="full")
        assert similarity(text, QUESTION) >= similarity(full, QUESTION) - 0.15, (text, full)
        # On narrowband audio the short window sometimes stops before the last word, and the
        # guard redoes it on the full window: that is its job, not a failure (piper's voice
        # is sampled, so each render differs; CI saw one fallback in one run of many).
        assert after - before <= 1


def test_telephone_audio_is_narrowband_mu_law(piper: LocalTTS) -> None:
    audio = piper.render(QUESTION)
    phone = narrowband(audio, piper.sample_rate)
    assert abs(phone.size - audio.size * PHONE_RATE / piper.sample_rate) <= 1
    assert np.unique(phone).size <= 255  # 8-bit codes
    wide = telephone(audio, piper.sample_rate)
    spectrum = np.abs(np.fft.rfft(wide))
    freqs = np.fft.rfftfreq(wide.size, 1 / piper.sample_rate)
    assert spectrum[freqs > 4000].sum() < 0.01 * spectrum.sum()


def test_guard_trips_and_the_full_window_answers(
    short: WhisperSTT, piper: LocalTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token bound far below the utterance forces the guard, as a decoder loop would.
    monkeypatch.setattr(whisper_stt, "TOKENS_PER_SECOND", 0.5)
    monkeypatch.setattr(whisper_stt, "MIN_TOKENS", 2)
    audio = piper.render(QUESTION)
    before = short.fallbacks
    text = short.transcribe_pcm(audio, piper.sample_rate, "en")
    assert short.fallbacks == before + 1
    assert similarity(text, QUESTION) > 0.85, text


def test_repetition_is_detected() -> None:
    assert _repeats("How much does it cost? How much does it cost? How much does it cost?")
    assert _repeats("the the the the the the the the the the the the the the")
    assert not _repeats("My number is 503-555-0142. Can you call me back?")


@pytest.mark.slow
def test_short_is_as_accurate_as_full(
    whisper: WhisperSTT, hibari: LocalTTS, piper: LocalTTS
) -> None:
    modes: tuple[WhisperMode, ...] = ("short", "full")
    errors = dict.fromkeys(modes, 0)
    words = 0
    clean = [c for c in render_clips([hibari, piper], QUESTIONS[::2]) if c.line == "clean"]
    for clip in clean:
        for mode in modes:
            text = whisper.transcribe_pcm(clip.audio, clip.sample_rate, "en", mode=mode)
            errors[mode] += word_errors(clip.text, text)[0]
        words += word_errors(clip.text, "")[1]
    # Clean clips of both voices. On telephone audio the short window is measured to be
    # slightly worse (see README, scripts/asr_eval.py), so that is reported, not asserted.
    # The voices sample noise (no two renders are the same), so the counts move by a word
    # or two from run to run (CI once saw short 7, full 5 of 116 words): not worse by more
    # than 2 words, which a short window that really lost words would exceed.
    assert errors["short"] <= errors["full"] + 2, (errors, words)
