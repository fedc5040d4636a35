"""Answer latency on cloud engines, healthy and with the primary providers failing.

Starts the loopback stand-ins with the providers' typical latencies (configurable), then
for each scenario a fresh worker (so breakers start closed) and the caller simulator, which
measures from the last frame of each question leaving its microphone to the first audible
frame of the answer. Scenarios:

- local: the same account on the local engines only (the reference of this run);
- cloud: Google STT, Gemini and ElevenLabs via the stand-ins, all healthy;
- errors: every primary answers 503 (each call falls back; the breakers open);
- hang: every primary accepts and never answers (timeouts, then the breakers open).

Each cloud scenario runs in two modes, side by side in one invocation: `before`, hedging
off (FIRSTWORD_HEDGE_AFTER_STT/_LLM/_TTS=0: a late step waits out its timeout), and
`after`, hedging on (the settings' thresholds: the local engine races a late step).

    python -m benchmarks.failover [--calls 3] [--stt 0.3] [--llm 0.4] [--tts 0.15]
                                  [--modes before,after] [--scenarios local,cloud,errors,hang]
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

import yaml

from agent.accounts import load_accounts
from agent.accounts.models import CloudLLM, CloudSTT, CloudTTS, Providers
from agent.engines.local_tts import load_hibari
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import PROJECT_ROOT
from benchmarks.stats import percentiles, shown
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


def _scenario(
    name: str, account: str, calls: int, env: dict[str, str], out: Path
) -> list[float | None]:
    proc = _worker(env, out / f"{name}.worker.log")
    try:
        report = out / f"{name}.calls.json"
        args = [sys.executable, "-m", "caller", "--account", account, "--quiet"]
        args += ["--runs", str(calls), "--json", str(report), "--no-record"]
        for q in QUESTIONS:
            args += ["--question", q]
        subprocess.run(args, cwd=PROJECT_ROOT, env=env, check=True, timeout=600)
        data = json.loads(report.read_text())
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    return turn_latencies_ms(data)


def turn_latencies_ms(data: dict[str, Any]) -> list[float | None]:
    """Each asked turn's answer latency from a simulator report; None: never answered."""
    return [
        t["latency_s"] * 1000 if t["latency_s"] else None for c in data["calls"] for t in c["turns"]
    ]


def _stats(values: list[float | None]) -> dict[str, Any]:
    """Percentiles of the answered turns, and how many turns went unanswered (counted, not
    dropped: a mode that answers fewer turns must not look faster for it)."""
    answered = [v for v in values if v is not None]
    return {**percentiles(answered), "unanswered": len(values) - len(answered)}


def _configure(standins: Standins, name: str, args: argparse.Namespace) -> None:
    standins.all_healthy(stt=args.stt, llm=args.llm, tts=args.tts)
    for server in (standins.speech, standins.gemini, standins.elevenlabs):
        if name == "errors":
            server.faults.error = 503
        elif name == "hang":
            server.faults.hang = True


# Hedging off: every threshold 0 (the guards then wait for the cloud up to its timeout).
HEDGING_OFF = {f"FIRSTWORD_HEDGE_AFTER_{step}": "0" for step in ("STT", "LLM", "TTS")}
MODES = {"before": HEDGING_OFF, "after": {}}
# A hang may add this much to an answer, against the healthy cloud (issue 9).
HANG_BUDGET_MS = 1000


def _runs(scenarios: list[str], modes: list[str]) -> list[tuple[str, str]]:
    """(scenario, mode) pairs: the local engines once (they are never hedged)."""
    runs = [("local", "-")] if "local" in scenarios else []
    return runs + [(name, mode) for name in scenarios if name != "local" for mode in modes]


def _ratio(after: int | None, before: int | None) -> str:
    return f"{after / before:.2f}" if after is not None and before else "-"


def _report(results: dict[str, dict[str, Any]], modes: list[str]) -> None:
    print(
        "| scenario | mode | n | unanswered | p50 | p90 | p99 | max "
        "| p50 − cloud healthy | p90 − cloud healthy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, r in results.items():
        name, mode = key.split("/")
        healthy = results.get(f"cloud/{mode}") or results.get("cloud/after") or {}
        d50 = f"{r['p50'] - healthy['p50']:+d}" if healthy else "-"
        d90 = f"{r['p90'] - healthy['p90']:+d}" if healthy else "-"
        print(
            f"| {name} | {mode} | {r['n']} | {r['unanswered']} | {r['p50']} | {r['p90']} "
            f"| {shown(r['p99'])} "
            f"| {r['max']} "
            f"| {d50} | {d90} |"
        )
    if {"before", "after"} <= set(modes):
        print("\nafter / before (hedging on / off):")
        print("| scenario | p50 | p90 | p99 |")
        print("|---|---|---|---|")
        for name in dict.fromkeys(k.split("/")[0] for k in results):
            before, after = results.get(f"{name}/before"), results.get(f"{name}/after")
            if before and after:
                ratios = [_ratio(after[q], before[q]) for q in ("p50", "p90", "p99")]
                print(f"| {name} | {' | '.join(ratios)} |")
    for mode in modes:
        hang, base = results.get(f"hang/{mode}"), results.get(f"cloud/{mode}")
        if hang and base:
            if hang["p90"] is None or base["p90"] is None:
                print(f"hang, {mode}: no answer to compare")
                continue
            added = {
                q: f"{hang[q] - base[q]:+d}" if hang[q] is not None and base[q] is not None else "-"
                for q in ("p50", "p90", "p99")
            }
            verdict = "within" if hang["p90"] - base["p90"] <= HANG_BUDGET_MS else "OVER"
            print(
                f"hang, {mode}: adds p50 {added['p50']} / p90 {added['p90']} / "
                f"p99 {added['p99']} ms to an answer vs the healthy cloud "
                f"(p90 {verdict} the {HANG_BUDGET_MS} ms budget)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3, help="calls per scenario (3 turns each)")
    parser.add_argument("--stt", type=float, default=0.3, help="Google STT latency, s")
    parser.add_argument("--llm", type=float, default=0.4, help="Gemini first-token latency, s")
    parser.add_argument("--tts", type=float, default=0.15, help="ElevenLabs first-byte latency, s")
    parser.add_argument("--scenarios", default="local,cloud,errors,hang")
    parser.add_argument(
        "--modes", default="before,after", help="before: hedging off; after: hedging on"
    )
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"--modes: unknown {sorted(unknown)}; choose from {sorted(MODES)}")
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
        for name, mode in _runs(args.scenarios.split(","), modes):
            _configure(standins, name, args)
            account = "harbor-local" if name == "local" else "harbor-dental"
            print(f"== {name} ({mode})", flush=True)
            run_env = {**env, **MODES.get(mode, {})}
            latencies = _scenario(f"{name}-{mode}", account, args.calls, run_env, out)
            results[f"{name}/{mode}"] = {
                **_stats(latencies),
                "samples_ms": [None if v is None else round(v) for v in latencies],
            }
    (out / "failover.json").write_text(json.dumps(results, indent=2))
    print(f"\nanswer latency, ms (end of caller speech -> first audible answer); {out}")
    _report(results, modes)


if __name__ == "__main__":
    main()
