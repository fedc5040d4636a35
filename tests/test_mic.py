"""The caller simulator's microphone: silence is zeros, or a real line's noise floor."""

from __future__ import annotations

import numpy as np
import pytest

from caller.mic import Microphone


async def test_silence_is_digital_zeros_unless_a_noise_floor_is_asked_for() -> None:
    quiet = Microphone()
    assert all(not frame.any() for frame in quiet._silence)
    line = Microphone(noise_dbfs=-50.0)
    noise = np.concatenate(line._silence)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(10 ** (-50 / 20), rel=0.05)
    # Enough distinct frames that the floor is not a short loop.
    assert len(line._silence) >= 50
    await quiet.aclose()
    await line.aclose()
