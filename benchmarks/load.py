"""A realistic conversation load on one worker pinned to one core: what a conversation costs.

The worker (`python agent.py start`, the product as deployed) runs pinned to core 0 with
`taskset`; this process (the callers, and with `cloud` the providers' stand-ins) and the
LiveKit server run on the other cores, so the worker's figures are its own and not the
callers'. The callers are kept light: every question is rendered once before the run,
nothing is transcribed during it, and the cloud stand-ins answer from the bench's own
question set (below); the callers' core load is reported next to the worker's.

Per step N (conversations at once), for `--step-seconds`: N caller lanes; the lanes' first
calls arrive as a Poisson process over the ramp (exponential gaps, mean `--ramp-s / N`, so
the step is at N for most of its length), and each lane
calls again after an exponential gap (mean `--redial-s`) when its call ends, so about N
conversations are up all along. Each call asks 4-6 of the account's questions (drawn
without replacement), with 1.5-4 s of thinking after each answer; `--hang-up` of the calls
hang up at a random moment (mid-greeting, mid-question, mid-answer). Per step it prints:

- time to first word p50/p90 and answer latency p50/p90 (caller-measured: end of the
  question's audio -> the agent's first audible audio);
- lost calls (no greeting within 15 s, the caller still there) and unanswered turns (no
  answer within 10 s), counted, not left out of the percentiles silently;
- worker CPU per conversation: the worker's CPU over the step / the mean number of live
  conversations (its `firstword_active_calls`, sampled every 2 s), in cores;
- RSS per additional conversation: the worker's RSS at the step's peak over its RSS just
  before the step, per conversation at that peak; and over the steps, the least-squares
  slope of the peak RSS against the peak of live conversations, idle included (the memory of
  one more conversation, with what earlier steps left behind; the intercept over the idle
  RSS is what any load adds once: engine working memory);
- event-loop lag p99 and the longest stall (`firstword_event_loop_lag_seconds`, every call's
  loop), and the longest GC pause (`firstword_gc_pause_seconds`): from the worker's own
  histograms, as bucket bounds (a stall "<= 75 ms" lies in (50, 75]);
- the callers' core: its mean busy share (if it nears 100 %, the callers, not the worker,
  were the limit).

Modes, side by side in one invocation: `--engines local,cloud` (the local engines; Google
STT, Gemini and ElevenLabs as loopback stand-ins at typical latencies) x `--modes old,new`
(`old`: the settings this issue's changes turned off, `OLD_DEFAULTS`; `new`: the defaults;
`unrouted`: the defaults but `FIRSTWORD_FFI_EVENT_ROUTING=false`, to see that one alone;
`norefreeze`: no second GC freeze when the worker goes idle).

Several workers per machine, `--layouts machine,per-core`: the same load against one worker
free to use every core (`machine`) and against one worker per core, each pinned to its own
(`per-core`; the LiveKit server splits the calls between them by their reported load, as in
a fleet). Both share the cores with the callers and the server, so compare them with each
other, not with `pinned` (the default: one worker alone on core 0).

    python -m benchmarks.load [--steps 2,4,6,8] [--step-seconds 90] [--engines local,cloud]
        [--modes old,new,unrouted,norefreeze] [--layouts pinned] [--ramp-s 10]
        [--hang-up 0.15] [--seed 1] [--profile [--profile-gil]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from agent.engines.local_tts import LocalTTS, load_hibari
from agent.settings import PROJECT_ROOT, get_settings
from benchmarks.capacity import ACCOUNT, Worker, stop_all_workers
from benchmarks.failover import _accounts
from caller.simulator import CallOptions, CallReport, Question, run_call

# The account's own questions, as a caller phrases them (each is matched by an FAQ).
QUESTIONS = (
    "What are your opening hours?",
    "Where are you located?",
    "Do you accept Delta Dental?",
    "How much does a cleaning cost?",
    "Are you accepting new patients?",
    "Do you handle dental emergencies?",
    "Is there parking near the clinic?",
    "What time do you open on Saturday?",
)
TTFW_P90_MAX_MS = 500.0
ANSWER_P90_MAX_MS = 800.0
GREETING_TIMEOUT_S = 15.0
ANSWER_TIMEOUT_S = 10.0
# What `old` turns off: each setting this changes introduced, at its earlier value.
OLD_DEFAULTS = {
    "FIRSTWORD_GC_TUNING": "false",
    "FIRSTWORD_GC_REFREEZE": "false",
    "FIRSTWORD_INPUT_SAMPLE_RATE": "24000",
    "FIRSTWORD_INPUT_AGC": "true",
    "FIRSTWORD_SHARED_VAD": "false",
    "FIRSTWORD_INLINE_VAD": "false",
    "FIRSTWORD_FFI_EVENT_ROUTING": "false",
}
MODES = {
    "old": OLD_DEFAULTS,
    "new": {},
    "unrouted": {"FIRSTWORD_FFI_EVENT_ROUTING": "false"},
    # No second freeze when a worker goes idle (agent/worker/stalls.py, `refreeze_if_idle`).
    "norefreeze": {"FIRSTWORD_GC_REFREEZE": "false"},
}
MB = 1024 * 1024
LAYOUTS = ("pinned", "machine", "per-core")
WORKER_CORE = 0
# Scraping the worker's /metrics costs the worker CPU (~6 % of its busy time at 0.5 s in the
# first profile): every 2 s is enough for the mean of the live conversations.
_SAMPLE_S = 2.0


# ---- the worker's own histograms --------------------------------------------------------


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every firstword_* sample of the worker's /metrics: name -> labels -> value."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("firstword_"):
                labels = tuple(sorted(sample.labels.items()))
                out.setdefault(sample.name, {})[labels] = sample.value
    return out


def bucket_deltas(
    before: dict[str, Any], after: dict[str, Any], name: str
) -> list[tuple[float, float]]:
    """(upper bound, count in that bucket over the step) of a histogram, summed over its
    other labels; cumulative buckets turned into per-bucket counts."""
    totals: dict[float, float] = {}
    for labels, value in after.get(f"{name}_bucket", {}).items():
        le = float(dict(labels)["le"])
        totals[le] = totals.get(le, 0.0) + value - before.get(f"{name}_bucket", {}).get(labels, 0)
    cumulative = sorted(totals.items())
    per, last = [], 0.0
    for le, count in cumulative:
        per.append((le, count - last))
        last = count
    return per


def quantile_bound(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (None: no samples)."""
    total = sum(n for _, n in buckets)
    if total <= 0:
        return None
    seen = 0.0
    for le, n in buckets:
        seen += n
        if seen >= q * total:
            return le
    return buckets[-1][0]


