"""Capacity of one worker: a ramp of simultaneous calls, per engine set and job executor.

For each combination of engine set (`local`: the local engines; `cloud`: Google STT, Gemini
and ElevenLabs served by the loopback stand-ins at typical latencies) and job executor
(`thread`, `process`), it starts one worker (FIRSTWORD_MAX_CALLS raised, hold off, so the
engines are measured, not the cap) and, for each step N, makes N calls at once, --rounds
times. Every caller times the first word, pauses a second, asks one FAQ question, times the
answer and hangs up when it ends. Per step it reports:

- time to first word p50/p90 and answer latency p50/p90 (caller-measured, as scripts/bench.sh);
- worker CPU per call: CPU seconds of the worker's process tree over the step, less what
  the idle worker spends in that time, / calls (each call: greeting, one answer, ~8 s);
- the worker tree's RSS at the step's peak of live calls, and its rise over the RSS just
  before the step, per call (what N calls at once cost live, without what earlier steps
  left behind: allocator pages not given back, caches that fill as calls are served);
and per combination: the RSS slope (linear fit of peak RSS against live calls, idle
included: memory per additional call), the Python heap slope (a second, shorter ramp with
FIRSTWORD_TRACEMALLOC=1; tracemalloc slows allocation, so latency is not measured with it),
and the largest step that keeps TTFW p90 <= 500 ms and answer p90 <= 1.5 s with no caller
lost (that step and every smaller one).

The callers (and with `cloud`, the stand-ins, which synthesise and transcribe for real) run
in this process on the same machine as the worker: on a small machine they take a share of
its CPU, so the figures are a lower bound for a worker with the machine to itself.

    python -m benchmarks.capacity [--steps 1,2,4,8,12,16] [--rounds 2] [--quick]
        [--engines local,cloud] [--executors thread,process] [--process-steps ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
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

from agent.engines.local_tts import LocalTTS, load_hibari
from agent.settings import PROJECT_ROOT, get_settings
from benchmarks.failover import _accounts
from caller.simulator import CallOptions, CallReport, Question, run_call

QUESTION = "What are your opening hours?"
TTFW_P90_MAX_MS = 500.0
ANSWER_P90_MAX_MS = 1500.0
ACCOUNT = {"local": "harbor-local", "cloud": "harbor-dental"}
MB = 1024 * 1024
_STARTED: list[Worker] = []  # stopped at exit, whatever interrupted the run


# ---- the worker and its process tree -------------------------------------------------


@dataclass
class Worker:
    name: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    metrics_url: str = ""
    # Put before the command, e.g. ["taskset", "-c", "0"] to pin the worker to one core.
    prefix: list[str] = field(default_factory=list)

    def launch(self) -> None:
        _STARTED.append(self)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "agent.py", "start"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self.launch()
        deadline = time.monotonic() + 180
        while '"registered worker"' not in self._text():
            self._check(deadline, "register")
            await asyncio.sleep(0.2)
        match = None
        while match is None:
            match = re.search(r"metrics exposed at http://([^\s:/\"]*):(\d+)", self._text())
            self._check(deadline, "serve /metrics")
            await asyncio.sleep(0.1)
        self.metrics_url = f"http://{match.group(1) or '127.0.0.1'}:{match.group(2)}/metrics"
        # The answers are pre-rendered on a thread after prewarm (minutes from a cold cache):
        # wait for it, so it does not take CPU from the first steps.
        while '"answers pre-rendered"' not in self._text():
            self._check(deadline, "pre-render its answers")
            await asyncio.sleep(0.2)

    def _text(self) -> str:
        return self.log.read_text(errors="replace")

    def _check(self, deadline: float, what: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the {self.name} worker exited; see {self.log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {self.name} worker did not {what} in time; see {self.log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def metrics(self) -> dict[str, float]:
        """The worker's unlabelled firstword_* samples, from its /metrics."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as reply:
            text = reply.read().decode()
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(r"(?m)^(firstword_[a-z_]+) (\S+)$", text)
        }

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """CPU of the worker and every process it started, the ended ones included (reaped
        children's time is in their parent's children_user/system)."""
        total = 0.0
        for proc in self.tree():
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                continue
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total


