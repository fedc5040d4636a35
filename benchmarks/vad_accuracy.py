"""How well the VAD finds the caller's speech, per setting, on the labelled turn set.

    scripts/bench-vad.sh [--voices hibari,piper] [--configs NAME:K=V,...] [--out DIR]

Why: telephone questions lost their start or were cut in two (benchmarks/RESULTS.md "The
VAD on a phone line"). Silero's speech probability on band-limited speech hovers around its
thresholds, so where it dips inside a sentence for
0.25 s the utterance ends (a split: the agent may answer half a question), and where it
rises late the words before are never transcribed (a late start beyond the prefix padding).

Every clip of `benchmarks/turn_set.py` (both voices, clean and telephone; each says where
its speech is) is first sent through a real LiveKit room (the local server; a caller's
microphone with a -65 dBFS floor between clips, Opus over WebRTC, received at 16 kHz as the
worker's session hears it; `--offline` skips this and uses the clips as rendered), then
pushed through a fresh `silero.VAD` stream per configuration in 10 ms frames, and the
events are scored against the labels:

- **split**: an end of speech whose last speech lies inside a stretch, more than 0.15 s
  before the stretch ends (the VAD heard a pause that is not there);
- **late start**: a stretch the VAD joins more than 0.5 s after it begins (the prefix
  padding, 0.5 s, no longer brings back its first words) or never;
- **false start**: an utterance that overlaps no stretch (noise taken for speech);
- **end delay**: the real end of the turn to the VAD's end of speech (p50/p90, ms);
- **VAD CPU**: seconds of compute per second of audio.

A clip is **clean** when it has none of the first three. Figures only (no assertions);
compare configurations within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.engines.audio import float_to_int16_bytes  # noqa: E402

RATE = 16000
# A stretch's last 0.15 s may fall under the VAD's threshold (a fading last sound): an end
# there is the stretch's own end, not a split.
SPLIT_MARGIN_S = 0.15
# The VAD hands the recogniser 0.5 s of audio before it detected speech (prefix padding):
# a start later than that loses words.
LATE_START_S = 0.5

DEFAULT_CONFIGS = (
    "shipped:sample_rate=16000",
    "a0.35:sample_rate=16000,activation_threshold=0.35",
    "8k:sample_rate=8000",
    "8k-a0.35:sample_rate=8000,activation_threshold=0.35",
)


@dataclass(frozen=True)
class Config:
    name: str
    options: dict[str, float]

    @classmethod
    def parse(cls, text: str) -> Config:
        name, _, rest = text.partition(":")
        options: dict[str, float] = {}
        for pair in filter(None, rest.split(",")):
            key, sep, value = pair.partition("=")
            if not sep or key not in {
                "sample_rate",
                "activation_threshold",
                "deactivation_threshold",
                "min_speech_duration",
            }:
                raise SystemExit(f"--configs {text!r}: cannot read {pair!r}")
            options[key] = float(value)
        return cls(name, options)


@dataclass
class ClipScore:
    voice: str
    line: str
    kind: str
    text: str
    splits: int = 0
    late_starts: int = 0
    false_starts: int = 0
    end_delay_s: float | None = None  # None: the turn's end was never seen
    utterances: list[tuple[float, float]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.splits or self.late_starts or self.false_starts)


def score(
    speech: tuple[tuple[float, float], ...],
    utterances: list[tuple[float, float, float]],
) -> tuple[int, int, int, float | None]:
    """(splits, late starts, false starts, end delay) for one clip.

    `utterances`: (speech onset, last speech, end-of-speech event time) per VAD utterance.
    """
    splits = sum(
        1
        for _onset, last, _at in utterances
        if any(begin < last < end - SPLIT_MARGIN_S for begin, end in speech)
    )
    late = 0
    for begin, end in speech:
        covering = [u for u in utterances if u[0] < end and u[1] > begin]
        if not covering or min(u[0] for u in covering) > begin + LATE_START_S:
            late += 1
    false = sum(
        1 for onset, last, _at in utterances if not any(onset < e and last > b for b, e in speech)
    )
    ends_at = speech[-1][1]
    final = [u for u in utterances if u[1] >= ends_at - SPLIT_MARGIN_S]
    delay = final[0][2] - ends_at if final else None
    return splits, late, false, delay


async def measure_clip(
    vad: Any, audio: np.ndarray, model_rate: int
) -> tuple[list[tuple[float, float, float]], float]:
    """The VAD's utterances in a clip (seconds), and its compute time (s)."""
    from livekit import rtc
    from livekit.agents import vad as vad_api

    n = RATE // 100
    stream = vad.stream()
    for i in range(0, audio.size - n + 1, n):
        stream.push_frame(rtc.AudioFrame(float_to_int16_bytes(audio[i : i + n]), RATE, 1, n))
    stream.end_input()
    utterances: list[tuple[float, float, float]] = []
    onset: float | None = None
    compute = 0.0
    async for event in stream:
        if event.type == vad_api.VADEventType.INFERENCE_DONE:
            compute += event.inference_duration
        elif event.type == vad_api.VADEventType.START_OF_SPEECH:
            onset = event.samples_index / model_rate - event.speech_duration
        elif event.type == vad_api.VADEventType.END_OF_SPEECH:
            at = event.samples_index / model_rate  # counted at the model's rate
            utterances.append(
                (onset if onset is not None else 0.0, at - event.silence_duration, at)
            )
            onset = None
    await stream.aclose()
    if onset is not None:  # still speaking when the clip ended
        end = audio.size / RATE
        utterances.append((onset, end, end))
    return utterances, compute


