"""Answer latency and accuracy, the pipeline before issue 10 and after it, side by side.

    python -m benchmarks.answers [--modes before,after,...] [--per-call 8] [--out DIR]

For each worker configuration in turn it starts `python agent.py start` with that
configuration's environment, then calls it, one call at a time, with the caller simulator
(in this process: Piper speaks the questions, Whisper transcribes the answers), which measures
from the last frame of each question leaving its microphone to the first audible frame of the
answer. Modes (a worker configuration x a line x a question set):

- `before`, `before-phone`: the pipeline as it was (Whisper on the full 30 s window, VAD
  silence 0.35 s, endpointing 0.4/1.5 s, answers synthesised when asked, no speculative
  recognition, no early end of turn on a match or a whole question), on clean and on
  telephone audio (`--telephone`);
- `after`, `after-phone`: this worktree's defaults;
- `before-paused`, `after-paused`, `...-paused-phone`: questions with a 0.5-1.2 s pause in
  the middle ("I'd like to know ... how much a cleaning costs"); a turn where the agent is
  heard before the question is over counts as a cut-off;
- `after-threads1`: `after` with FIRSTWORD_INFERENCE_THREADS=1 (Whisper, the voices and the
  embedder on one thread each, against 2: on 2 busy cores a 2-thread run can wait on its
  slower half);
- `after-uvloop`: `after` with uvloop's event loop policy on every loop of the worker
  (`benchmarks/uvloop_worker.py`; needs uvloop importable, e.g. PYTHONPATH=.cache/uvloop);
- `cloud-miss`, `cloud-hit`: both accounts on Google STT, Gemini and ElevenLabs through the
  loopback stand-ins at typical latencies (STT 300 ms, first token 400 ms, first byte
  150 ms); miss: each question once with FIRSTWORD_RESPONSE_CACHE=false; hit: each question
  twice with it true, the second ask counted; each cloud worker gets stand-ins of its own, so
  no mode hears sentences an earlier one left in the cloud voices' cache; a variant named
  `cloud-miss-...` or `cloud-hit-...` is one of these with its settings;
- `--variant NAME:K=V,...`: a worker configuration of your own, `after` with those settings,
  asked in modes `NAME`, `NAME-phone`, `NAME-paused`, `NAME-paused-phone` (list them in
  `--modes`) and compared with the matching `after` mode (a sweep of one setting);
- `--noise-floor DBFS`: every caller's microphone sends noise at that level between
  utterances instead of digital silence (a real line's floor; the turn detector hears the
  difference, RESULTS "The turn-taking bench");
- `cloud-miss-before`, `cloud-hit-before`: the same with FIRSTWORD_EARLY_TURN_SCORE=0, as
  cloud turns were before the FAQ match decided them (every turn the detector is unsure of
  waits the full max_delay).

Accuracy: each answer, as the caller heard it (Whisper), is matched to the closest of the
account's stored answers and its handoff phrase; right when that is the question's label.
The per-stage breakdown is the median of the worker's `turn timeline` lines of each mode.
Results go to `.cache/bench/answers-<time>/` (JSON, CSV of every turn, worker logs).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agent.accounts import AccountRegistry, load_accounts
from agent.accounts.models import CloudLLM, CloudSTT, CloudTTS, Providers
from agent.call.turns import STAGES
from agent.engines.local_tts import LocalTTS, load_hibari, load_piper
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import PROJECT_ROOT, Settings
from benchmarks.stats import percentiles, shown
from caller.paused import paused_question
from caller.simulator import CallOptions, Question, run_call
from caller.telephone import telephone

HANDOFF = "handoff"
# Said over an answer (issue 25 item 4): what must stop the agent, and what must not. Each
# call takes the next of its kind, in the next caller voice (Piper, then hibari).
INTERRUPTIONS = (
    "Wait, wait, hold on a second.",
    "Sorry, can I ask something else?",
    "No, that's not what I asked.",
    "Actually, I need to book an appointment.",
)
BACKCHANNELS = ("Mm-hmm.", COUGH := "(cough)", "Okay.", "Right.", "Yeah.", "Uh-huh.", "I see.")
# An agent silent this soon after the caller's word was stopped by it (answers run 4-9 s).
STOPPED_WITHIN_MS = 1500
# Agent silence that ends an answer, before the next question is asked. Longer than any pause
# inside a stored answer: the hibari voice leaves 0.86 s between two sentences (measured at
# -45 dBFS), so at 0.9 s the bench asked the next question into the middle of a two-sentence
# answer, and counted the answer's second sentence as the caller being cut off.
ANSWER_END_SILENCE_S = 1.5


@dataclass(frozen=True)
class Labelled:
    account: str
    text: str
    expected: str  # FAQ id, or "handoff"
    # A paused question: `text` is said, then `pause_s` of silence, then `rest`.
    rest: str = ""
    pause_s: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.text} ... {self.rest}" if self.rest else self.text


def _q(account: str, text: str, expected: str) -> Labelled:
    return Labelled(account, text, expected)


# Prices, times and phone numbers, and wordings the accounts' FAQs do not list.
QUESTIONS: tuple[Labelled, ...] = (
    _q("harbor-dental", "Hi, what time do you open on Saturdays?", "hours"),
    _q("harbor-dental", "How much does a teeth cleaning cost?", "cleaning-price"),
    _q("harbor-dental", "Do you take Delta Dental insurance?", "insurance"),
    _q("harbor-dental", "Is there parking near your office?", "location"),
    _q("harbor-dental", "Is a checkup still 120 dollars?", "cleaning-price"),
    _q("harbor-dental", "Are you open at 7:45 in the morning?", "hours"),
    _q("harbor-dental", "I chipped a tooth, can someone see me today?", "emergency"),
    _q("harbor-dental", "Can my daughter sign up as a new patient?", "new-patients"),
    _q("harbor-dental", "What's the street address of the clinic?", "location"),
    _q("harbor-dental", "Do you sell concert tickets?", HANDOFF),
    _q("harbor-dental", "My number is 503-555-0142, can you call me back?", HANDOFF),
    _q("harbor-dental", "Are you open on Sunday at 10?", "hours"),
    _q(
        "harbor-dental", "I paid $89.99 for a cleaning last time, what is it now?", "cleaning-price"
    ),
    _q("harbor-dental", "Can I get my car washed there?", HANDOFF),
    _q("harbor-dental", "Do you accept MetLife or Cigna?", "insurance"),
    _q("harbor-dental", "Please call me at 415-555-0199 after 6 pm.", HANDOFF),
    _q("bluebird-bikes", "How much is it to rent an electric bike for a day?", "rentals"),
    _q("bluebird-bikes", "Can you fix a flat tire while I wait?", "tune-up"),
    _q("bluebird-bikes", "What time do you close on Sundays?", "hours"),
    _q("bluebird-bikes", "Where is your shop?", "location"),
    _q("bluebird-bikes", "Can you fix my car engine?", HANDOFF),
    _q("bluebird-bikes", "How much is a tune-up, is it still 65 dollars?", "tune-up"),
    _q("bluebird-bikes", "Do you rent city bikes for 25 dollars?", "rentals"),
    _q("bluebird-bikes", "Are you near the train station?", "location"),
    _q("bluebird-bikes", "Are you open at 9:30 in the morning?", "hours"),
    _q("bluebird-bikes", "Do you sell kayaks?", HANDOFF),
    _q("bluebird-bikes", "Does a rental come with a helmet?", "rentals"),
    _q("bluebird-bikes", "My brakes squeak, how much for a service?", "tune-up"),
    _q("bluebird-bikes", "Can I speak to the owner about a job?", HANDOFF),
    _q("bluebird-bikes", "Is the shop open at 6 pm on a Tuesday?", "hours"),
    _q("bluebird-bikes", "How much would you charge to service my road bike?", "tune-up"),
    _q("bluebird-bikes", "Can I pay with bitcoin?", HANDOFF),
)

PAUSED: tuple[Labelled, ...] = (
    Labelled(
        "harbor-dental", "I'd like to know", "cleaning-price", "how much a cleaning costs.", 0.5
    ),
    Labelled(
        "harbor-dental", "Could you tell me", "hours", "what time you open on Saturdays?", 0.7
    ),
    Labelled("harbor-dental", "I was wondering if", "insurance", "you take Delta Dental.", 0.9),
    Labelled("harbor-dental", "So my question is", "location", "where your office is.", 1.2),
    Labelled("bluebird-bikes", "I'd like to know", "rentals", "what an electric bike costs.", 0.6),
    Labelled("bluebird-bikes", "Can you tell me", "hours", "when the shop closes on Sunday?", 0.8),
    Labelled("bluebird-bikes", "I wanted to ask", "tune-up", "how much a tune-up is.", 1.0),
    Labelled("bluebird-bikes", "Um, do you", "tune-up", "fix flat tires while I wait?", 1.2),
)

# The pipeline as it was before issue 10, by its settings.
BEFORE_ENV = {
    "FIRSTWORD_WHISPER_MODE": "full",
    "FIRSTWORD_VAD_MIN_SILENCE": "0.35",
    "FIRSTWORD_MIN_ENDPOINTING_DELAY": "0.4",
    "FIRSTWORD_MAX_ENDPOINTING_DELAY": "1.5",
    "FIRSTWORD_ANSWER_AUDIO_CACHE": "false",
    "FIRSTWORD_SPECULATIVE_STT": "false",
    "FIRSTWORD_EARLY_TURN_SCORE": "0",
    "FIRSTWORD_QUESTION_ENDS_TURN": "false",
    "FIRSTWORD_MIN_INTERRUPTION": "0.5",
    "FIRSTWORD_FALSE_INTERRUPTION_TIMEOUT": "2.0",
    "FIRSTWORD_BACKCHANNEL_FILTER": "false",
}


@dataclass(frozen=True)
class Mode:
    name: str
    worker: str  # which worker configuration serves it
    line: str  # "clean" or "telephone"
    paused: bool = False
    asks: int = 1  # cloud-hit asks every question twice and counts the second
    # Barge-in: one call per question; the caller says one of INTERRUPTIONS 0.8 s into the
    # answer, and the figure is its first word -> the agent's last audible frame.
    barge_in: bool = False
    # One of BACKCHANNELS instead: it should not stop the agent.
    backchannel: bool = False


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("before", "before", "clean"),
        Mode("before-phone", "before", "telephone"),
        Mode("before-paused", "before", "clean", paused=True),
        Mode("before-paused-phone", "before", "telephone", paused=True),
        Mode("after", "after", "clean"),
        Mode("after-phone", "after", "telephone"),
        Mode("after-paused", "after", "clean", paused=True),
        Mode("after-paused-phone", "after", "telephone", paused=True),
        Mode("before-barge-in", "before", "clean", barge_in=True),
        Mode("after-barge-in", "after", "clean", barge_in=True),
        Mode("before-backchannel", "before", "clean", barge_in=True, backchannel=True),
        Mode("after-backchannel", "after", "clean", barge_in=True, backchannel=True),
        Mode("after-barge-in-phone", "after", "telephone", barge_in=True),
        Mode("after-backchannel-phone", "after", "telephone", barge_in=True, backchannel=True),
        Mode("after-uvloop", "after-uvloop", "clean"),
        Mode("after-threads1", "after-threads1", "clean"),
        Mode("cloud-miss", "cloud-miss", "clean"),
        Mode("cloud-hit", "cloud-hit", "clean", asks=2),
        Mode("cloud-miss-before", "cloud-miss-before", "clean"),
        Mode("cloud-hit-before", "cloud-hit-before", "clean", asks=2),
    )
}
DEFAULT_MODES = ",".join(MODES)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def classify(heard: str, account: str, registry: AccountRegistry) -> str:
    """The stored answer (FAQ id, or "handoff") closest to what the caller heard."""
    acc = registry.accounts[account]
    candidates = {faq.id: faq.answer for faq in acc.faqs} | {HANDOFF: acc.handoff_phrase}
    words = _words(heard)
    if not words:
        return "(silence)"

    def overlap(text: str) -> float:
        theirs = _words(text)
        return len(words & theirs) / max(1, len(words | theirs))

    best = max(candidates, key=lambda key: overlap(candidates[key]))
    return best if overlap(candidates[best]) >= 0.2 else "(other)"


def render(voice: LocalTTS, item: Labelled, line: str, seed: int) -> Question:
    """The question as the caller says it (a paused one: see `caller/paused.py`)."""
    if item.rest:
        audio = paused_question(voice, item.text, item.rest, item.pause_s)
    else:
        audio = voice.render(item.text)
    if line == "telephone":
        audio = telephone(audio, voice.sample_rate, seed=seed)
    return Question(item.label, audio, voice.sample_rate)


def _cloud_accounts(folder: Path) -> None:
    registry = load_accounts(PROJECT_ROOT / "config" / "accounts", "harbor-dental")
    for account in registry.accounts.values():
        cloud = account.model_copy(
            update={
                "providers": Providers(
                    stt=[CloudSTT(engine="google")],
                    llm=[CloudLLM(engine="gemini")],
                    tts=[CloudTTS(engine="elevenlabs", voice="bench")],
                )
            }
        )
        (folder / f"{account.id}.yaml").write_text(yaml.safe_dump(cloud.model_dump(mode="json")))


@contextmanager
def worker(env: dict[str, str], log: Path, *, uvloop: bool = False) -> Iterator[None]:
    """A registered `agent.py start` worker, with its answers pre-rendered when it does that."""
    command = [sys.executable, "-m", "benchmarks.uvloop_worker"] if uvloop else [
        sys.executable, "agent.py"
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "start"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 240
        wanted = ['"registered worker"']
        if env.get("FIRSTWORD_ANSWER_AUDIO_CACHE", "true") != "false":
            wanted.append('"answers pre-rendered"')
        while not all(w in log.read_text(errors="replace") for w in wanted):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {log}")
            time.sleep(0.3)
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def turn_lines(log: Path) -> list[dict[str, float]]:
    """The `turn_ms` marks of every `turn timeline` line of a worker log."""
    marks = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"turn_ms"' in line:
            try:
                marks.append(json.loads(line)["turn_ms"])
            except (ValueError, KeyError):
                continue
    return marks


async def run_mode(
    mode: Mode,
    settings: Settings,
    voices: list[LocalTTS],
    whisper: WhisperSTT,
    registry: AccountRegistry,
    per_call: int,
    limit: int,
    part: tuple[int, int],
) -> list[dict[str, Any]]:
    """This round's share (`part`: index, rounds) of the mode's questions, asked and heard."""
    items = PAUSED if mode.paused else QUESTIONS
    voice = voices[0]  # the callers' voice; a barge-in's words alternate between all
    rows: list[dict[str, Any]] = []
    for account in dict.fromkeys(item.account for item in items):
        mine = [item for item in items if item.account == account][: limit or None]
        mine = mine[part[0] :: part[1]]
        for start in range(0, len(mine), per_call):
            batch = mine[start : start + per_call]
            questions = [
                await asyncio.to_thread(render, voice, item, mode.line, i)
                for i, item in enumerate(batch)
            ]
            asked = [q for q in questions for _ in range(mode.asks)]
            if mode.barge_in:
                indices = [items.index(item) for item in batch]
                rows += await _barge_in(
                    mode, settings, voices, whisper, registry, account, batch, questions, indices
                )
                continue
            report = await run_call(
                settings,
                asked,
                lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en") if audio.size else "",
                CallOptions(
                    account=account,
                    end_silence_s=ANSWER_END_SILENCE_S,
                    noise_floor_dbfs=NOISE_FLOOR.get("dbfs"),
                ),
            )
            for i, turn in enumerate(report.turns):
                if (i % mode.asks) != mode.asks - 1:
                    continue  # cloud-hit: the first ask fills the cache
                item = batch[i // mode.asks]
                heard = classify(turn.answer, account, registry)
                rows.append(
                    {
                        "mode": mode.name,
                        "account": account,
                        "question": item.label,
                        "expected": item.expected,
                        "heard": heard,
                        "right": heard == item.expected,
                        "latency_ms": None
                        if turn.latency_s is None
                        else round(turn.latency_s * 1000, 1),
                        "cut_off": turn.talked_over,
                        "answer": turn.answer,
                    }
                )
            print(
                f"  {mode.name} {account}: "
                + ", ".join(
                    f"{r['latency_ms']:.0f}" if r["latency_ms"] is not None else "-"
                    for r in rows[-len(batch) :]
                ),
                flush=True,
            )
    return rows


def cough(rate: int, seed: int) -> np.ndarray:
    """A cough-like burst (no voice renders one): 0.25 s of band-passed noise with a fast
    attack and a decay, at -12 dBFS peak."""
    rng = np.random.default_rng(seed)
    n = int(0.25 * rate)
    noise = rng.standard_normal(n + 64)
    burst = np.convolve(noise, np.hanning(64), mode="valid")[:n]  # a low-passed rasp
    envelope = np.minimum(np.arange(n) / (0.02 * rate), 1.0) * np.exp(-np.arange(n) / (0.08 * rate))
    out = burst * envelope
    return (0.25 * out / np.max(np.abs(out))).astype(np.float32)


def overlap_utterance(
    voices: list[LocalTTS], kind_backchannel: bool, line: str, index: int
) -> tuple[str, Question]:
    """The `index`-th utterance of the kind, in the next voice, on the mode's line."""
    said_set = BACKCHANNELS if kind_backchannel else INTERRUPTIONS
    said = said_set[index % len(said_set)]
    voice = voices[index % len(voices)]
    pad = np.zeros(int(0.1 * voice.sample_rate), dtype=np.float32)
    audio = cough(voice.sample_rate, index) if said == COUGH else voice.render(said)
    audio = np.concatenate([pad, audio, pad])
    if line == "telephone":
        audio = telephone(audio, voice.sample_rate, seed=index)
    return said, Question(said, audio, voice.sample_rate)