def max_bound(buckets: list[tuple[float, float]]) -> float | None:
    """The upper bound of the highest non-empty bucket (the longest one, to bucket width)."""
    filled = [le for le, n in buckets if n > 0]
    return max(filled) if filled else None


# ---- one step -----------------------------------------------------------------------------


@dataclass
class Step:
    calls: int
    reports: list[CallReport] = field(default_factory=list)
    live: list[int] = field(default_factory=list)
    callers_core: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    rss_before: int = 0
    peak_rss: int = 0
    peak_live: int = 0
    # One scrape per worker (a layout may run several).
    metrics_before: list[dict[str, Any]] = field(default_factory=list)
    metrics_after: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ttfw = [r.ttfw_s * 1000 for r in self.reports if r.ttfw_s is not None]
        answers = [
            t.latency_s * 1000 for r in self.reports for t in r.turns if t.latency_s is not None
        ]
        lost = sum(1 for r in self.reports if r.ttfw_s is None and not r.hung_up)
        unanswered = sum(1 for r in self.reports for t in r.turns if t.latency_s is None)
        mean_live = float(np.mean(self.live)) if self.live else 0.0
        lag = _summed_deltas(self, "firstword_event_loop_lag_seconds")
        gc_pause = _summed_deltas(self, "firstword_gc_pause_seconds")

        def pct(values: list[float], q: int) -> float | None:
            return round(float(np.percentile(values, q))) if values else None

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000)

        cores = self.cpu_s / self.wall_s if self.wall_s else 0.0
        rise = (self.peak_rss - self.rss_before) / MB
        summary = {
            "calls": self.calls,
            "callers": len(self.reports),
            "hung_up": sum(1 for r in self.reports if r.hung_up),
            "ttfw_n": len(ttfw),
            "ttfw_p50_ms": pct(ttfw, 50),
            "ttfw_p90_ms": pct(ttfw, 90),
            "answers_n": len(answers),
            "answer_p50_ms": pct(answers, 50),
            "answer_p90_ms": pct(answers, 90),
            "lost": lost,
            "unanswered": unanswered,
            "mean_live": round(mean_live, 2),
            "peak_live": self.peak_live,
            "worker_cores": round(cores, 3),
            "cores_per_conversation": round(cores / mean_live, 3) if mean_live else None,
            "rss_rise_mb": round(rise, 1),
            "rss_before_mb": round(self.rss_before / MB, 1),
            "rss_peak_mb": round(self.peak_rss / MB, 1),
            "rss_mb_per_conversation": round(rise / self.peak_live, 1) if self.peak_live else None,
            "loop_lag_p99_ms": ms(quantile_bound(lag, 0.99)),
            "longest_stall_ms": ms(max_bound(lag)),
            "gc_pause_max_ms": ms(max_bound(gc_pause)),
            "callers_core_mean": round(float(np.mean(self.callers_core)), 2)
            if self.callers_core
            else None,
            "callers_core_max": round(float(np.max(self.callers_core)), 2)
            if self.callers_core
            else None,
        }
        summary["within_bounds"] = bool(
            lost == 0
            and unanswered == 0
            and summary["ttfw_p90_ms"] is not None
            and summary["answer_p90_ms"] is not None
            and summary["ttfw_p90_ms"] <= TTFW_P90_MAX_MS
            and summary["answer_p90_ms"] <= ANSWER_P90_MAX_MS
        )
        return summary


