"""Soak: many calls with random hang-up points against one worker; nothing lost, nothing leaks.

One worker with the default settings (its FIRSTWORD_MAX_CALLS unless --max-calls), then
--calls callers, at most --concurrency at once, each hanging up at a random point:
  - before: 0.1-0.6 s after joining, before the first word;
  - first-word: the moment it hears the agent;
  - mid-answer: asks one question and leaves as the answer starts;
  - after: hears the whole answer, then leaves.
It reports:
  - calls lost: a caller who stayed for it (every kind but `before`) and heard nothing
    within 3 s of joining (and of those, how many heard nothing within 15 s); and
    mid-answer/after callers who got no answer;
  - tracebacks and other bad lines in the worker's log;
  - the worker tree's threads, open file descriptors and RSS, idle, after the warm-up calls
    and after the last call (every --sample-every calls the callers drain and it is sampled
    idle), with the slope per 100 calls (least squares over those idle samples).

    python -m benchmarks.soak [--calls 200] [--concurrency N] [--executor thread] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from agent.engines.local_tts import load_hibari
from agent.settings import PROJECT_ROOT, get_settings
from benchmarks.capacity import Worker, _settled, stop_all_workers
from caller.simulator import CallOptions, CallReport, Question, run_call

KINDS = ("before", "first-word", "mid-answer", "after")
HEARD_WITHIN_S = 3.0
NEVER_S = 15.0
BAD_LOG = ("Traceback", "Task was destroyed", "Unclosed", "unhandled exception")
QUESTIONS = ["What are your opening hours?", "How much does a teeth cleaning cost?"]


@dataclass
class Sample:
    calls_done: int
    threads: int
    fds: int
    rss_mb: float
    heap_mb: float = 0.0  # the Python heap, with FIRSTWORD_TRACEMALLOC=1 (else 0)


def tree_sample(worker: Worker, calls_done: int) -> Sample:
    threads = fds = rss = 0
    for proc in worker.tree():
        try:
            threads += proc.num_threads()
            fds += proc.num_fds()
            rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    try:
        heap = worker.metrics().get("firstword_python_heap_bytes", 0.0)
    except OSError:  # a scrape that failed: the heap is a reading, not a verdict
        heap = 0.0
    return Sample(calls_done, threads, fds, round(rss / 1024 / 1024, 1), round(heap / 1024**2, 1))


def _no_transcript(_audio: np.ndarray, _rate: int) -> str:
    return ""


async def one_call(kind: str, questions: list[Question], rng: random.Random) -> CallReport:
    settings = get_settings()
    # Waits longer than the 3 s bound, to tell a late greeting from none at all.
    options = CallOptions(account="harbor-dental", greeting_timeout_s=NEVER_S)
    if kind == "before":
        options.hang_up_after_s = rng.uniform(0.1, 0.6)
        return await run_call(settings, [], None, options)
    if kind == "first-word":
        return await run_call(settings, [], None, options)
    options.hang_up_mid_answer = kind == "mid-answer"
    options.end_silence_s = 0.8
    return await run_call(settings, [rng.choice(questions)], _no_transcript, options)


async def soak(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    hibari = load_hibari(threads=1, verify=False)
    questions = [Question(q, hibari.render(q), hibari.sample_rate) for q in QUESTIONS]
    env = {
        **os.environ,
        "FIRSTWORD_JOB_EXECUTOR": args.executor,
        "FIRSTWORD_HTTP_PORT": "0",
        "FIRSTWORD_METRICS_PORT": "0",
        "FIRSTWORD_HTTP_HOST": "127.0.0.1",
    }
    if args.max_calls:
        env["FIRSTWORD_MAX_CALLS"] = str(args.max_calls)
    worker = Worker("soak", env, out / "soak.worker.log")
    await worker.start()
    outcomes: list[dict[str, Any]] = []
    samples: list[Sample] = []
    try:
        # Warm-up: the first calls fill caches (imports, codec state, pools) once.
        for _ in range(args.warmup):
            await one_call("first-word", questions, rng)
        await _settled(worker)
        await asyncio.sleep(2.0)
        samples.append(tree_sample(worker, 0))
        print(f"idle after {args.warmup} warm-up calls: {samples[0]}", flush=True)
        gate = asyncio.Semaphore(args.concurrency)
        done = 0

        async def caller(kind: str) -> None:
            nonlocal done
            async with gate:
                report = await one_call(kind, questions, rng)
            done += 1
            heard = report.ttfw_s is not None and report.ttfw_s <= HEARD_WITHIN_S
            answered = any(t.latency_s is not None for t in report.turns)
            outcomes.append(
                {
                    "kind": kind,
                    "room": report.room,
                    "ttfw_s": report.ttfw_s,
                    "lost": kind != "before" and not heard,
                    "never_heard": kind != "before" and report.ttfw_s is None,
                    "unanswered": kind in ("mid-answer", "after") and heard and not answered,
                }
            )

        start = time.monotonic()
        for batch_start in range(0, args.calls, args.sample_every):
            batch = min(args.sample_every, args.calls - batch_start)
            tasks = []
            for _ in range(batch):
                tasks.append(asyncio.create_task(caller(rng.choice(KINDS))))
                await asyncio.sleep(rng.uniform(0.0, args.max_gap))
            await asyncio.gather(*tasks)
            await _settled(worker)
            await asyncio.sleep(2.0)  # teardown of the last jobs (threads, processes)
            samples.append(tree_sample(worker, done))
            lost = sum(o["lost"] for o in outcomes)
            print(f"{done} calls, {lost} lost, {time.monotonic() - start:.0f} s: {samples[-1]}")
    finally:
        worker.stop()
    log = worker.log.read_text(errors="replace")
    bad = {pattern: log.count(pattern) for pattern in BAD_LOG if pattern in log}
    xs = np.array([s.calls_done for s in samples], dtype=float)

    def slope(field: str) -> float | None:
        if len(samples) < 3:
            return None
        ys = np.array([getattr(s, field) for s in samples], dtype=float)
        return round(float(np.polyfit(xs, ys, 1)[0]) * 100, 2)

    ttfw = [o["ttfw_s"] * 1000 for o in outcomes if o["ttfw_s"] is not None]
    return {
        "calls": len(outcomes),
        "by_kind": {k: sum(o["kind"] == k for o in outcomes) for k in KINDS},
        "lost": [o for o in outcomes if o["lost"]],
        "never_heard": [o for o in outcomes if o["never_heard"]],
        "unanswered": [o for o in outcomes if o["unanswered"]],
        "ttfw_ms": {
            "p50": round(float(np.percentile(ttfw, 50))) if ttfw else None,
            "p90": round(float(np.percentile(ttfw, 90))) if ttfw else None,
            "max": round(max(ttfw)) if ttfw else None,
        },
        "bad_log_lines": bad,
        "before": asdict(samples[0]),
        "after": asdict(samples[-1]),
        "slope_per_100_calls": {f: slope(f) for f in ("threads", "fds", "rss_mb", "heap_mb")},
        "samples": [asdict(s) for s in samples],
        "worker_log": str(worker.log),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=get_settings().max_concurrent_calls,
        help="callers at once (default: FIRSTWORD_MAX_CALLS, the measured capacity)",
    )
    parser.add_argument("--max-calls", type=int, default=0, help="the worker's FIRSTWORD_MAX_CALLS")
    parser.add_argument("--executor", choices=("thread", "process"), default="thread")
    parser.add_argument("--warmup", type=int, default=5, help="calls before the first sample")
    parser.add_argument("--sample-every", type=int, default=20, help="calls between samples")
    parser.add_argument("--max-gap", type=float, default=0.5, help="most seconds between callers")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    out = PROJECT_ROOT / ".cache" / "bench" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(soak(args, out))
    finally:
        stop_all_workers()
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    before, after, slopes = result["before"], result["after"], result["slope_per_100_calls"]
    print(f"\nsoak: {result['calls']} calls {result['by_kind']}, concurrency {args.concurrency},")
    print(f"  executor {args.executor} ({os.cpu_count()} cores; callers on the same machine)")
    print(f"  lost (stayed, heard nothing within {HEARD_WITHIN_S:.0f} s): {len(result['lost'])}")
    print(f"  of which heard nothing within {NEVER_S:.0f} s: {len(result['never_heard'])}")
    print(f"  greeted but not answered: {len(result['unanswered'])}")
    print(f"  time to first word ms: {result['ttfw_ms']}")
    print(f"  bad worker log lines: {result['bad_log_lines'] or 'none'}")
    print("  worker tree, idle    before -> after   slope per 100 calls")
    fields = [("threads", ""), ("fds", ""), ("rss_mb", " MB")]
    if after["heap_mb"]:
        fields.append(("heap_mb", " MB"))
    for field, unit in fields:
        print(f"    {field:8} {before[field]:>10}{unit} -> {after[field]}{unit}   {slopes[field]}")
    print(f"results: {out / 'soak.json'}; worker log: {result['worker_log']}")
    if result["lost"] or result["bad_log_lines"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
