"""The labelled turn-taking set: caller turns with the pauses callers make, and where each ends.

Each turn is written as its words with the pauses in brackets, in seconds:
"So we just got a new plan and [1.2] do you take it?" is said as two stretches of speech with
1.2 s of silence between them, and the turn ends where the last word does. An agent that
answers in a pause has cut the caller off; the time from the last word to the agent's
decision is what the caller waits.

The set is rendered with both local voices (hibari "heart" and Piper "joe"), clean and
through a telephone line (`caller/telephone.py`), at 16 kHz (what the VAD, Whisper and
both turn models take). Each turn is rendered in one breath and cut where its pauses go (see
`_stretches`), so the pause is exactly the written one, the voice does not close the sentence
before it, and the turn's end is a sample index.

    .venv/bin/python -m benchmarks.turn_set --write DIR   # WAVs + labels.json, to listen to

Used by `benchmarks/turns.py` (scripts/bench-turns.sh).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.engines.audio import resample
from agent.engines.local_tts import LocalTTS
from caller.recorder import save_wav
from caller.telephone import telephone

RATE = 16000
LEAD_S = 0.5  # silence before the caller speaks
# Silence after the turn: longer than the longest wait any strategy is run with, so every
# turn is decided inside the clip.
TAIL_S = 3.5
# Clean audio gets a faint noise floor (a quiet room), not digital silence.
ROOM_NOISE_DBFS = -65.0
_SPEECH_LEVEL = 0.01  # |sample| above this is speech, for trimming each rendered stretch
_KEEP_S = 0.03  # of the silence each stretch's trim keeps, so no onset or release is cut
# The kinds whose turns have a pause in them: where an agent can cut the caller off.
PAUSED_KINDS = ("paused", "list", "number")

# (kind, account, text). Kinds: whole (a complete question or statement, no pause), paused
# (a thinking pause inside: after "and", "so", "uh"/"um", mid noun phrase, before a number
# or a date), list, number (a phone number or date read in groups), short ("yes").
TURNS: tuple[tuple[str, str, str], ...] = (
    ("whole", "harbor-dental", "What time do you open on Saturday?"),
    ("whole", "harbor-dental", "Do you take Aetna insurance?"),
    ("whole", "harbor-dental", "How much is a cleaning without insurance?"),
    ("whole", "harbor-dental", "Are you taking new patients right now?"),
    ("whole", "harbor-dental", "Is there somewhere I can park?"),
    ("whole", "harbor-dental", "Can I bring my daughter to the same appointment?"),
    ("whole", "harbor-dental", "My crown fell out this morning, can somebody see me today?"),
    ("whole", "harbor-dental", "I chipped a tooth and it really hurts."),
    ("whole", "harbor-dental", "I'm calling to confirm my appointment tomorrow."),
    ("whole", "bluebird-bikes", "Do you rent out electric bikes?"),
    ("whole", "bluebird-bikes", "How long does a tune-up usually take?"),
    ("whole", "bluebird-bikes", "Can you fix a flat tire while I wait?"),
    ("whole", "bluebird-bikes", "My frame is cracked, is that something you deal with?"),
    ("whole", "bluebird-bikes", "Who should I talk to about a refund?"),
    ("whole", "bluebird-bikes", "I'd like to book a tune-up."),
    ("whole", "bluebird-bikes", "My bike was stolen last night."),
    ("paused", "harbor-dental", "So we just got a new insurance plan and [1.2] do you take it?"),
    ("paused", "harbor-dental", "And is there, uh [1.0] somewhere I can park?"),
    ("paused", "harbor-dental", "So [0.9] how much would a filling cost?"),
    ("paused", "harbor-dental", "Um [1.0] do you do teeth whitening?"),
    ("paused", "harbor-dental", "I was wondering if [1.3] you could see me this week."),
    ("paused", "harbor-dental", "Could you tell me the [1.1] the price of a crown?"),
    ("paused", "harbor-dental", "Can I book a cleaning for [1.0] next Tuesday?"),
    ("paused", "harbor-dental", "My insurance is with [1.4] Delta Dental, do you take it?"),
    ("paused", "harbor-dental", "I need to cancel my appointment on [1.2] Thursday the 12th."),
    ("paused", "harbor-dental", "How much is the [0.8] the whitening kit?"),
    ("paused", "harbor-dental", "I'd like to know if my [0.7] if my son can get braces here."),
    ("paused", "harbor-dental", "Do you have an appointment on [0.6] Monday morning?"),
    ("paused", "bluebird-bikes", "So my question is [1.5] do you sell helmets for kids?"),
    (
        "paused",
        "bluebird-bikes",
        "I bought a bike from you and [1.6] the brakes are squeaking, can you look at it?",
    ),
    ("paused", "bluebird-bikes", "Do you have any [1.0] um [0.8] cargo bikes for rent?"),
    ("paused", "bluebird-bikes", "How much is it to rent a bike for [1.2] three days?"),
    ("paused", "bluebird-bikes", "Can I come in at [1.0] about 4 o'clock?"),
    ("paused", "bluebird-bikes", "We're a group of [1.3] eight people, can we all rent bikes?"),
    ("paused", "bluebird-bikes", "Is the shop open on [0.9] Christmas Eve?"),
    ("paused", "bluebird-bikes", "What's the best way to [1.1] to store a bike for the winter?"),
    ("paused", "bluebird-bikes", "And, um [2.0] do you sell used bikes?"),
    (
        "list",
        "harbor-dental",
        "Two things. First [0.8] do you take Cigna? And second [0.9] are you open late on"
        " Thursdays?",
    ),
    (
        "list",
        "harbor-dental",
        "I have two questions, one is about the price [1.0] and the other is about parking.",
    ),
    ("list", "bluebird-bikes", "I need three things, a new chain [0.7] a helmet [0.8] and a bell."),
    ("list", "bluebird-bikes", "Can you check the brakes [0.8] the gears [0.8] and the tires?"),
    ("number", "harbor-dental", "My number is 503 [0.7] 555 [0.7] 0142."),
    ("number", "harbor-dental", "You can reach me at 415 [0.8] 555 [0.6] 0199."),
    ("number", "harbor-dental", "My date of birth is March [0.7] 14th [0.8] 1986."),
    ("number", "harbor-dental", "The appointment was on the [0.9] 23rd of June."),
    ("number", "bluebird-bikes", "The order number is 447 [0.9] 219."),
    ("number", "bluebird-bikes", "My phone is 971 [1.0] 555 [0.7] 0123, call me back please."),
    ("short", "harbor-dental", "Yes."),
    ("short", "harbor-dental", "No thanks."),
    ("short", "harbor-dental", "Okay."),
    ("short", "harbor-dental", "Yes please."),
    ("short", "bluebird-bikes", "That's right."),
    ("short", "bluebird-bikes", "No, that's all."),
    ("short", "bluebird-bikes", "Sure."),
    ("short", "bluebird-bikes", "Thank you."),
)

_PAUSE = re.compile(r"\s*\[(\d+(?:\.\d+)?)\]\s*")


def parse(text: str) -> tuple[list[str], list[float]]:
    """Stretches of speech and the pauses between them (seconds, one fewer)."""
    parts = _PAUSE.split(text)
    stretches = [p.strip() for p in parts[0::2]]
    pauses = [float(p) for p in parts[1::2]]
    if not all(stretches) or (not pauses and len(stretches) != 1):
        raise ValueError(f"turn {text!r}: every pause needs speech on both sides")
    if any(not 0.3 <= p <= 3.0 for p in pauses):
        raise ValueError(f"turn {text!r}: pauses are 0.3-3 s")
    return stretches, pauses


@dataclass(frozen=True)
class TurnClip:
    """One rendered turn: 16 kHz mono float32, and where its speech is."""

    kind: str
    account: str
    text: str  # the words, pauses taken out
    voice: str
    line: str  # "clean" or "telephone"
    audio: np.ndarray
    speech: tuple[tuple[float, float], ...]  # (start, end) of each stretch, seconds
    pauses: tuple[float, ...]

    @property
    def ends_at(self) -> float:
        """Where the turn really ends: the last word's last sound."""
        return self.speech[-1][1]

    @property
    def name(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.text.lower())[:40]
        return f"{self.voice.replace(':', '-')}-{self.line}-{words}"