def _summed_deltas(step: Step, name: str) -> list[tuple[float, float]]:
    """A histogram's per-bucket counts over the step, summed over the workers."""
    totals: dict[float, float] = {}
    for before, after in zip(step.metrics_before, step.metrics_after, strict=True):
        for le, n in bucket_deltas(before, after, name):
            totals[le] = totals.get(le, 0.0) + n
    return sorted(totals.items())


def _callers_cores() -> set[int]:
    return set(range(os.cpu_count() or 1)) - {WORKER_CORE} or {WORKER_CORE}


async def _sample(workers: list[Worker], step: Step, stop: asyncio.Event) -> None:
    """Live conversations, the workers' RSS and the callers' cores, every `_SAMPLE_S`."""
    cores = sorted(_callers_cores())
    psutil.cpu_percent(percpu=True)
    while not stop.is_set():
        live, rss = 0, 0
        for worker in workers:
            try:
                values = await asyncio.to_thread(worker.metrics)
                rss += await asyncio.to_thread(worker.rss_bytes)
            except Exception:  # a scrape during a process's exit: the next one counts
                values = {}
            live += round(values.get("firstword_active_calls", 0))
        step.live.append(live)
        if rss > step.peak_rss:
            step.peak_rss = rss
        step.peak_live = max(step.peak_live, live)
        per_cpu = psutil.cpu_percent(percpu=True)
        step.callers_core.append(float(np.mean([per_cpu[c] for c in cores if c < len(per_cpu)])))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _SAMPLE_S)


async def _one_call(
    account: str, questions: list[Question], rng: random.Random, hang_up: float, length_s: float
) -> CallReport:
    picked = rng.sample(questions, rng.randint(4, min(6, len(questions))))
    options = CallOptions(
        account=account,
        greeting_timeout_s=GREETING_TIMEOUT_S,
        answer_timeout_s=ANSWER_TIMEOUT_S,
        end_silence_s=1.5,  # an answer ends after 1.5 s of agent silence (two sentences)
        pause_before_questions_s=rng.uniform(0.5, 1.5),
        think_s=tuple(rng.uniform(1.5, 4.0) for _ in picked),
        leave_at_s=rng.uniform(0.5, length_s) if rng.random() < hang_up else None,
    )
    return await run_call(get_settings(), picked, _no_transcript, options)