def barge_in_outcome(
    silent_ms: float | None, resumed_after_ms: float | None, heard_after: str, answer: str
) -> str:
    """What the caller heard the agent do: "went on" (no stop within STOPPED_WITHIN_MS),
    "resumed" (stopped, then its answer came back), or "stopped" (it did not come back,
    or something else came: a reply to what the caller said)."""
    if silent_ms is None or silent_ms >= STOPPED_WITHIN_MS:
        return "went on"
    heard = _words(heard_after)
    if resumed_after_ms is not None and heard and len(heard & _words(answer)) >= 0.6 * len(heard):
        return "resumed"
    return "stopped"


async def _barge_in(
    mode: Mode,
    settings: Settings,
    voices: list[LocalTTS],
    whisper: WhisperSTT,
    registry: AccountRegistry,
    account: str,
    batch: list[Labelled],
    questions: list[Question],
    indices: list[int],
) -> list[dict[str, Any]]:
    """One call per question; the caller says the next overlap 0.8 s into the answer."""
    answers = {faq.id: faq.answer for faq in registry.accounts[account].faqs}
    rows = []
    for index, item, question in zip(indices, batch, questions, strict=True):
        said, over = await asyncio.to_thread(
            overlap_utterance, voices, mode.backchannel, mode.line, index
        )
        report = await run_call(
            settings,
            [question],
            lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en") if audio.size else "",
            CallOptions(
                account=account,
                end_silence_s=ANSWER_END_SILENCE_S,
                barge_in=over,
                barge_in_after_s=0.8,
                noise_floor_dbfs=NOISE_FLOOR.get("dbfs"),
            ),
        )
        ms = None if report.barge_in_s is None else round(report.barge_in_s * 1000, 1)
        gap = None if report.resumed_after_s is None else round(report.resumed_after_s * 1000)
        outcome = barge_in_outcome(ms, gap, report.heard_after, answers.get(item.expected, ""))
        rows.append(
            {
                "mode": mode.name,
                "account": account,
                "question": f"{item.label} / {said}",
                "expected": item.expected,
                "heard": "(barge-in)",
                "right": None,
                "stopped": outcome == "stopped",
                "outcome": outcome,
                "gap_ms": gap,
                "heard_after": report.heard_after,
                # The barge-in time counts only where the agent did stop for it.
                "latency_ms": ms if outcome != "went on" else None,
                "cut_off": False,
                "answer": "",
            }
        )
        print(
            f"  {mode.name} {account}: {said!r} -> {outcome}, silent after {ms} ms, "
            f"back after {gap} ms: {report.heard_after[:60]!r}",
            flush=True,
        )
    return rows


