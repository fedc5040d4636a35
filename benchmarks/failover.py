"""Answer latency on cloud engines, healthy and with the primary providers failing.

Starts the loopback stand-ins with the providers' typical latencies (configurable), then
for each scenario a fresh worker (so breakers start closed) and the caller simulator, which
measures from the last frame of each question leaving its microphone to the first audible
frame of the answer. Scenarios:

- local: the same account on the local engines only (the reference of this run);
- cloud: Google STT, Gemini and ElevenLabs via the stand-ins, all healthy;
- errors: every primary answers 503 (each call falls back; the breakers open);
- hang: every primary accepts and never answers (timeouts, then the breakers open).

    python -m benchmarks.failover [--calls 3] [--stt 0.3] [--llm 0.4] [--tts 0.15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agent.accounts import load_accounts
from agent.accounts.models import CloudLLM, CloudSTT, CloudTTS, Providers
from agent.engines.local_tts import load_hibari
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import PROJECT_ROOT
from standins import Standins, start_standins

QUESTIONS = [
    "How much does a teeth cleaning cost?",
    "What are your opening hours?",
    "Do you take new patients?",
]


def _accounts(folder: Path) -> None:
    base = load_accounts(PROJECT_ROOT / "config" / "accounts", "harbor-dental").accounts[
        "harbor-dental"
    ]
    cloud = base.model_copy(
        update={
            "providers": Providers(
                stt=[CloudSTT(engine="google")],
                llm=[CloudLLM(engine="gemini")],
                tts=[CloudTTS(engine="elevenlabs", voice="bench")],
            )
        }
    )
    local = base.model_copy(update={"id": "harbor-local"})
    for account in (cloud, local):
        (folder / f"{account.id}.yaml").write_text(yaml.safe_dump(account.model_dump(mode="json")))


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "agent.py", "start"], cwd=PROJECT_ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while '"registered worker"' not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {log}")
        time.sleep(0.2)
    return proc


def _scenario(name: str, account: str, calls: int, env: dict[str, str], out: Path) -> list[float]:
    proc = _worker(env, out / f"{name}.worker.log")
    try:
        report = out / f"{name}.calls.json"
        args = [sys.executable, "-m", "agent.caller", "--account", account, "--quiet"]
        args += ["--runs", str(calls), "--json", str(report), "--no-record"]
        for q in QUESTIONS:
            args += ["--question", q]
        subprocess.run(args, cwd=PROJECT_ROOT, env=env, check=True, timeout=600)
        data = json.loads(report.read_text())
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    return [t["latency_s"] * 1000 for c in data["calls"] for t in c["turns"] if t["latency_s"]]


def _stats(values: list[float]) -> dict[str, Any]:
    arr = np.array(values) if values else np.array([np.nan])
    return {
        "n": len(values),
        **{f"p{q}": round(float(np.percentile(arr, q))) for q in (50, 90, 99)},
        "max": round(float(arr.max())),
    }


def _configure(standins: Standins, name: str, args: argparse.Namespace) -> None:
    standins.all_healthy(stt=args.stt, llm=args.llm, tts=args.tts)
    for server in (standins.speech, standins.gemini, standins.elevenlabs):
        if name == "errors":
            server.faults.error = 503
        elif name == "hang":
            server.faults.hang = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3, help="calls per scenario (3 turns each)")
    parser.add_argument("--stt", type=float, default=0.3, help="Google STT latency, s")
    parser.add_argument("--llm", type=float, default=0.4, help="Gemini first-token latency, s")
    parser.add_argument("--tts", type=float, default=0.15, help="ElevenLabs first-byte latency, s")
    parser.add_argument("--scenarios", default="local,cloud,errors,hang")
    args = parser.parse_args()
    out = PROJECT_ROOT / ".cache" / "bench" / f"failover-{time.strftime('%Y%m%d-%H%M%S')}"
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
        }
        for name in args.scenarios.split(","):
            _configure(standins, name, args)
            account = "harbor-local" if name == "local" else "harbor-dental"
            print(f"== {name}", flush=True)
            latencies = _scenario(name, account, args.calls, env, out)
            results[name] = {**_stats(latencies), "samples_ms": [round(v) for v in latencies]}
    (out / "failover.json").write_text(json.dumps(results, indent=2))
    healthy = results.get("cloud", {}).get("p50")
    print(f"\nanswer latency, ms (end of caller speech -> first audible answer); {out}")
    print("| scenario | n | p50 | p90 | p99 | max | p50 - cloud healthy |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        delta = f"{r['p50'] - healthy:+d}" if healthy is not None else "-"
        print(
            f"| {name} | {r['n']} | {r['p50']} | {r['p90']} | {r['p99']} | {r['max']} | {delta} |"
        )


if __name__ == "__main__":
    main()
