"""The browser caller: how headless Chromium (the OS package) is started as a caller on the
call page, with a WAV file as its microphone. Shared by the browser tests and the web
benchmark (`benchmarks/ttfw_web.py`), so both drive the same browser the same way."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The page plays the agent (and its ringback) without a click on the audio element.
    "--autoplay-policy=no-user-gesture-required",
    # The microphone is granted without a prompt and read from a file.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def chromium_args(microphone: Path) -> list[str]:
    """Chromium's arguments for a caller whose microphone loops `microphone` (a WAV)."""
    return [*_ARGS, f"--use-file-for-fake-audio-capture={microphone}"]


def silent_wav(path: Path, seconds: float = 60.0, rate: int = 16000) -> Path:
    """A caller who says nothing (Chromium's default fake device beeps, which the agent
    would hear as speech over its greeting)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.zeros(int(seconds * rate), np.int16).tobytes())
    return path