def summarise(rows: list[dict[str, Any]], stages: list[dict[str, float]]) -> dict[str, Any]:
    # A cut-off turn's "latency" is measured from the end of a question already answered.
    latencies = [r["latency_ms"] for r in rows if r["latency_ms"] is not None and not r["cut_off"]]
    out = percentiles(latencies)
    out["asked"] = len(rows)
    out["unanswered"] = sum(r["latency_ms"] is None for r in rows)
    out["right"] = sum(bool(r["right"]) for r in rows)
    out["labelled"] = sum(r["right"] is not None for r in rows)
    out["cut_off"] = sum(r["cut_off"] for r in rows)
    out["stopped"] = sum(bool(r.get("stopped")) for r in rows)
    outcomes = [r["outcome"] for r in rows if "outcome" in r]
    if outcomes:
        out["barge_in"] = {
            "calls": len(outcomes),
            **{kind: outcomes.count(kind) for kind in ("went on", "resumed", "stopped")},
            "gap_ms": percentiles(
                [r["gap_ms"] for r in rows if r.get("outcome") == "resumed" and r["gap_ms"]]
            ),
        }
    out["stages_p50_ms"] = {
        stage: round(statistics.median(m[stage] for m in stages)) if stages else None
        for stage in STAGES
    }
    return out


