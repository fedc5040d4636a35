"""The caller simulator's pieces that run without a server."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from caller.__main__ import _read_wav, _summary
from caller.simulator import CallReport, Turn


def _write(path: Path, samples: np.ndarray, rate: int, channels: int, width: int = 2) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


def test_wav_questions_are_read_as_mono_float(tmp_path: Path) -> None:
    left = (np.sin(np.linspace(0, 100, 8000)) * 16000).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "question.wav"
    _write(path, stereo, 8000, 2)
    question = _read_wav(path)
    assert question.sample_rate == 8000 and question.audio.shape == (8000,)
    assert question.text == "<question.wav>"
    assert np.allclose(question.audio, left / 32768.0 / 2, atol=1e-4)


def test_wav_that_is_not_16_bit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "eight-bit.wav"
    _write(path, np.full(800, 128, dtype=np.uint8), 8000, 1, width=1)
    with pytest.raises(SystemExit, match=r"eight-bit\.wav: only 16-bit PCM"):
        _read_wav(path)


def test_summary_reports_median_and_worst() -> None:
    reports = [
        CallReport("a", 0.1, 0.8, "hi", [Turn("q", "a", 1.2, 5.0, 2.0)]),
        CallReport("b", 0.1, 0.9, "hi", [Turn("q", "a", 1.4, 5.0, 2.0), Turn("q", "", None, 9, 0)]),
        CallReport("c", 0.1, None, ""),
    ]
    summary = _summary(reports)
    assert summary["time_to_first_word"] == {"n": 2, "median_ms": 850, "worst_ms": 900}
    assert summary["answer_latency"] == {"n": 2, "median_ms": 1300, "worst_ms": 1400}


async def test_a_track_gone_before_it_is_recorded_is_not_an_error() -> None:
    # A caller hanging up as the agent's track is subscribed: the track's handle is dead by
    # the time the recording task opens a stream on it (the soak's "Task exception was never
    # retrieved" traceback). The recorder records nothing and ends quietly.
    from types import SimpleNamespace

    from caller.recorder import Recorder

    gone = SimpleNamespace(_ffi_handle=None, _info=None)
    recorder = Recorder()
    await recorder.consume(gone)  # type: ignore[arg-type]
    assert recorder.chunks == []
