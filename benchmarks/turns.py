"""Turn-taking bench: false cut-offs and the caller's wait, strategy by strategy, on one set.

    scripts/bench-turns.sh [--voices hibari,piper] [--out DIR] [--reuse]

The labelled set (`benchmarks/turn_set.py`: 55 turns x 2 voices x clean/telephone) is played,
offline and as fast as the CPU goes, through the pieces a call uses, each measured once per
place the caller goes quiet:

- Silero VAD with the worker's settings (`FIRSTWORD_VAD_MIN_SILENCE`): each end of speech,
  the silence before it, and when the caller starts again;
- Whisper (`WhisperSTT.transcribe_pcm`, as the speculative recogniser calls it) on that
  stretch of speech, timed;
- the FAQ match of the transcript against the turn's account (`FaqLLM.match`);
- LiveKit's local turn detector `v1-mini` (`inference.TurnDetector(version="v1-mini")`, its
  public stream: the audio up to the end of speech, then `predict()`), timed, with its own
  threshold;
- Pipecat's Smart Turn v3.2 (the CPU ONNX model inside the `pipecat-ai` 1.14.0 wheel, and
  that wheel's own Whisper feature code), timed.

Each strategy then decides every pause from those measurements, for a grid of its delays:
the turn is decided at `max(end of speech, last speech + delay)` plus the time the strategy's
own models (and, for the word rules, the transcript: the recogniser starts 0.1 s into the
silence) take. A decision before the caller speaks again, in a pause before the turn's last
stretch, is a **false cut-off**; otherwise the caller's **wait** is the decision minus the
turn's real end (the last word's last sound). The answer's own time (the FAQ answer's
cached audio, ~30-60 ms) comes on top, the same for every strategy.

Strategies: `vad` (a fixed wait after the VAD), `v1-mini` and `smart-turn` alone (short
delay when the model says the turn is over, long delay when not), `today` (the product:
v1-mini plus the word rules of agent/call/turn_taking.py, `EarlyEndpointing`), and `words+audio`
(see `words_audio`: designed on this set, so its figures flatter it; the live bench is the
check). It prints, per strategy and line, the cut-off rate over the turns with
pauses and the wait p50/p90 over every turn, for each point of the grid and for the
defaults; it writes `turns.json` (every point) and `turns.png` (cut-offs against wait p90,
one curve per strategy) to `--out`.

Why offline: a live call measures one configuration per run, seconds per turn; the curve
needs ~40 configurations on the same 220 clips, and every configuration must see the same
model outputs so they differ only by the rule. The live answers bench
(scripts/bench-answers.sh) measures the chosen default over WebRTC.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.call.turn_taking import looks_unfinished, reads_as_question
from agent.engines.audio import float_to_int16_bytes, frame_to_float

from .turn_set import PAUSED_KINDS, RATE, TurnClip

ROOT = Path(__file__).resolve().parent.parent
PIPECAT = ROOT / ".cache" / "pipecat" / "pipecat" / "audio" / "turn" / "smart_turn"
SMART_TURN_MODEL = PIPECAT / "data" / "smart-turn-v3.2-cpu.onnx"

# The grid each model strategy is run over: (short delay, long delay), seconds.
SHORT = (0.25, 0.4, 0.6)
LONG = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
VAD_ONLY = (0.25, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
SPECULATE_AFTER_S = 0.1  # FIRSTWORD_SPECULATE_AFTER: Whisper starts this far into a silence


@dataclass
class Quiet:
    """One place the caller went quiet, and what each piece made of it."""

    at: float  # the VAD's end of speech, seconds into the clip
    last_speech: float  # where the VAD heard the last speech
    resumes_at: float | None  # the VAD's next start of speech (None: the caller is done)
    mid_turn: bool  # the turn's last stretch is still to come: deciding here cuts it off
    text: str
    stt_s: float
    faq_score: float  # the best FAQ's score (0 when nothing matched)
    v1: float
    v1_threshold: float
    v1_s: float
    smart: float
    smart_s: float


@dataclass
class ClipResult:
    name: str
    kind: str
    line: str
    voice: str
    text: str
    ends_at: float
    quiets: list[Quiet]


# ---- Smart Turn v3.2 ------------------------------------------------------------------


class SmartTurn:
    """Pipecat's Smart Turn v3.2 CPU model, run as its `LocalSmartTurnAnalyzerV3` runs it.

    Hand-written around the wheel's own model and feature module because pipecat-ai cannot
    be installed next to livekit-agents (it pins protobuf < 7; livekit-rtc needs 7), and
    importing the analyzer class imports all of pipecat. So the wheel goes to .cache/pipecat
    with no dependencies (scripts/bench-turns.sh), the feature module (numpy only) is
    loaded by path, and the prediction is the analyzer's `_predict_endpoint`: the last 8 s
    at 16 kHz, zero-padded at the front, Whisper log-mel features, the model's sigmoid.
    """

    def __init__(self) -> None:
        import onnxruntime as ort

        if not SMART_TURN_MODEL.exists():
            raise SystemExit(f"{SMART_TURN_MODEL} is missing: run scripts/bench-turns.sh")
        spec = importlib.util.spec_from_file_location(
            "smart_turn_features", PIPECAT / "_whisper_features.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self._features: Callable[..., np.ndarray] = module.compute_whisper_log_mel_features
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(str(SMART_TURN_MODEL), sess_options=options)

    def predict(self, audio: np.ndarray) -> float:
        """Probability that the turn is complete, for 16 kHz audio ending now."""
        window = 8 * RATE
        audio = audio[-window:]
        if audio.size < window:
            audio = np.pad(audio, (window - audio.size, 0))
        features = self._features(audio.astype(np.float32), do_normalize=True)
        out = self._session.run(None, {"input_features": np.expand_dims(features, 0)})
        return float(np.asarray(out[0]).reshape(-1)[0])


# ---- measuring the set ------------------------------------------------------------------


def _frames(audio: np.ndarray) -> list[Any]:
    from livekit import rtc

    n = RATE // 100
    return [
        rtc.AudioFrame(float_to_int16_bytes(audio[i : i + n]), RATE, 1, n)
        for i in range(0, audio.size - n + 1, n)
    ]


async def _vad_quiets(vad: Any, clip: TurnClip) -> list[tuple[float, float, float, np.ndarray]]:
    """(end of speech, last speech, next start or -1, the utterance's audio) per silence."""
    from livekit.agents import vad as vad_api

    stream = vad.stream()
    for frame in _frames(clip.audio):
        stream.push_frame(frame)
    stream.end_input()
    ends: list[tuple[float, float, np.ndarray]] = []
    starts: list[float] = []
    async for event in stream:
        if event.type == vad_api.VADEventType.END_OF_SPEECH:
            at = event.samples_index / RATE
            # The utterance as the recogniser gets it (16 kHz in, so 16 kHz out).
            audio = np.concatenate([frame_to_float(f) for f in event.frames])
            ends.append((at, at - event.silence_duration, audio))
        elif event.type == vad_api.VADEventType.START_OF_SPEECH:
            starts.append(event.samples_index / RATE)
    await stream.aclose()
    out = []
    for at, last, audio in ends:
        later = [s for s in starts if s > at]
        out.append((at, last, later[0] if later else -1.0, audio))
    return out


async def _v1(detector: Any, audio: np.ndarray) -> tuple[float, float]:
    """v1-mini's end-of-turn probability for audio ending now, and the seconds it took."""
    stream = detector.stream()
    try:
        for frame in _frames(audio[-2 * RATE :]):
            stream.push_audio(frame)
        # The stream's own task moves the frames into the model's 1.2 s buffer.
        for _ in range(3):
            await asyncio.sleep(0)
        start = time.perf_counter()
        event = await asyncio.wait_for(stream.predict(), 10.0)
        return float(event.end_of_turn_probability), time.perf_counter() - start
    finally:
        await stream.aclose()


async def measure(
    clips: list[TurnClip],
    whisper: Any,
    matchers: dict[str, Any],
    vad: Any,
    detector: Any,
    smart: SmartTurn,
) -> list[ClipResult]:
    threshold = await detector.unlikely_threshold(None)  # None: English
    results = []
    for n, clip in enumerate(clips, 1):
        quiets = []
        last_start = clip.speech[-1][0]
        first_start = clip.speech[0][0]
        for at, last, resumes, utterance in await _vad_quiets(vad, clip):
            start = time.perf_counter()
            text = await asyncio.to_thread(whisper.transcribe_pcm, utterance, RATE, "en")
            stt_s = time.perf_counter() - start
            match = await asyncio.to_thread(matchers[clip.account].match, text)
            score = match.score if match is not None and match.faq is not None else 0.0
            heard = clip.audio[: round(at * RATE)]
            v1, v1_s = await _v1(detector, heard)
            start = time.perf_counter()
            smart_p = smart.predict(heard[max(0, round((first_start - 0.5) * RATE)) :])
            smart_s = time.perf_counter() - start
            quiets.append(
                Quiet(
                    at=at,
                    last_speech=last,
                    resumes_at=None if resumes < 0 else resumes,
                    mid_turn=last < last_start,
                    text=text,
                    stt_s=stt_s,
                    faq_score=score,
                    v1=v1,
                    v1_threshold=float(threshold or 0.0),
                    v1_s=v1_s,
                    smart=smart_p,
                    smart_s=smart_s,
                )
            )
        results.append(
            ClipResult(clip.name, clip.kind, clip.line, clip.voice, clip.text, clip.ends_at, quiets)
        )
        print(f"\r  measured {n}/{len(clips)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


# ---- strategies ---------------------------------------------------------------------------

# A strategy: (quiet, short, long) -> (delay after the last speech, seconds of compute after
# the end of speech before it can decide).
Strategy = Callable[[Quiet, float, float], tuple[float, float]]
EARLY_TURN_SCORE = 0.8  # FIRSTWORD_EARLY_TURN_SCORE
UNFINISHED_DELAY = 2.0  # FIRSTWORD_UNFINISHED_DELAY


def _transcript_wait(q: Quiet) -> float:
    """Seconds after the end of speech until the transcript is there (speculation)."""
    return max(0.0, q.last_speech + SPECULATE_AFTER_S + q.stt_s - q.at)


def v1_mini(q: Quiet, short: float, long: float) -> tuple[float, float]:
    return (short if q.v1 >= q.v1_threshold else long), q.v1_s


def smart_turn(q: Quiet, short: float, long: float) -> tuple[float, float]:
    return (short if q.smart > 0.5 else long), q.smart_s


def today(q: Quiet, short: float, long: float) -> tuple[float, float]:
    """The product's rules (agent/call/turn_taking.py `EarlyEndpointing` with v1-mini): a
    transcript that reads unfinished waits the unfinished delay; the detector's "done" or
    a whole question or a confident FAQ match gets the short delay; else the long one."""
    wait = max(q.v1_s, _transcript_wait(q))
    if looks_unfinished(q.text):
        return max(long, UNFINISHED_DELAY), wait
    if q.v1 >= q.v1_threshold:
        return short, wait
    if q.faq_score >= EARLY_TURN_SCORE or reads_as_question(q.text):
        return short, wait
    return long, wait


SURE_V1 = 0.6  # v1-mini's probability above which words+audio trusts it (its own: 0.36)


def words_audio(q: Quiet, short: float, long: float) -> tuple[float, float]:
    """Words that read unfinished first, then both audio models together.

    - unfinished words ("... and", "um", "my question is") wait the unfinished delay;
    - v1-mini sure (>= 0.6, not its own 0.36) and Smart Turn agreeing: the short delay;
    - v1-mini over its own threshold only: halfway between the delays;
    - otherwise the long delay.
    A question mark and the FAQ match are not used: on this set Whisper closes a fifth of
    the fragments before a pause with "?" ("Can I book a cleaning for next?"), and the
    curve was better without them (measured, RESULTS "The turn-taking bench").
    """
    wait = max(q.v1_s, q.smart_s, _transcript_wait(q))
    if looks_unfinished(q.text):
        return max(long, UNFINISHED_DELAY), wait
    if q.v1 >= SURE_V1 and q.smart > 0.5:
        return short, wait
    if q.v1 >= q.v1_threshold:
        return (short + long) / 2, wait
    return long, wait


def vad_only(q: Quiet, short: float, long: float) -> tuple[float, float]:
    return short, 0.0


STRATEGIES: dict[str, Strategy] = {
    "vad": vad_only,
    "v1-mini": v1_mini,
    "smart-turn": smart_turn,
    "today": today,
    "words+audio": words_audio,
}
DEFAULT = (0.25, 1.5)  # FIRSTWORD_MIN/MAX_ENDPOINTING_DELAY


@dataclass
class Point:
    strategy: str
    line: str
    short: float
    long: float
    paused_turns: int
    cut_offs: int
    waited: int
    undecided: int
    wait_p50_ms: float
    wait_p90_ms: float
    wait_max_ms: float

    @property
    def cut_off_pct(self) -> float:
        return 100.0 * self.cut_offs / max(1, self.paused_turns)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


CUT_OFF = "cut-off"


def decide(clip: ClipResult, strategy: Strategy, short: float, long: float) -> float | str | None:
    """The caller's wait in seconds (negative: decided during the last word's faint tail,
    which the VAD no longer counts as speech), `CUT_OFF`, or None if never decided."""
    for q in clip.quiets:
        delay, compute = strategy(q, short, long)
        decided = max(q.at, q.last_speech + delay) + compute
        if q.resumes_at is not None and decided >= q.resumes_at:
            continue  # the caller spoke again first
        return CUT_OFF if q.mid_turn else decided - clip.ends_at
    return None


def evaluate(results: list[ClipResult], name: str, line: str, short: float, long: float) -> Point:
    chosen = [r for r in results if line == "all" or r.line == line]
    waits: list[float] = []
    cut_offs = undecided = 0
    for clip in chosen:
        outcome = decide(clip, STRATEGIES[name], short, long)
        if outcome is None:
            undecided += 1
        elif outcome == CUT_OFF:
            cut_offs += 1
        else:
            waits.append(float(outcome) * 1000)
    return Point(
        name,
        line,
        short,
        long,
        sum(1 for r in chosen if r.kind in PAUSED_KINDS),
        cut_offs,
        len(waits),
        undecided,
        _pct(waits, 0.5),
        _pct(waits, 0.9),
        max(waits, default=0.0),
    )


def grid(name: str) -> list[tuple[float, float]]:
    if name == "vad":
        return [(d, d) for d in VAD_ONLY]
    return [(s, g) for s in SHORT for g in LONG if g >= s]


def _plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, line in zip(axes, ("clean", "telephone"), strict=True):
        for name in STRATEGIES:
            mine = [p for p in points if p.strategy == name and p.line == line]
            front = _frontier(mine)
            ax.plot(
                [p.wait_p90_ms for p in front],
                [p.cut_off_pct for p in front],
                marker="o",
                label=name,
            )
            for p in mine:
                if (p.short, p.long) == DEFAULT and name != "vad":
                    ax.plot(p.wait_p90_ms, p.cut_off_pct, marker="*", markersize=14, color="k")
        ax.set_title(f"{line}: false cut-offs against the wait (p90); * = 0.25 s / 1.5 s")
        ax.set_xlabel("wait after the last word, p90 (ms)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("false cut-offs, % of turns with a pause")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _frontier(points: list[Point]) -> list[Point]:
    """The points no other point beats on both cut-offs and wait p90 (the curve)."""
    best: list[Point] = []
    for p in sorted(points, key=lambda p: (p.wait_p90_ms, p.cut_off_pct)):
        if not best or p.cut_off_pct < best[-1].cut_off_pct:
            best.append(p)
    return best


def report(results: list[ClipResult], out: Path) -> list[Point]:
    points = [
        evaluate(results, name, line, short, long)
        for name in STRATEGIES
        for line in ("clean", "telephone", "all")
        for short, long in grid(name)
    ]
    print(
        f"\n{len(results)} clips ({sum(r.kind in PAUSED_KINDS for r in results)} with a pause)."
        " Cut-offs: % of the turns with a pause; wait: last word -> turn decided, ms."
    )
    print("\nAt the defaults (short 0.25 s, long 1.5 s; vad: 0.25 s and 1.5 s):")
    header = f"{'strategy':12} {'line':9} {'short':>5} {'long':>5} {'cut-offs':>12}"
    header += f" {'p50':>6} {'p90':>6} {'max':>6} {'undecided':>9}"
    print(header)
    for p in points:
        if (p.short, p.long) == DEFAULT or (p.strategy == "vad" and p.short in (0.25, 1.5)):
            print(_row(p))
    print("\nThe curve (best points: no other point has fewer cut-offs at a lower p90), all audio:")
    print(header)
    for name in STRATEGIES:
        for p in _frontier([p for p in points if p.strategy == name and p.line == "all"]):
            print(_row(p))
    out.mkdir(parents=True, exist_ok=True)
    (out / "turns.json").write_text(
        json.dumps(
            {
                "points": [asdict(p) | {"cut_off_pct": p.cut_off_pct} for p in points],
                "clips": [asdict(r) for r in results],
            },
            indent=1,
        )
    )
    _plot(points, out / "turns.png")
    print(f"\nwrote {out / 'turns.json'} and {out / 'turns.png'}")
    return points


def _row(p: Point) -> str:
    cut = f"{p.cut_offs}/{p.paused_turns} {p.cut_off_pct:4.1f}%"
    return (
        f"{p.strategy:12} {p.line:9} {p.short:5.2f} {p.long:5.2f} {cut:>12}"
        f" {p.wait_p50_ms:6.0f} {p.wait_p90_ms:6.0f} {p.wait_max_ms:6.0f} {p.undecided:9d}"
    )


def _summaries(results: list[ClipResult]) -> None:
    """The models' own timings, so the compute each strategy adds is on record."""
    quiets = [q for r in results for q in r.quiets]
    for label, values in (
        ("whisper", [q.stt_s for q in quiets]),
        ("v1-mini", [q.v1_s for q in quiets]),
        ("smart-turn", [q.smart_s for q in quiets]),
    ):
        ms = [v * 1000 for v in values]
        print(
            f"  {label:10} per prediction: p50 {statistics.median(ms):.0f} ms,"
            f" p90 {_pct(ms, 0.9):.0f} ms ({len(ms)} predictions)"
        )


async def _main(args: argparse.Namespace) -> None:
    cache = args.out / "measured.json"
    if args.reuse and cache.exists():
        raw = json.loads(cache.read_text())
        results = [ClipResult(**{**r, "quiets": [Quiet(**q) for q in r["quiets"]]}) for r in raw]
    else:
        from livekit.agents import inference
        from livekit.plugins import silero

        from agent.accounts import load_accounts
        from agent.engines.embedder import load_embedder
        from agent.engines.faq_llm import FaqIndex, FaqLLM
        from agent.engines.whisper_stt import WhisperSTT, load_whisper
        from agent.settings import get_settings

        from .turn_set import load_voices, render_set

        settings = get_settings()
        clips = list(render_set(load_voices(args.voices)))
        print(f"rendered {len(clips)} clips", file=sys.stderr)
        whisper = WhisperSTT(load_whisper(None, threads=2, verify=True))
        embedder = load_embedder(None, verify=True)
        registry = load_accounts(ROOT / "config" / "accounts", "harbor-dental")
        matchers = {
            a: FaqLLM(
                registry.accounts[a],
                FaqIndex(embedder, list(registry.accounts[a].faqs)),
                min_score=settings.faq_min_score,
            )
            for a in {c.account for c in clips}
        }
        vad = silero.VAD.load(
            min_silence_duration=settings.vad_min_silence,
            max_buffered_speech=settings.vad_max_speech,
        )
        detector = inference.TurnDetector(version="v1-mini")
        results = await measure(clips, whisper, matchers, vad, detector, SmartTurn())
        args.out.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([asdict(r) for r in results]))
    _summaries(results)
    report(results, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", default="hibari,piper")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "turn-bench")
    parser.add_argument(
        "--reuse", action="store_true", help="the measurements of the last run, strategies again"
    )
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