def _trimmed(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > _SPEECH_LEVEL)
    if not loud.size:
        raise ValueError("a stretch rendered as silence")
    keep = round(_KEEP_S * RATE)
    return audio[max(0, int(loud[0]) - keep) : int(loud[-1]) + 1 + keep]


_HOP = 160  # 10 ms at 16 kHz: the frames the cut is found in
_FFT = 400


def _spectra(audio: np.ndarray) -> np.ndarray:
    """Unit-length log spectra, one per 10 ms (what the two renderings are matched on)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, _FFT)[::_HOP] * np.hanning(_FFT)
    spec = np.log(np.abs(np.fft.rfft(frames, axis=1))[:, 2:160] + 1e-4)
    spec -= spec.mean(axis=1, keepdims=True)
    return spec / (np.linalg.norm(spec, axis=1, keepdims=True) + 1e-9)


def _end_of_prefix(prefix: np.ndarray, whole: np.ndarray) -> int:
    """Where in `whole` the words of `prefix` (the same voice, said alone) end: the end of
    an open-ended alignment (DTW) of the two spectra. Each step moves one frame in the
    prefix and 0-2 in the whole, so every path has the same length and a row is one numpy
    operation; the prefix said alone is slower at its end (a sentence's last word), which
    the 0-frame steps absorb."""
    a, b = _spectra(prefix), _spectra(whole)
    cost = 1.0 - a @ b.T
    inf = np.inf
    acc = np.full(b.shape[0], inf)
    acc[0] = cost[0, 0]
    for i in range(1, a.shape[0]):
        prev = np.minimum(acc, np.concatenate(([inf], acc[:-1])))
        prev = np.minimum(prev, np.concatenate(([inf, inf], acc[:-2])))
        acc = cost[i] + prev
    return int(np.argmin(acc)) * _HOP + _FFT


def _quietest(audio: np.ndarray, around: int, reach: int) -> int:
    """The quietest 20 ms within `reach` samples of `around`: between two words."""
    win = round(0.02 * RATE)
    lo, hi = max(win, around - reach), min(audio.size - win, around + reach)
    if hi <= lo:
        return around
    energy = np.convolve(audio.astype(np.float64) ** 2, np.ones(win) / win, mode="same")
    return lo + int(np.argmin(energy[lo:hi]))


def _spoken(voice: LocalTTS, text: str) -> np.ndarray:
    return _trimmed(resample(voice.render(text), voice.sample_rate, RATE))


def _stretches(voice: LocalTTS, stretches: list[str]) -> list[np.ndarray]:
    """The turn said in one breath, cut where each pause goes.

    Rendered whole, not stretch by stretch: a stretch said alone ends as a sentence does
    (falling pitch, a lengthened last word), and the audio turn models hear that as the end
    of a turn, which a caller's mid-sentence pause does not sound like. Each cut is where the
    words before it, said alone by the same voice, align with the whole (`_end_of_prefix`),
    moved to the quietest 20 ms within 60 ms.
    """
    whole = _spoken(voice, " ".join(stretches))
    cuts = [0]
    for k in range(1, len(stretches)):
        end = _end_of_prefix(_spoken(voice, " ".join(stretches[:k])), whole)
        cuts.append(max(cuts[-1] + 1, _quietest(whole, end, round(0.06 * RATE))))
    cuts.append(whole.size)
    return [whole[a:b] for a, b in itertools.pairwise(cuts)]


def _speech_span(piece: np.ndarray) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(piece) > _SPEECH_LEVEL)
    if not loud.size:
        return 0.0, piece.size / RATE
    return int(loud[0]) / RATE, (int(loud[-1]) + 1) / RATE


def render_turn(voice: LocalTTS, kind: str, account: str, text: str, seed: int) -> list[TurnClip]:
    """One turn in one voice, clean and through a telephone line (blocking: synthesis)."""
    stretches, pauses = parse(text)
    pieces: list[np.ndarray] = [np.zeros(round(LEAD_S * RATE), dtype=np.float32)]
    speech: list[tuple[float, float]] = []
    at = LEAD_S
    for i, audio in enumerate(_stretches(voice, stretches)):
        pieces.append(audio)
        begin, end = _speech_span(audio)
        speech.append((at + begin, at + end))
        at += audio.size / RATE
        if i < len(pauses):
            pieces.append(np.zeros(round(pauses[i] * RATE), dtype=np.float32))
            at += pauses[i]
    pieces.append(np.zeros(round(TAIL_S * RATE), dtype=np.float32))
    clean = np.concatenate(pieces).astype(np.float32)
    rng = np.random.default_rng(seed)
    clean += rng.standard_normal(clean.size).astype(np.float32) * 10 ** (ROOM_NOISE_DBFS / 20)
    # The phone line's resampling may round the length by a sample.
    phone = telephone(clean, RATE, seed=seed).astype(np.float32)[: clean.size]
    phone = np.pad(phone, (0, clean.size - phone.size))
    said = " ".join(stretches)
    return [
        TurnClip(kind, account, said, voice.model, line, audio, tuple(speech), tuple(pauses))
        for line, audio in (("clean", clean), ("telephone", phone))
    ]


def render_set(voices: list[LocalTTS], kinds: set[str] | None = None) -> Iterator[TurnClip]:
    """Every turn of the set in every voice, clean and telephone."""
    for voice in voices:
        for i, (kind, account, text) in enumerate(TURNS):
            if kinds is None or kind in kinds:
                yield from render_turn(voice, kind, account, text, seed=i)


def load_voices(names: str = "hibari,piper") -> list[LocalTTS]:
    """The local voices named in `names` (comma-separated), loaded (blocking)."""
    from agent.engines.local_tts import load_hibari, load_piper

    voices = []
    if "hibari" in names:
        voices.append(load_hibari(threads=2, verify=True))
    if "piper" in names:
        voices.append(load_piper(None, threads=2, verify=True))
    return voices


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the turn-taking set as WAVs + labels.")
    parser.add_argument("--write", type=Path, required=True, help="a directory")
    args = parser.parse_args()
    args.write.mkdir(parents=True, exist_ok=True)
    labels = []
    for clip in render_set(load_voices()):
        save_wav(args.write / f"{clip.name}.wav", clip.audio, RATE)
        labels.append(
            {
                "file": f"{clip.name}.wav",
                "kind": clip.kind,
                "account": clip.account,
                "text": clip.text,
                "voice": clip.voice,
                "line": clip.line,
                "speech": clip.speech,
                "pauses": clip.pauses,
                "turn_ends_at": clip.ends_at,
            }
        )
    (args.write / "labels.json").write_text(json.dumps(labels, indent=1))
    print(f"{len(labels)} clips in {args.write}")


if __name__ == "__main__":
    main()
