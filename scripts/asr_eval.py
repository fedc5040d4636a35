"""Recognition accuracy and latency of the Whisper paths, side by side.

    .venv/bin/python scripts/asr_eval.py [--mode short --mode full] [--threads 2]

Renders the labelled questions of `caller/clips.py` with hibari and Piper, clean and
through a telephone line, transcribes each clip with every mode, and prints the word error
rate and the per-utterance latency (p50/p90/max) per mode and line, then the clips a mode
got wrong. Timings are of `WhisperSTT.transcribe_pcm`, the call the agent makes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.engines.local_tts import load_hibari, load_piper
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from caller.clips import render_clips, word_errors


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", action="append", choices=["short", "full"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    modes = args.mode or ["short", "full"]
    stt = WhisperSTT(load_whisper(None, threads=args.threads, verify=True))
    voices = [load_hibari(threads=args.threads, verify=True)]
    voices.append(load_piper(None, threads=args.threads, verify=True))
    clips = list(render_clips(voices))
    # One untimed run per mode, so neither pays the first run's set-up.
    for mode in modes:
        stt.transcribe_pcm(clips[0].audio, clips[0].sample_rate, "en", mode=mode)

    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    wrong: list[str] = []
    for clip in clips:
        for mode in modes:
            start = time.perf_counter()
            text = stt.transcribe_pcm(clip.audio, clip.sample_rate, "en", mode=mode)
            elapsed = time.perf_counter() - start
            errors, words = word_errors(clip.text, text)
            for line in (clip.line, "all"):
                row = rows.setdefault((mode, line), {"ms": [], "err": [], "words": []})
                row["ms"].append(elapsed * 1000)
                row["err"].append(errors)
                row["words"].append(words)
            if errors:
                wrong.append(f"  {mode:5} {clip.line:9} {clip.voice:12} {clip.text!r} -> {text!r}")

    print(f"{len(clips)} clips ({len(clips) // 2} clean, {len(clips) // 2} telephone)")
    print("\n| mode | line | WER | p50 ms | p90 ms | max ms | mean ms |")
    print("|---|---|---|---|---|---|---|")
    for line in ("clean", "telephone", "all"):
        for mode in modes:
            row = rows[(mode, line)]
            wer = 100 * sum(row["err"]) / sum(row["words"])
            ms = row["ms"]
            print(
                f"| {mode} | {line} | {wer:.1f} % | {_pct(ms, 0.5):.0f} | {_pct(ms, 0.9):.0f} "
                f"| {max(ms):.0f} | {statistics.mean(ms):.0f} |"
            )
    if len(modes) == 2:
        a, b = (statistics.median(rows[(m, "all")]["ms"]) for m in modes)
        print(f"\np50 {modes[0]} / {modes[1]}: {a / b:.2f}")
    print(f"short-window fallbacks to the full window: {stt.fallbacks}")
    print("\nclips with errors:")
    print("\n".join(wrong) or "  none")


if __name__ == "__main__":
    main()
