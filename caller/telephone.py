"""Telephone-quality audio for the caller simulator and the recognition tests.

What a caller on a phone line sounds like by the time it reaches the agent: narrowband
(8 kHz sampling, 300-3400 Hz), G.711 μ-law companded to 8 bits, with a little line hiss.
The result is brought back to the input's sample rate (band-limited, so upsampling adds
nothing above 4 kHz), because the simulator sends it over WebRTC at 48 kHz as a SIP bridge
would.

Done by hand with numpy FFTs (no DSP package is installed): a whole question is a few
seconds, so one FFT per clip is simpler and exact where a streaming filter is not needed.
"""

from __future__ import annotations

import numpy as np

PHONE_RATE = 8000
BAND_HZ = (300.0, 3400.0)
MU = 255.0
# Line hiss, RMS in dBFS: audible in the gaps, ~30 dB under a normal speaking level.
NOISE_DBFS = -50.0


def _fft_resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling by truncating or zero-padding the spectrum."""
    n_in = samples.size
    n_out = round(n_in * dst_rate / src_rate)
    if n_in == 0 or n_out == 0:
        return np.zeros(n_out, dtype=np.float32)
    spectrum = np.fft.rfft(samples.astype(np.float64))
    bins = n_out // 2 + 1
    if bins <= spectrum.size:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - spectrum.size, spectrum.dtype)])
    return (np.fft.irfft(spectrum, n_out) * (n_out / n_in)).astype(np.float32)


def _band_limit(samples: np.ndarray, rate: int, band: tuple[float, float]) -> np.ndarray:
    spectrum = np.fft.rfft(samples.astype(np.float64))
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate)
    spectrum[(freqs < band[0]) | (freqs > band[1])] = 0.0
    return np.fft.irfft(spectrum, samples.size).astype(np.float32)


def mu_law(samples: np.ndarray) -> np.ndarray:
    """G.711 μ-law round trip: compand, quantise to 8 bits, expand."""
    x = np.clip(samples, -1.0, 1.0)
    companded = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    codes = np.round(companded * 127.0)  # 8 bits: -127..127
    y = codes / 127.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)


def narrowband(
    samples: np.ndarray, rate: int, *, noise_dbfs: float = NOISE_DBFS, seed: int = 0
) -> np.ndarray:
    """The phone line's 8 kHz μ-law signal (float32) for mono float32 audio at `rate`."""
    phone = _fft_resample(samples, rate, PHONE_RATE)
    phone = _band_limit(phone, PHONE_RATE, BAND_HZ)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(phone.size).astype(np.float32) * 10 ** (noise_dbfs / 20)
    phone = phone + _band_limit(noise, PHONE_RATE, BAND_HZ)
    return mu_law(phone)


def telephone(
    samples: np.ndarray, rate: int, *, noise_dbfs: float = NOISE_DBFS, seed: int = 0
) -> np.ndarray:
    """`samples` as heard through a phone line, at the same sample rate `rate`."""
    return _fft_resample(
        narrowband(samples, rate, noise_dbfs=noise_dbfs, seed=seed), PHONE_RATE, rate
    )