# ---- one step --------------------------------------------------------------------------


@dataclass
class Step:
    calls: int
    ttfw_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    lost: int = 0  # no greeting within the caller's timeout
    unanswered: int = 0  # greeted, but no answer to the question
    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_live: int = 0
    peak_rss: int = 0
    peak_heap: float = 0.0
    # RSS a round's calls added over the tree's RSS just before it, per call: what N calls
    # at once cost live, without what earlier steps left behind (allocator pages, caches),
    # which the slope over the steps' peaks also counts.
    rises: list[float] = field(default_factory=list)
    round_peak_rss: int = 0
    idle_cores: float = 0.0  # the idle worker's own CPU, taken off the calls' share

    def p(self, values: list[float], q: int) -> float | None:
        return float(np.percentile(values, q)) if values else None

    @property
    def passes(self) -> bool:
        ttfw90, ans90 = self.p(self.ttfw_ms, 90), self.p(self.answer_ms, 90)
        return (
            self.lost == 0
            and self.unanswered == 0
            and ttfw90 is not None
            and ans90 is not None
            and ttfw90 <= TTFW_P90_MAX_MS
            and ans90 <= ANSWER_P90_MAX_MS
        )

    def summary(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v)

        return {
            "calls": self.calls,
            "n": len(self.ttfw_ms) + self.lost,
            "ttfw_p50_ms": r(self.p(self.ttfw_ms, 50)),
            "ttfw_p90_ms": r(self.p(self.ttfw_ms, 90)),
            "answer_p50_ms": r(self.p(self.answer_ms, 50)),
            "answer_p90_ms": r(self.p(self.answer_ms, 90)),
            "lost": self.lost,
            "unanswered": self.unanswered,
            "cpu_s_per_call": round(
                max(0.0, self.cpu_s - self.idle_cores * self.wall_s)
                / max(1, len(self.ttfw_ms) + self.lost),
                2,
            ),
            "cores_busy": round(self.cpu_s / self.wall_s, 2) if self.wall_s else None,
            "peak_live_calls": self.peak_live,
            "peak_rss_mb": round(self.peak_rss / MB),
            "peak_heap_mb": round(self.peak_heap / MB, 1),
            "rss_rise_mb_per_call": (
                round(float(np.median(self.rises)) / MB, 1) if self.rises else None
            ),
            "passes": self.passes,
        }


def _no_transcript(_audio: np.ndarray, _rate: int) -> str:
    return ""  # the benchmark times the audio; what was said is checked by the tests


async def _call(account: str, question: Question, pause_s: float) -> CallReport:
    options = CallOptions(account=account, pause_before_questions_s=pause_s, end_silence_s=0.8)
    return await run_call(get_settings(), [question], _no_transcript, options)


async def _sample(worker: Worker, step: Step, stop: asyncio.Event) -> None:
    """Peak live calls, and the tree's RSS and Python heap at that peak, twice a second."""
    while not stop.is_set():
        try:
            values = await asyncio.to_thread(worker.metrics)
            rss = await asyncio.to_thread(worker.rss_bytes)
        except Exception:  # a scrape during a process's exit: the next one counts
            values, rss = {}, 0
        live = round(values.get("firstword_active_calls", 0))
        step.round_peak_rss = max(step.round_peak_rss, rss)
        if live > step.peak_live or (live == step.peak_live and rss > step.peak_rss):
            step.peak_live, step.peak_rss = live, max(rss, step.peak_rss)
        step.peak_heap = max(step.peak_heap, values.get("firstword_python_heap_bytes", 0.0))
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


