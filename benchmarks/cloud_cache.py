"""Answer latency on the cloud stand-ins with the response and cloud-voice caches off and on.

Each mode gets a fresh worker with no cloud audio cached yet (memory or disk), and the
caller simulator asks the same questions in every call (measured from the last frame of
each question to the first audible frame of the answer):

- miss: `FIRSTWORD_RESPONSE_CACHE=false`, `FIRSTWORD_CLOUD_VOICE_CACHE=false`: every answer
  goes to Gemini and every sentence to ElevenLabs;
- miss-voice: `FIRSTWORD_RESPONSE_CACHE=false` only (what a `cloud-miss` run measures once
  the answers' sentences were spoken before): Gemini every time, the voice from the cache;
- hit: both caches on; one unmeasured call first asks the questions once, then every
  measured answer is a response-cache hit played from the voice cache.

    python -m benchmarks.cloud_cache [--calls 3] [--stt 0.3] [--llm 0.4] [--tts 0.15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.engines.local_tts import load_hibari
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import PROJECT_ROOT
from benchmarks.failover import QUESTIONS, _accounts, _stats, _worker, turn_latencies_ms
from benchmarks.stats import shown
from standins import start_standins

MODES: dict[str, dict[str, str]] = {
    "miss": {"FIRSTWORD_RESPONSE_CACHE": "false", "FIRSTWORD_CLOUD_VOICE_CACHE": "false"},
    "miss-voice": {"FIRSTWORD_RESPONSE_CACHE": "false", "FIRSTWORD_CLOUD_VOICE_CACHE": "true"},
    "hit": {"FIRSTWORD_RESPONSE_CACHE": "true", "FIRSTWORD_CLOUD_VOICE_CACHE": "true"},
}


def _calls(env: dict[str, str], runs: int, report: Path) -> list[float | None]:
    args = [sys.executable, "-m", "caller", "--account", "harbor-dental", "--quiet"]
    args += ["--runs", str(runs), "--json", str(report), "--no-record"]
    for q in QUESTIONS:
        args += ["--question", q]
    subprocess.run(args, cwd=PROJECT_ROOT, env=env, check=True, timeout=900)
    return turn_latencies_ms(json.loads(report.read_text()))


def _mode(name: str, calls: int, env: dict[str, str], out: Path) -> list[float | None]:
    # One cache folder (the greetings are rendered once), the cloud voices' part emptied.
    cache = out / "cache"
    shutil.rmtree(cache / "voices", ignore_errors=True)
    env = {**env, **MODES[name], "FIRSTWORD_CACHE_DIR": str(cache)}
    proc = _worker(env, out / f"{name}.worker.log")
    try:
        # Every mode hears the questions once unmeasured: the same warm-up for all three.
        _calls(env, 1, out / f"{name}.warmup.json")
        return _calls(env, calls, out / f"{name}.calls.json")
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3, help="measured calls per mode (3 turns)")
    parser.add_argument("--stt", type=float, default=0.3, help="Google STT latency, s")
    parser.add_argument("--llm", type=float, default=0.4, help="Gemini first-token latency, s")
    parser.add_argument("--tts", type=float, default=0.15, help="ElevenLabs first-byte latency, s")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    out = PROJECT_ROOT / ".cache" / "bench" / f"cloud-cache-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    hibari = load_hibari(threads=1, verify=False)
    whisper = WhisperSTT(load_whisper(None, threads=1, verify=False))
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as accounts,
        start_standins(
            render=hibari.render,
            rate=hibari.sample_rate,
            transcribe=lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en"),
        ) as standins,
    ):
        _accounts(Path(accounts))
        env = {
            **os.environ,
            **standins.env(),
            "FIRSTWORD_ACCOUNTS_DIR": accounts,
            "FIRSTWORD_HTTP_PORT": "0",
            "FIRSTWORD_METRICS_PORT": "-1",
            "FIRSTWORD_ANSWER_AUDIO_CACHE": "false",  # the local voice's answers: unused here
        }
        for name in args.modes.split(","):
            standins.all_healthy(stt=args.stt, llm=args.llm, tts=args.tts)
            print(f"== {name}", flush=True)
            asked = len(standins.gemini.requests)
            latencies = _mode(name, args.calls, env, out)
            results[name] = {
                **_stats(latencies),
                "gemini_requests": len(standins.gemini.requests) - asked,
                "samples_ms": [None if v is None else round(v) for v in latencies],
            }
    (out / "cloud_cache.json").write_text(json.dumps(results, indent=2))
    miss = results.get("miss", {}).get("p50")
    print(f"\nanswer latency, ms (end of caller speech -> first audible answer); {out}")
    print("| mode | n | unanswered | p50 | p90 | p99 | max | p50 / miss | Gemini requests |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = f"{r['p50'] / miss:.2f}" if miss and r["p50"] is not None else "-"
        print(
            f"| {name} | {r['n']} | {r['unanswered']} | {r['p50']} | {r['p90']} "
            f"| {shown(r['p99'])} | {r['max']} "
            f"| {ratio} "
            f"| {r['gemini_requests']} |"
        )


if __name__ == "__main__":
    main()