def _table(results: dict[str, dict[str, Any]], variants: dict[str, dict[str, str]]) -> str:
    def ratio(name: str, key: str) -> str:
        variant = next((v for v in variants if name == v or name.startswith(f"{v}-")), None)
        if variant is not None:
            base = "after" + name[len(variant) :]
        elif name.startswith("before"):
            base = name  # the reference itself
        elif name in ("after-uvloop", "after-threads1"):
            base = "after"
        elif name.startswith("after-"):
            base = name.replace("after", "before", 1)
        else:
            base = "before"
        ours, theirs = results[name].get(key), results.get(base, {}).get(key)
        return f"{ours / theirs:.2f}" if ours and theirs else "-"

    lines = [
        "| mode | n | unanswered | p50 | p90 | p99 | ÷ before p50 | ÷ before p90 | right "
        "| cut off | agent stopped | transcript_final | turn_decided | answer_text | first_audio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s = r["stages_p50_ms"]
        lines.append(
            f"| {name} | {r['n']} | {r['unanswered']} | {r['p50']} | {r['p90']} "
            f"| {shown(r['p99'])} "
            f"| {ratio(name, 'p50')} "
            f"| {ratio(name, 'p90')} | {r['right']}/{r['labelled']} "
            f"| {r['cut_off']}/{r['asked']} | {r['stopped']}/{r['asked']} | "
            + " | ".join(str(s[stage]) for stage in STAGES)
            + " |"
        )
    return "\n".join(lines)


def _variants(specs: list[str]) -> dict[str, dict[str, str]]:
    """`--variant NAME:K=V,...` -> {NAME: env}; registers NAME's modes in MODES."""
    variants: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, _, pairs = spec.partition(":")
        if not name or name in MODES or "=" not in pairs:
            raise SystemExit(f"--variant {spec!r}: want NAME:K=V,... with a new NAME")
        variants[name] = dict(pair.split("=", 1) for pair in pairs.split(","))
        for suffix, line, paused in (
            ("", "clean", False),
            ("-phone", "telephone", False),
            ("-paused", "clean", True),
            ("-paused-phone", "telephone", True),
        ):
            MODES[name + suffix] = Mode(name + suffix, name, line, paused=paused)
        for suffix, line, backchannel in (
            ("-barge-in", "clean", False),
            ("-barge-in-phone", "telephone", False),
            ("-backchannel", "clean", True),
            ("-backchannel-phone", "telephone", True),
        ):
            MODES[name + suffix] = Mode(
                name + suffix, name, line, barge_in=True, backchannel=backchannel
            )
    return variants


# The callers' microphone between utterances (--noise-floor): set once from the command line
# for every mode of the run, so the modes stay comparable.
NOISE_FLOOR: dict[str, float] = {}


async def main_async(args: argparse.Namespace) -> None:
    if args.noise_floor is not None:
        NOISE_FLOOR["dbfs"] = args.noise_floor
    variants = _variants(args.variant)
    names = [n for n in args.modes.split(",") if n]
    if "after-uvloop" in names and importlib.util.find_spec("uvloop") is None:
        print("after-uvloop: skipped, uvloop is not importable (see benchmarks/uvloop_worker.py)")
        names.remove("after-uvloop")
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise SystemExit(f"--modes: unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    out = Path(args.out) if args.out else (
        PROJECT_ROOT / ".cache" / "bench" / f"answers-{time.strftime('%Y%m%d-%H%M%S')}"
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    registry = load_accounts(PROJECT_ROOT / "config" / "accounts", "harbor-dental")
    voices = [await asyncio.to_thread(load_piper, None, threads=1, verify=False)]
    if any(MODES[name].barge_in for name in names):
        voices.append(await asyncio.to_thread(load_hibari, threads=1, verify=False))
    whisper = WhisperSTT(await asyncio.to_thread(load_whisper, None, threads=1, verify=False))
    base_env = {
        **os.environ,
        "FIRSTWORD_HTTP_PORT": "0",
        "FIRSTWORD_HTTP_HOST": "127.0.0.1",
        "FIRSTWORD_METRICS_PORT": "-1",
        "FIRSTWORD_IDLE_PROCESSES": "1",
        "FIRSTWORD_PROVIDERS": "local",
    }
    extra = dict(pair.split("=", 1) for pair in args.after_env)
    rows_of: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    stages_of: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    by_worker: dict[str, list[Mode]] = {}
    for name in names:
        by_worker.setdefault(MODES[name].worker, []).append(MODES[name])
    standins: tuple[Any, Any] | None = None
    with tempfile.TemporaryDirectory() as cloud_dir:
        try:
            # Rounds: every worker configuration takes its turn in each, so that the shared
            # machine's load, which changes by the minute, falls on all modes alike.
            for round_index in range(args.rounds):
                for worker_name, modes in by_worker.items():
                    env = dict(base_env)
                    if worker_name == "before":
                        env.update(BEFORE_ENV)
                    else:
                        env.update(extra)
                    env.update(variants.get(worker_name, {}))
                    if worker_name == "after-threads1":
                        env["FIRSTWORD_INFERENCE_THREADS"] = "1"
                    if worker_name.startswith("cloud"):
                        # Stand-ins of its own (new ports, so new cache keys): no mode plays
                        # sentences that an earlier mode's calls left in the cloud voices'
                        # cache (measured: that took ~150 ms off the second mode's misses).
                        if standins is not None:
                            await asyncio.to_thread(standins[0].__exit__, None, None, None)
                            standins = None
                        standins = await asyncio.to_thread(_start_cloud, cloud_dir)
                        env.update(standins[1].env())
                        env["FIRSTWORD_PROVIDERS"] = "auto"
                        env["FIRSTWORD_ACCOUNTS_DIR"] = cloud_dir
                        hit = worker_name.startswith("cloud-hit")
                        env["FIRSTWORD_RESPONSE_CACHE"] = "true" if hit else "false"
                        if worker_name.endswith("-before"):
                            # Cloud turns as before the stt_node hook: no early end of turn.
                            env["FIRSTWORD_EARLY_TURN_SCORE"] = "0"
                    log = out / f"{worker_name}.{round_index + 1}.worker.log"
                    print(f"== round {round_index + 1}: worker {worker_name}", flush=True)
                    with worker(env, log, uvloop=worker_name == "after-uvloop"):
                        for mode in modes:
                            seen = len(turn_lines(log))
                            rows_of[mode.name] += await run_mode(
                                mode,
                                settings,
                                voices,
                                whisper,
                                registry,
                                args.per_call,
                                args.limit,
                                (round_index, args.rounds),
                            )
                            await asyncio.sleep(1.0)  # the last turn's timeline line
                            stages_of[mode.name] += turn_lines(log)[seen:]
                            # Written as each mode ends, so a run cut short keeps its figures.
                            summary = summarise(rows_of[mode.name], stages_of[mode.name])
                            with (out / "partial.jsonl").open("a") as partial:
                                partial.write(json.dumps({mode.name: summary}) + "\n")
                            print(f"  {mode.name}: {json.dumps(summary)}", flush=True)
        finally:
            if standins is not None:
                standins[0].__exit__(None, None, None)
    results = {name: summarise(rows_of[name], stages_of[name]) for name in names}
    all_rows = [row for name in names for row in rows_of[name]]
    (out / "answers.json").write_text(json.dumps({"results": results, "turns": all_rows}, indent=2))
    with (out / "turns.csv").open("w") as csv:
        csv.write("mode,account,expected,heard,right,latency_ms,cut_off,question\n")
        for r in all_rows:
            csv.write(
                f"{r['mode']},{r['account']},{r['expected']},{r['heard']},{r['right']},"
                f'{r["latency_ms"]},{r["cut_off"]},"{r["question"]}"\n'
            )
    print(f"\nend of the caller's question -> first audible answer, ms; {out}")
    print(_table(results, variants))
    barge = {name: r["barge_in"] for name, r in results.items() if "barge_in" in r}
    if barge:
        print("\nspeech over an answer: the caller's first word -> the agent silent (ms, where it")
        print("stopped); what the agent did; the silence before a resumed answer went on (ms)")
        print("| mode | calls | silent p50 | p90 | went on | resumed | gap p50 | p90 | stopped |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, b in barge.items():
            r = results[name]
            print(
                f"| {name} | {b['calls']} | {r['p50']} | {r['p90']} | {b['went on']} "
                f"| {b['resumed']} | {b['gap_ms']['p50']} | {b['gap_ms']['p90']} | {b['stopped']} |"
            )


def _start_cloud(accounts: str) -> tuple[Any, Any]:
    """The stand-ins at typical latencies, and the cloud accounts (blocking; a context)."""
    from standins import start_standins

    _cloud_accounts(Path(accounts))
    hibari = load_hibari(threads=1, verify=False)
    whisper = WhisperSTT(load_whisper(None, threads=1, verify=False))
    context = start_standins(
        render=hibari.render,
        rate=hibari.sample_rate,
        transcribe=lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en"),
    )
    standins = context.__enter__()
    standins.all_healthy(stt=0.3, llm=0.4, tts=0.15)
    return context, standins


def main() -> None:
    warnings.filterwarnings("ignore", message="The HMAC key is .* bytes long")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"default: {DEFAULT_MODES}")
    parser.add_argument("--per-call", type=int, default=8, help="questions per call")
    parser.add_argument(
        "--after-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra worker setting for every mode but before (a sweep of the defaults)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:K=V,...",
        help="a worker configuration of your own: after with these settings (modes NAME, "
        "NAME-phone, NAME-paused, NAME-paused-phone)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds over the workers, each with a share"
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="first N questions per account only (quick sweeps)"
    )
    parser.add_argument("--out", help="results folder (default .cache/bench/answers-<time>)")
    parser.add_argument(
        "--noise-floor",
        type=float,
        help="dBFS: the callers' microphones send noise at this level between utterances"
        " (default: digital silence, as before; a real line is -65 to -50)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
