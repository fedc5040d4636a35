"""The offline engines: weights checks, speech synthesis and recognition, as providers."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc

from agent.engines.audio import float_to_int16_bytes, resample, rms_dbfs
from agent.engines.local_tts import LocalTTS
from agent.engines.weights import WeightFile, WeightsError, verified_path
from agent.engines.whisper_stt import WhisperSTT
from tests.helpers import similarity

SENTENCE = "What time do you open on Saturday?"


def test_weights_with_wrong_hash_are_refused() -> None:
    tampered = WeightFile("agent", "agent", "settings.py", "0" * 64)
    with pytest.raises(WeightsError, match=r"settings\.py.*expected 0{64}"):
        verified_path(tampered)


def test_missing_weights_package_is_named() -> None:
    with pytest.raises(WeightsError, match=r"not-a-package.*not installed"):
        verified_path(WeightFile("not-a-package==1", "not_a_package_xyz", "m.onnx", "0" * 64))


@pytest.mark.parametrize("voice", ["hibari", "piper"])
async def test_tts_provider_streams_speech(voice: str, request: pytest.FixtureRequest) -> None:
    tts: LocalTTS = request.getfixturevalue(voice)
    frames = [ev.frame async for ev in tts.synthesize(SENTENCE)]
    assert frames and all(f.sample_rate == tts.sample_rate for f in frames)
    audio = rtc.combine_audio_frames(frames)
    seconds = audio.samples_per_channel / audio.sample_rate
    assert 1.0 < seconds < 5.0
    samples = np.frombuffer(audio.data, dtype=np.int16).astype(np.float32) / 32768
    assert rms_dbfs(samples) > -35  # speech, not silence


@pytest.mark.parametrize("voice", ["hibari", "piper"])
async def test_whisper_provider_understands_both_voices(
    voice: str, request: pytest.FixtureRequest, whisper: WhisperSTT
) -> None:
    tts: LocalTTS = request.getfixturevalue(voice)
    audio = tts.render(SENTENCE)
    frame = rtc.AudioFrame(float_to_int16_bytes(audio), tts.sample_rate, 1, audio.size)
    event = await whisper.recognize([frame])
    assert similarity(event.alternatives[0].text, SENTENCE) > 0.85


async def test_whisper_hears_nothing_in_silence(whisper: WhisperSTT) -> None:
    silence = rtc.AudioFrame(bytes(16000 * 2), 16000, 1, 16000)
    event = await whisper.recognize([silence])
    assert len(event.alternatives[0].text.split()) <= 2


@pytest.mark.parametrize("src_rate", [24000, 48000])
def test_resampling_for_whisper_does_not_fold_high_frequencies_back(src_rate: int) -> None:
    # A 10 kHz tone is above 16 kHz audio's 8 kHz limit: it must be filtered out, not
    # folded back into the speech band (linear interpolation left it at -10 to -13 dBFS).
    t = np.arange(src_rate) / src_rate
    tone = (0.5 * np.sin(2 * np.pi * 10_000 * t)).astype(np.float32)
    out = resample(tone, src_rate, 16000)
    assert abs(out.size - 16000) <= 1
    assert rms_dbfs(out[1000:-1000]) < -50, rms_dbfs(out[1000:-1000])
    # ...while speech frequencies pass unchanged.
    voice_band = (0.5 * np.sin(2 * np.pi * 1_000 * t)).astype(np.float32)
    kept = resample(voice_band, src_rate, 16000)[1000:-1000]
    assert abs(rms_dbfs(kept) - rms_dbfs(voice_band)) < 0.5