def _no_transcript(_audio: np.ndarray, _rate: int) -> str:
    return ""  # timed, not transcribed: the callers' core stays light


async def run_step(
    workers: list[Worker],
    n: int,
    args: argparse.Namespace,
    account: str,
    questions: list[Question],
    rng: random.Random,
) -> Step:
    step = Step(n)
    step.rss_before = sum([await asyncio.to_thread(w.rss_bytes) for w in workers])
    step.metrics_before = [await asyncio.to_thread(scrape, w.metrics_url) for w in workers]
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(workers, step, stop))
    cpu0, t0 = sum(w.cpu_seconds() for w in workers), time.monotonic()
    end = t0 + args.step_seconds
    first_at = np.cumsum([rng.expovariate(n / args.ramp_s) for _ in range(n)])

    async def lane(start_after: float) -> None:
        await asyncio.sleep(start_after)
        while time.monotonic() < end:
            report = await _one_call(account, questions, rng, args.hang_up, args.call_seconds)
            step.reports.append(report)
            await asyncio.sleep(rng.expovariate(1 / args.redial_s))

    await asyncio.gather(*(lane(float(t)) for t in first_at if t < args.step_seconds))
    step.cpu_s = sum(w.cpu_seconds() for w in workers) - cpu0
    step.wall_s = time.monotonic() - t0
    stop.set()
    await sampler
    step.metrics_after = [await asyncio.to_thread(scrape, w.metrics_url) for w in workers]
    return step


# ---- one mode -------------------------------------------------------------------------------


async def run_mode(
    engines: str,
    mode: str,
    args: argparse.Namespace,
    base_env: dict[str, str],
    questions: list[Question],
    out: Path,
    layout: str = "pinned",
) -> dict[str, Any]:
    name = f"{engines}/{mode}" + ("" if layout == "pinned" else f"/{layout}")
    env = {
        **base_env,
        # The engines are measured, not the cap: no hold mode, no refusal.
        "FIRSTWORD_MAX_CALLS": "1000",
        "FIRSTWORD_HOLD_SLOTS": "0",
        "FIRSTWORD_HTTP_PORT": "0",
        "FIRSTWORD_METRICS_PORT": "0",
        "FIRSTWORD_HTTP_HOST": "127.0.0.1",
        **MODES[mode],
    }
    slug = name.replace("/", "-")
    if layout == "per-core":
        # One worker per core, each pinned to its own; their load (live / their slots) steers
        # the server's choice between them as in a fleet, so each has as many slots as the
        # largest step could put on it.
        cores = list(range(os.cpu_count() or 1))
        env["FIRSTWORD_MAX_CALLS"] = str(max(args.steps))
        workers = [
            Worker(f"{name}#{c}", env, out / f"{slug}-{c}.worker.log", prefix=_pin(c))
            for c in cores
        ]
    elif layout == "machine":
        env["FIRSTWORD_MAX_CALLS"] = str(max(args.steps))
        workers = [Worker(name, env, out / f"{slug}.worker.log")]
    else:
        workers = [Worker(name, env, out / f"{slug}.worker.log", prefix=_pin(WORKER_CORE))]
    result: dict[str, Any] = {
        "engines": engines,
        "mode": mode,
        "layout": layout,
        "workers": len(workers),
        "steps": [],
    }
    print(f"== {name}: steps {args.steps}, {args.step_seconds:.0f} s each", flush=True)
    rng = random.Random(args.seed)
    try:
        for worker in workers:
            await worker.start()
        result["idle_rss_mb"] = round(sum(w.rss_bytes() for w in workers) / MB)
        for n in args.steps:
            profiler = _start_profiler(workers[0], out / f"{slug}-{n}")
            step = await run_step(workers, n, args, ACCOUNT[engines], questions, rng)
            _stop_profiler(profiler)
            summary = step.summary()
            result["steps"].append(summary)
            print(f"  {name} {_row(summary)}", flush=True)
            await asyncio.sleep(2.0)
    finally:
        for worker in workers:
            worker.stop()
    # The worker's RSS at each step's peak against its peak of live conversations, idle
    # included (as bench-capacity fits it): each step's rise over the RSS just before it
    # would leave out what the earlier steps' calls left behind.
    rises = [(0, float(result["idle_rss_mb"]))] + [
        (s["peak_live"], s["rss_peak_mb"]) for s in result["steps"] if s["peak_live"] > 0
    ]
    if len({x for x, _ in rises}) > 1:
        slope, intercept = np.polyfit([x for x, _ in rises], [y for _, y in rises], 1)
        result["rss_mb_per_conversation"] = round(float(slope), 1)
        result["rss_mb_once"] = round(float(intercept) - result["idle_rss_mb"], 1)
    passing = [s["calls"] for s in result["steps"] if s["within_bounds"]]
    result["largest_within_bounds"] = max(passing) if passing else 0
    return result


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        print("  (taskset unavailable or one core: the worker is not pinned)", flush=True)
        return []
    return ["taskset", "-c", str(core)]