# Rooms sending clips at once (each a caller and a listener): real time, so 220 clips of ~6 s
# take ~4 minutes over 6 rooms; their Opus costs little.
ROOM_LANES = 6
# Received audio kept before each clip (the floor the VAD hears first) and searched for it.
ROOM_LEAD_S = 0.5
FLOOR_DBFS = -65.0


async def _through_room(
    clips: list[Any], lane: int, out: dict[int, tuple[np.ndarray, float]]
) -> None:
    """Send `clips` (index, clip) through one room; store what a 16 kHz listener received."""
    import os

    from livekit import api, rtc

    from caller.mic import Microphone
    from caller.recorder import Recorder

    url = os.environ["LIVEKIT_URL"]
    key, secret = os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"]
    room_name = f"vad-bench-{os.getpid()}-{lane}"

    def token(identity: str) -> str:
        grants = api.VideoGrants(room_join=True, room=room_name)
        return api.AccessToken(key, secret).with_identity(identity).with_grants(grants).to_jwt()

    listener, caller = rtc.Room(), rtc.Room()
    recorder = Recorder()
    tasks: list[asyncio.Task[None]] = []
    listener.on(
        "track_subscribed",
        lambda track, *_: tasks.append(asyncio.create_task(recorder.consume(track))),
    )
    await asyncio.wait_for(listener.connect(url, token("listener")), 10)
    await asyncio.wait_for(caller.connect(url, token("caller")), 10)
    mic = Microphone(noise_dbfs=FLOOR_DBFS)
    track = rtc.LocalAudioTrack.create_audio_track("mic", mic.source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await caller.local_participant.publish_track(track, options)
    mic.start()
    try:
        # Six rooms connect at once: let every listener's subscription flow first.
        await asyncio.sleep(3.0)
        sent: list[tuple[int, float, float]] = []
        for index, clip in clips:
            end = await mic.say(clip.audio, RATE)
            sent.append((index, end - clip.audio.size / RATE, end))
            await asyncio.sleep(0.3)
        await asyncio.sleep(3.0)
    finally:
        await mic.aclose()
        await caller.disconnect()
        await listener.disconnect()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    times = np.array(recorder.times)
    received = recorder.chunks
    for index, begin, end in sent:
        clip_audio = dict(clips)[index].audio
        pick = np.flatnonzero((times >= begin - ROOM_LEAD_S) & (times <= end + 1.0))
        audio = np.concatenate([received[i] for i in pick]) if pick.size else np.zeros(1)
        # Where the clip starts in what was received: the best match of its first second
        # within the lead (the transport's delay is tens of ms, not a fixed figure).
        probe = clip_audio[:RATE]
        search = audio[: round(2 * ROOM_LEAD_S * RATE) + probe.size]
        if search.size < probe.size or audio.size < clip_audio.size:
            continue  # not (wholly) received: counted, not scored
        corr = np.correlate(search, probe, mode="valid")
        offset = int(np.argmax(corr))
        keep = max(0, offset - round(ROOM_LEAD_S * RATE))
        out[index] = (audio[keep : offset + clip_audio.size], (offset - keep) / RATE)


async def send_through_room(clips: list[Any]) -> list[tuple[np.ndarray, float] | None]:
    """Each clip as a listener in a LiveKit room received it, and where the clip begins."""
    out: dict[int, tuple[np.ndarray, float]] = {}
    indexed = list(enumerate(clips))
    lanes = [indexed[i::ROOM_LANES] for i in range(ROOM_LANES)]
    await asyncio.gather(*(_through_room(lane, i, out) for i, lane in enumerate(lanes)))
    missing = [clips[i].name for i in range(len(clips)) if i not in out]
    if missing:
        print(f"{len(missing)} clips not wholly received: {missing}", file=sys.stderr)
    return [out.get(i) for i in range(len(clips))]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def table(
    rows: dict[tuple[str, str], list[ClipScore]],
    cpu: dict[str, float],
    missed: dict[tuple[str, str], int],
) -> str:
    lines = [
        "| config | line | clips clean | splits | late starts | false starts | "
        "end delay p50 / p90 ms | turn end missed | not received | VAD CPU s per s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, line), scores in rows.items():
        delays = [s.end_delay_s * 1000 for s in scores if s.end_delay_s is not None]
        lines.append(
            f"| {name} | {line} | {sum(s.clean for s in scores)}/{len(scores)} "
            f"| {sum(s.splits for s in scores)} | {sum(s.late_starts for s in scores)} "
            f"| {sum(s.false_starts for s in scores)} "
            f"| {_pct(delays, 50):.0f} / {_pct(delays, 90):.0f} "
            f"| {sum(s.end_delay_s is None for s in scores)} "
            f"| {missed.get((name, line), 0)} | {cpu[name]:.4f} |"
        )
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> None:
    from livekit.plugins import silero

    from agent.settings import get_settings

    from .turn_set import load_voices, render_set

    configs = [Config.parse(c) for c in (args.configs or DEFAULT_CONFIGS)]
    settings = get_settings()
    clips = list(render_set(load_voices(args.voices)))
    print(f"rendered {len(clips)} clips", file=sys.stderr)
    cache = args.out / "heard.npz"
    if args.offline:
        heard: list[tuple[np.ndarray, float] | None] = [(clip.audio, 0.0) for clip in clips]
    elif args.reuse and cache.exists():
        stored = np.load(cache)
        heard = [
            (stored[f"a{i}"], float(stored["shifts"][i])) if f"a{i}" in stored else None
            for i in range(len(clips))
        ]
    else:
        started = time.perf_counter()
        heard = await send_through_room(clips)
        print(f"sent through a room: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {f"a{i}": h[0] for i, h in enumerate(heard) if h is not None}
        arrays["shifts"] = np.array([h[1] if h else 0.0 for h in heard])
        np.savez(cache, **arrays)
    rows: dict[tuple[str, str], list[ClipScore]] = {}
    missed: dict[tuple[str, str], int] = {}
    cpu: dict[str, float] = {}
    for config in configs:
        options: dict[str, Any] = {
            "min_silence_duration": settings.vad_min_silence,
            "max_buffered_speech": settings.vad_max_speech,
            **config.options,
        }
        if "sample_rate" in options:
            options["sample_rate"] = int(options["sample_rate"])
        if "activation_threshold" in options and "deactivation_threshold" not in options:
            options["deactivation_threshold"] = max(options["activation_threshold"] - 0.15, 0.01)
        vad = silero.VAD.load(**options)
        compute = audio_s = 0.0
        started = time.perf_counter()
        for clip, received in zip(clips, heard, strict=True):
            if received is None:
                rows.setdefault((config.name, clip.line), [])
                missed[(config.name, clip.line)] = missed.get((config.name, clip.line), 0) + 1
                continue
            audio, shift = received
            utterances, spent = await measure_clip(vad, audio, options.get("sample_rate", RATE))
            compute += spent
            audio_s += audio.size / RATE
            speech = tuple((begin + shift, end + shift) for begin, end in clip.speech)
            splits, late, false, delay = score(speech, utterances)
            rows.setdefault((config.name, clip.line), []).append(
                ClipScore(
                    clip.voice, clip.line, clip.kind, clip.text, splits, late, false, delay,
                    [(round(u[0], 2), round(u[1], 2)) for u in utterances],
                )
            )  # fmt: skip
        cpu[config.name] = compute / audio_s
        print(f"{config.name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(table(rows, cpu, missed))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vad.json").write_text(
        json.dumps(
            {
                f"{name}/{line}": [asdict(s) for s in scores]
                for (name, line), scores in rows.items()
            },
            indent=1,
        )
    )
    print(f"per clip: {args.out / 'vad.json'}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", default="hibari,piper")
    parser.add_argument(
        "--configs",
        action="append",
        metavar="NAME:K=V,...",
        help="a VAD configuration (sample_rate, activation_threshold, deactivation_threshold, "
        f"min_speech_duration); default: {' '.join(DEFAULT_CONFIGS)}",
    )
    parser.add_argument(
        "--offline", action="store_true", help="the clips as rendered, not through a room"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="the audio received in the last run (same voices)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "vad-bench")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