async def _settled(worker: Worker, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        values = await asyncio.to_thread(worker.metrics)
        if not values.get("firstword_active_calls") and not values.get("firstword_calls_on_hold"):
            return
        await asyncio.sleep(0.25)
    print("  (calls still counted 30 s after the step; going on)", flush=True)


async def run_step(worker: Worker, n: int, rounds: int, account: str, q: Question) -> Step:
    step = Step(n)
    for _ in range(rounds):
        stop = asyncio.Event()
        step.round_peak_rss = 0
        rss_before = await asyncio.to_thread(worker.rss_bytes)
        sampler = asyncio.create_task(_sample(worker, step, stop))
        cpu0, t0 = worker.cpu_seconds(), time.monotonic()
        reports = await asyncio.gather(*(_call(account, q, 1.0) for _ in range(n)))
        await _settled(worker)
        step.cpu_s += worker.cpu_seconds() - cpu0
        step.wall_s += time.monotonic() - t0
        stop.set()
        await sampler
        if step.round_peak_rss:
            step.rises.append((step.round_peak_rss - rss_before) / n)
        for report in reports:
            if report.ttfw_s is None:
                step.lost += 1
                continue
            step.ttfw_ms.append(report.ttfw_s * 1000)
            latencies = [t.latency_s for t in report.turns if t.latency_s is not None]
            if latencies:
                step.answer_ms.append(latencies[0] * 1000)
            else:
                step.unanswered += 1
        await asyncio.sleep(1.0)
    return step


async def idle_footprint(worker: Worker) -> tuple[int, float, float]:
    """RSS of the tree and Python heap with no call (medians), and its idle CPU (cores)."""
    rss, heap = [], []
    cpu0, t0 = worker.cpu_seconds(), time.monotonic()
    for _ in range(12):
        rss.append(worker.rss_bytes())
        heap.append((await asyncio.to_thread(worker.metrics)).get("firstword_python_heap_bytes", 0))
        await asyncio.sleep(0.25)
    idle_cores = (worker.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    return int(np.median(rss)), float(np.median(heap)), idle_cores


def slope_per_call(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of value against live calls (bytes per call)."""
    xs = np.array([x for x, _ in points], dtype=float)
    if len(set(xs.tolist())) < 2:
        return None
    ys = np.array([y for _, y in points], dtype=float)
    return float(np.polyfit(xs, ys, 1)[0])


# ---- one combination -------------------------------------------------------------------


async def run_combination(
    engines: str,
    executor: str,
    steps: list[int],
    heap_steps: list[int],
    args: argparse.Namespace,
    base_env: dict[str, str],
    question: Question,
    out: Path,
    variant: tuple[str, dict[str, str]] = ("", {}),
) -> dict[str, Any]:
    label, variant_env = variant
    name = f"{engines}/{executor}" + (f"/{label}" if label else "")
    files = name.replace("/", "-")
    env = {
        **base_env,
        "FIRSTWORD_JOB_EXECUTOR": executor,
        # The engines are measured, not the cap: no hold mode, no refusal.
        "FIRSTWORD_MAX_CALLS": "1000",
        "FIRSTWORD_HOLD_SLOTS": "0",
        "FIRSTWORD_HTTP_PORT": "0",
        "FIRSTWORD_METRICS_PORT": "0",
        "FIRSTWORD_HTTP_HOST": "127.0.0.1",
        **variant_env,
    }
    result: dict[str, Any] = {
        "engines": engines,
        "executor": executor,
        "variant": label,
        "variant_env": variant_env,
        "steps": [],
    }
    idle_rss = 0
    rss_points: list[tuple[int, float]] = []
    if steps:  # (--steps "": the heap ramp alone)
        print(f"== {name}: latency ramp {steps} x {args.rounds} round(s)", flush=True)
        worker = Worker(name, env, out / f"{files}.worker.log")
        await worker.start()
        try:
            idle_rss, _, idle_cores = await idle_footprint(worker)
            rss_points.append((0, float(idle_rss)))
            for n in steps:
                step = await run_step(worker, n, args.rounds, ACCOUNT[engines], question)
                step.idle_cores = idle_cores
                summary = step.summary()
                result["steps"].append(summary)
                if step.peak_live:
                    rss_points.append((step.peak_live, float(step.peak_rss)))
                print(f"  {name} {_row(summary)}", flush=True)
            # What the calls left behind once they ended: allocator pages not given back.
            await _settled(worker)
            await asyncio.sleep(2.0)
            result["rss_after_mb"] = round(worker.rss_bytes() / MB)
        finally:
            worker.stop()
    result["idle_rss_mb"] = round(idle_rss / MB)
    slope = slope_per_call(rss_points)
    result["rss_mb_per_call"] = None if slope is None else round(slope / MB, 1)
    result["rss_points"] = [(x, round(y / MB)) for x, y in rss_points]
    # Without the idle point: the first call's one-time allocations (codecs, caches) left out.
    slope = slope_per_call([p for p in rss_points if p[0] > 0])
    result["rss_mb_per_call_after_first"] = None if slope is None else round(slope / MB, 1)
    # What the calls of a step add together, against how many there were: the slope is the
    # live memory of one more simultaneous call; the intercept, what a burst costs whatever
    # its size (the shared engines' working memory: one Whisper, one voice, behind locks).
    rises = [
        (st["calls"], st["rss_rise_mb_per_call"] * st["calls"])
        for st in result["steps"]
        if st["rss_rise_mb_per_call"] is not None
    ]
    xs, ys = [float(n) for n, _ in rises], [float(mb) for _, mb in rises]
    fit = np.polyfit(xs, ys, 1) if len(set(xs)) > 1 else None
    result["live_mb_per_call"] = None if fit is None else round(float(fit[0]), 1)
    result["live_mb_per_burst"] = None if fit is None else round(float(fit[1]), 1)

    heap_points: list[tuple[int, float]] = []
    if heap_steps:
        print(f"== {name}: Python heap ramp {heap_steps} (FIRSTWORD_TRACEMALLOC=1)", flush=True)
        worker = Worker(name, {**env, "FIRSTWORD_TRACEMALLOC": "1"}, out / f"{files}.heap.log")
        await worker.start()
        try:
            _, idle_heap, _ = await idle_footprint(worker)
            heap_points.append((0, idle_heap))
            for n in heap_steps:
                step = await run_step(worker, n, 1, ACCOUNT[engines], question)
                if step.peak_live:
                    heap_points.append((step.peak_live, step.peak_heap))
                print(
                    f"  {name} heap: {step.peak_live} live, {step.peak_heap / MB:.1f} MB",
                    flush=True,
                )
        finally:
            worker.stop()
    slope = slope_per_call(heap_points)
    result["heap_mb_per_call"] = None if slope is None else round(slope / MB, 2)
    result["heap_points"] = [(x, round(y / MB, 1)) for x, y in heap_points]
    passing = 0
    for summary in result["steps"]:
        if not summary["passes"]:
            break
        passing = summary["calls"]
    result["capacity"] = passing
    return result


# ---- printing ----------------------------------------------------------------------------


def _fmt(value: Any, width: int) -> str:
    return f"{'-' if value is None else value:>{width}}"


def _row(s: dict[str, Any]) -> str:
    return (
        f"{s['calls']:>3} calls: ttfw p50/p90"
        f" {_fmt(s['ttfw_p50_ms'], 5)}/{_fmt(s['ttfw_p90_ms'], 5)}"
        f" ms, answer p50/p90 {_fmt(s['answer_p50_ms'], 5)}/{_fmt(s['answer_p90_ms'], 5)} ms,"
        f" lost {s['lost']}, unanswered {s['unanswered']}, cpu {s['cpu_s_per_call']} s/call"
        f" ({s['cores_busy']} cores busy), peak {s['peak_live_calls']} live / {s['peak_rss_mb']} MB"
        f" (+{s['rss_rise_mb_per_call']} MB per call over the step's start)"
        f" {'ok' if s['passes'] else 'OVER'}"
    )


def print_report(results: list[dict[str, Any]], out: Path) -> None:
    names = [
        f"{r['engines']}/{r['executor']}" + (f"/{r['variant']}" if r.get("variant") else "")
        for r in results
    ]
    steps = sorted({s["calls"] for r in results for s in r["steps"]})
    print(
        f"\nCapacity of one worker ({os.cpu_count()} cores; callers"
        " and stand-ins on the same machine). Per step: TTFW p50/p90 ms | answer p50/p90 ms |"
        " worker CPU s per call | tree RSS MB at the peak; * = over a bound"
        f" (TTFW p90 > {TTFW_P90_MAX_MS:.0f} ms, answer p90 > {ANSWER_P90_MAX_MS:.0f} ms,"
        " or a caller lost/unanswered)\n"
    )
    width = 34
    print(f"{'calls':>5} | " + " | ".join(f"{n:^{width}}" for n in names))
    for calls in steps:
        cells = []
        for r in results:
            s = next((s for s in r["steps"] if s["calls"] == calls), None)
            if s is None:
                cells.append(f"{'(not run)':^{width}}")
                continue
            cell = (
                f"{_fmt(s['ttfw_p50_ms'], 4)}/{_fmt(s['ttfw_p90_ms'], 4)}"
                f" | {_fmt(s['answer_p50_ms'], 4)}/{_fmt(s['answer_p90_ms'], 4)}"
                f" | {s['cpu_s_per_call']:>4} | {s['peak_rss_mb']:>5}{'' if s['passes'] else '*'}"
            )
            cells.append(f"{cell:^{width}}")
        print(f"{calls:>5} | " + " | ".join(cells))
    print(
        "\nSummary (memory per additional call: slope of a linear fit of the steps' peak RSS"
        " against live calls; live RSS per call: slope of what each step's calls added over"
        " the RSS just before it, against their number, + the fit's intercept, what any"
        " burst adds)\n"
    )
    print(
        "| engines/executor | largest step within bounds | idle RSS MB | RSS MB per call"
        " (from the first call on) | live RSS MB per call (+ per burst) | RSS MB after"
        " the calls | Python heap MB per call | CPU s per call at that step |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in zip(names, results, strict=True):
        at = next((s for s in r["steps"] if s["calls"] == r["capacity"]), None)
        print(
            f"| {name} | {r['capacity'] or 'none'} | {r['idle_rss_mb']} | {r['rss_mb_per_call']}"
            f" ({r['rss_mb_per_call_after_first']}) | {r.get('live_mb_per_call')}"
            f" (+{r.get('live_mb_per_burst')})"
            f" | {r.get('rss_after_mb', '-')}"
            f" | {r['heap_mb_per_call']} | {at['cpu_s_per_call'] if at else '-'} |"
        )
    print(
        "\nlargest step within bounds: that step and every smaller one kept TTFW p90 <="
        f" {TTFW_P90_MAX_MS:.0f} ms and answer p90 <= {ANSWER_P90_MAX_MS:.0f} ms with every caller"
        " greeted and answered. Set FIRSTWORD_MAX_CALLS from it (README, 'Sizing a worker')."
        f"\nresults: {out / 'capacity.json'}"
    )


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1,2,4,8,12,16", help="simultaneous calls per step")
    parser.add_argument(
        "--process-steps",
        default=None,
        help="steps for the process executor (default: --steps); each call is a ~0.8 GB process",
    )
    parser.add_argument(
        "--heap-steps",
        default=None,
        help="steps of the tracemalloc ramp (default: smallest, middle, largest step); with"
        ' --steps "" only this ramp runs',
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds per step")
    parser.add_argument("--engines", default="local,cloud")
    parser.add_argument("--executors", default="thread,process")
    parser.add_argument("--no-heap", action="store_true", help="skip the tracemalloc ramp")
    parser.add_argument("--quick", action="store_true", help="all four in about 10 minutes")
    parser.add_argument("--stt", type=float, default=0.3, help="stand-in Google STT latency, s")
    parser.add_argument("--llm", type=float, default=0.4, help="stand-in Gemini first token, s")
    parser.add_argument("--tts", type=float, default=0.15, help="stand-in ElevenLabs first byte")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL[:KEY=VALUE,...]",
        help="run every combination once per variant, with these worker settings, side by"
        " side (repeatable; e.g. --variant glibc:FIRSTWORD_MALLOC_ARENAS=0 --variant default)",
    )
    args = parser.parse_args()
    try:
        variants = [_variant(text) for text in args.variant] or [("", {})]
    except ValueError as error:
        parser.error(f"--variant: {error}")
    if args.quick:
        args.rounds = 1
        if args.steps == parser.get_default("steps"):
            args.steps = "1,2,4,8"
        args.process_steps = args.process_steps or "1,2,4"
    steps = _ints(args.steps)
    process_steps = _ints(args.process_steps) if args.process_steps else steps
    out = PROJECT_ROOT / ".cache" / "bench" / f"capacity-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    hibari: LocalTTS = load_hibari(threads=1, verify=False)
    question = Question(QUESTION, hibari.render(QUESTION), hibari.sample_rate)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as accounts:
        _accounts(Path(accounts))
        base_env = {**os.environ, "FIRSTWORD_ACCOUNTS_DIR": accounts}
        for engines in args.engines.split(","):
            if engines not in ACCOUNT:
                parser.error(f"unknown engine set {engines!r}; known: {', '.join(ACCOUNT)}")
            with contextlib.ExitStack() as stack:
                env = dict(base_env)
                if engines == "cloud":
                    env.update(_standins(stack, args, hibari))
                for executor in args.executors.split(","):
                    run = process_steps if executor == "process" else steps
                    heap = [] if args.no_heap else _ints(args.heap_steps or _heap_default(run))
                    if not run and not heap:
                        parser.error("nothing to run: no --steps and no heap steps")
                    for variant in variants:
                        results.append(
                            await run_combination(
                                engines, executor, run, heap, args, env, question, out, variant
                            )
                        )
                        (out / "capacity.json").write_text(json.dumps(results, indent=2))
    print_report(results, out)


def _variant(text: str) -> tuple[str, dict[str, str]]:
    """ "LABEL:KEY=VALUE,KEY=VALUE" (or "LABEL": the settings as they are)."""
    label, _, pairs = text.partition(":")
    if not label.strip():
        raise ValueError(f"{text!r} has no label")
    env: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in pairs.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r} in {text!r} is not KEY=VALUE")
        env[key] = value
    return label.strip(), env


def _heap_default(steps: list[int]) -> str:
    """Two or three points are enough for a slope: the smallest, middle and largest steps."""
    if not steps:
        return ""
    picks = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
    return ",".join(str(n) for n in picks)


def _standins(
    stack: contextlib.ExitStack, args: argparse.Namespace, hibari: LocalTTS
) -> dict[str, str]:
    """The stand-ins at the providers' typical latencies (they speak and transcribe for real,
    in this process); the worker's environment that points at them."""
    from agent.engines.whisper_stt import WhisperSTT, load_whisper
    from standins import start_standins

    whisper = WhisperSTT(load_whisper(None, threads=1, verify=False))
    standins = stack.enter_context(
        start_standins(
            render=hibari.render,
            rate=hibari.sample_rate,
            transcribe=lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en"),
        )
    )
    standins.all_healthy(stt=args.stt, llm=args.llm, tts=args.tts)
    return standins.env()


def stop_all_workers() -> None:
    for worker in _STARTED:
        worker.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        stop_all_workers()