def _start_profiler(worker: Worker, path: Path) -> subprocess.Popen[bytes] | None:
    """py-spy on the worker for the step (--profile): a flame graph of where its CPU goes."""
    if not _ARGS.profile or worker.process is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    # --gil: only the thread holding the GIL is sampled, so a native call waiting to get the
    # GIL back (ONNX under contention) is not counted as its Python's time.
    gil = ["--gil"] if _ARGS.profile_gil else []
    return subprocess.Popen(
        [spy, "record", "--pid", str(worker.process.pid), "--rate", "50", "--nonblocking",
         "--format", "raw", "--output", f"{path}.txt", "--subprocesses", *gil],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            profiler.wait(timeout=30)


_ARGS = argparse.Namespace(profile=False, profile_gil=False)


# ---- printing ------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def _row(s: dict[str, Any]) -> str:
    return (
        f"{s['calls']:>3} at once: ttfw p50/p90 {_fmt(s['ttfw_p50_ms'])}/{_fmt(s['ttfw_p90_ms'])}"
        f" ms (n={s['ttfw_n']}), answer p50/p90 {_fmt(s['answer_p50_ms'])}/"
        f"{_fmt(s['answer_p90_ms'])} ms (n={s['answers_n']}), lost {s['lost']}, unanswered"
        f" {s['unanswered']}, hung up {s['hung_up']}/{s['callers']}, live mean"
        f" {s['mean_live']} peak {s['peak_live']}, worker {s['worker_cores']} cores ="
        f" {_fmt(s['cores_per_conversation'])} per conversation, RSS +{s['rss_rise_mb']} MB"
        f" ({_fmt(s['rss_mb_per_conversation'])} per conversation), loop lag p99"
        f" <={_fmt(s['loop_lag_p99_ms'])} ms, longest stall <={_fmt(s['longest_stall_ms'])} ms,"
        f" GC max <={_fmt(s['gc_pause_max_ms'])} ms, callers' core"
        f" {_fmt(s['callers_core_mean'])}% (max {_fmt(s['callers_core_max'])})"
        f" {'ok' if s['within_bounds'] else 'OVER'}"
    )


def print_report(results: list[dict[str, Any]], out: Path) -> None:
    names = [
        f"{r['engines']}/{r['mode']}" + ("" if r["layout"] == "pinned" else f"/{r['layout']}")
        for r in results
    ]
    steps = sorted({s["calls"] for r in results for s in r["steps"]})
    layouts = {r["layout"] for r in results}
    where = (
        f"worker pinned to core {WORKER_CORE} (callers, stand-ins and the LiveKit server on"
        " the others)"
        if layouts == {"pinned"}
        else "layouts: pinned = one worker on core 0, the rest elsewhere; machine = one worker"
        " on every core; per-core = one worker pinned to each core (machine and per-core share"
        " the cores with the callers and the server)"
    )
    print(
        f"\nConversation load, {where}. Per step: TTFW p90 | answer p90 ms | cores per"
        " conversation | loop lag p99 / longest stall / GC max ms (bucket bounds);"
        f" * = over a bound (TTFW p90 > {TTFW_P90_MAX_MS:.0f}, answer p90 >"
        f" {ANSWER_P90_MAX_MS:.0f}, or a call lost / a turn unanswered)\n"
    )
    print("| at once | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for calls in steps:
        cells = []
        for r in results:
            s = next((s for s in r["steps"] if s["calls"] == calls), None)
            if s is None:
                cells.append("(not run)")
                continue
            cells.append(
                f"{_fmt(s['ttfw_p90_ms'])} \\| {_fmt(s['answer_p90_ms'])} \\|"
                f" {_fmt(s['cores_per_conversation'])} \\| {_fmt(s['loop_lag_p99_ms'])}/"
                f"{_fmt(s['longest_stall_ms'])}/{_fmt(s['gc_pause_max_ms'])}"
                f" lost {s['lost']} unans {s['unanswered']}{'' if s['within_bounds'] else '*'}"
            )
        print(f"| {calls} | " + " | ".join(cells) + " |")
    print(
        "\n| mode | largest step within bounds | RSS MB per conversation (+ once) | idle RSS MB |"
    )
    print("|---|---|---|---|")
    for name, r in zip(names, results, strict=True):
        print(
            f"| {name} | {r['largest_within_bounds'] or 'none'} |"
            f" {_fmt(r.get('rss_mb_per_conversation'))} (+{_fmt(r.get('rss_mb_once'))}) |"
            f" {r['idle_rss_mb']} |"
        )
    by = {(r["engines"], r["mode"], r["layout"]): r for r in results}
    for engines, layout in dict.fromkeys((r["engines"], r["layout"]) for r in results):
        _ratios(by.get((engines, "old", layout)), by.get((engines, "new", layout)), "new/old")
        _ratios(
            by.get((engines, "unrouted", layout)), by.get((engines, "new", layout)),
            "new/unrouted",
        )  # fmt: skip
    for engines, mode in dict.fromkeys((r["engines"], r["mode"]) for r in results):
        _ratios(
            by.get((engines, mode, "machine")), by.get((engines, mode, "per-core")),
            "per-core/machine",
        )  # fmt: skip
    print(f"\nresults: {out / 'load.json'}")


def _ratios(base: dict[str, Any] | None, other: dict[str, Any] | None, label: str) -> None:
    """Per step: cores per conversation, TTFW p90 and answer p90 of `other` over `base`."""
    if not base or not other:
        return
    for s_other in other["steps"]:
        s_base = next((s for s in base["steps"] if s["calls"] == s_other["calls"]), None)
        if s_base is None:
            continue
        parts = []
        for key, what in (
            ("cores_per_conversation", "cores per conversation"),
            ("ttfw_p90_ms", "TTFW p90"),
            ("answer_p90_ms", "answer p90"),
        ):
            if s_base[key] and s_other[key]:
                parts.append(f"{what} {s_other[key] / s_base[key]:.2f}")
        name = f"{other['engines']}/{other['mode']}"
        print(f"{name} at {s_other['calls']}, {label}: " + ", ".join(parts))


# ---- the cloud stand-ins, light -------------------------------------------------------------


def _standins(
    stack: contextlib.ExitStack, args: argparse.Namespace, hibari: LocalTTS, qs: list[Question]
) -> dict[str, str]:
    """The stand-ins at typical latencies, kept off the worker's figures: their recogniser
    names the bench's own question nearest in length to what it heard (the callers ask only
    those; Whisper here would load the callers' core, not the worker's), and their voice
    renders each text once (the answers repeat)."""
    from standins import start_standins

    lengths = [(_speech_seconds(q.audio, q.sample_rate), q.text) for q in qs]

    def transcribe(audio: np.ndarray, rate: int) -> str:
        heard = _speech_seconds(audio, rate)
        return min(lengths, key=lambda pair: abs(pair[0] - heard))[1]

    render = functools.lru_cache(maxsize=256)(hibari.render)
    standins = stack.enter_context(
        start_standins(render=render, rate=hibari.sample_rate, transcribe=transcribe)
    )
    standins.all_healthy(stt=args.stt, llm=args.llm, tts=args.tts)
    return standins.env()


def _speech_seconds(audio: np.ndarray, rate: int) -> float:
    """From the first to the last loud sample: the length of what was said."""
    samples = audio.astype(np.float32)
    if samples.dtype != np.float32 or np.abs(samples).max(initial=0) > 2:
        samples = samples / 32768.0
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    return float((loud[-1] - loud[0]) / rate) if loud.size else 0.0


def _isolate_worker_core() -> dict[int, set[int]]:
    """Every other process on the machine (this one, the LiveKit server, anything else
    running) onto the callers' cores, so the worker's core is the worker's alone; what
    they had, to give back at the end. Processes started later inherit it from their
    parent. (Kernel threads refuse and are left.)"""
    cores = _callers_cores()
    before: dict[int, set[int]] = {}
    for task in Path("/proc").glob("[0-9]*/task/[0-9]*"):
        tid = int(task.name)
        with contextlib.suppress(OSError):
            had = os.sched_getaffinity(tid)
            if had != cores:
                os.sched_setaffinity(tid, cores)
                before[tid] = had
    return before


def _restore(before: dict[int, set[int]]) -> None:
    for tid, cores in before.items():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cores)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="2,4,6,8", help="conversations at once, per step")
    parser.add_argument("--step-seconds", type=float, default=90.0)
    parser.add_argument("--call-seconds", type=float, default=50.0, help="a call's usual length")
    parser.add_argument(
        "--redial-s", type=float, default=1.0, help="mean gap before a lane redials"
    )
    parser.add_argument(
        "--ramp-s", type=float, default=10.0, help="the lanes' first calls arrive over this"
    )
    parser.add_argument("--hang-up", type=float, default=0.15, help="share of calls hung up early")
    parser.add_argument("--engines", default="local,cloud")
    parser.add_argument("--modes", default="old,new")
    parser.add_argument(
        "--layouts",
        default="pinned",
        help="pinned (one worker alone on core 0), machine (one worker on every core),"
        " per-core (one worker pinned to each core); e.g. machine,per-core",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="py-spy the worker each step")
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (Python's CPU, not waits)",
    )
    parser.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="leave other processes where they are (default: all moved off the worker's core)",
    )
    parser.add_argument("--stt", type=float, default=0.3, help="stand-in Google STT latency, s")
    parser.add_argument("--llm", type=float, default=0.4, help="stand-in Gemini first token, s")
    parser.add_argument("--tts", type=float, default=0.15, help="stand-in ElevenLabs first byte")
    args = parser.parse_args()
    args.steps = [int(v) for v in args.steps.split(",") if v.strip()]
    _ARGS.profile = args.profile
    _ARGS.profile_gil = args.profile_gil
    for engines in args.engines.split(","):
        if engines not in ACCOUNT:
            parser.error(f"unknown engine set {engines!r}; known: {', '.join(ACCOUNT)}")
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    for layout in args.layouts.split(","):
        if layout not in LAYOUTS:
            parser.error(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    # The worker's core is kept for it only when every layout is one pinned worker.
    isolate = args.isolate and set(args.layouts.split(",")) == {"pinned"}
    moved = _isolate_worker_core() if isolate else {}
    try:
        await _run(args, moved)
    finally:
        _restore(moved)


async def _run(args: argparse.Namespace, moved: dict[int, set[int]]) -> None:
    print(f"moved {len(moved)} threads off the worker's core {WORKER_CORE}", flush=True)
    out = PROJECT_ROOT / ".cache" / "bench" / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    hibari = load_hibari(threads=1, verify=False)
    questions = [Question(text, hibari.render(text), hibari.sample_rate) for text in QUESTIONS]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as accounts:
        _accounts(Path(accounts))
        base_env = {**os.environ, "FIRSTWORD_ACCOUNTS_DIR": accounts}
        for engines in args.engines.split(","):
            with contextlib.ExitStack() as stack:
                env = dict(base_env)
                if engines == "cloud":
                    env.update(_standins(stack, args, hibari, questions))
                for mode in args.modes.split(","):
                    for layout in args.layouts.split(","):
                        results.append(
                            await run_mode(engines, mode, args, env, questions, out, layout)
                        )
                        (out / "load.json").write_text(json.dumps(results, indent=2))
    print_report(results, out)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        stop_all_workers()
