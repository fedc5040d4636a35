"""Time to first word, side by side: baseline, starter, firstword and the floor, in one invocation.

For each mode it starts that mode's worker against the local LiveKit server (one at a time,
so each has the machine to itself), then calls it with the caller simulator:
  - cold: the first call after the worker registered (the worker is restarted per sample);
  - warm: calls one after another;
  - concurrent: rounds of N simultaneous calls, for each N of --concurrency.
The caller measures from `room.connect()` returning to the first audible frame of the
agent (above -45 dBFS), then hangs up. Results go to a JSON and a CSV file; a table and
the ratios between modes are printed.

    scripts/bench.sh [--warm 20] [--cold 3] [--concurrency 1,4,8] [--rounds 3]
                     [--modes baseline,starter,firstword,predispatched,floor]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.settings import PROJECT_ROOT, get_settings
from benchmarks.stats import percentiles, shown
from caller.simulator import CallOptions, run_call

WORKERS = {
    # Everything loaded inside the call: how the same agent is often first written.
    "baseline": ["benchmarks/baseline_agent.py", "start"],
    # LiveKit's agent-starter-python's shape: engines prewarmed once per job process.
    "starter": ["benchmarks/starter_agent.py", "start"],
    "firstword": ["agent.py", "start"],
    # The same worker, called the way the web page calls it: the caller first asks the web
    # app (python -m agent.web) for its token, which creates the room with the agent
    # dispatched, then joins. Measured, like the others, from the caller's connect().
    "predispatched": ["agent.py", "start"],
    "floor": ["benchmarks/floor_agent.py", "start"],
}
BENCH_ACCOUNT = "harbor-dental"
# predispatched: seconds between the token and joining. The page asks for its token when it
# opens; a person clicks "Call" a moment later. Measured from connect(), like every mode.
WEB_LEAD_S = 1.0


@dataclass
class Sample:
    mode: str
    scenario: str  # cold | warm | concurrent-N
    ttfw_ms: float | None
    connect_ms: float
    room: str = ""
    joined_at: float = 0.0  # CLOCK_MONOTONIC, as the worker's timeline
    # The caller's side, ms after its connect() returned: the agent's track subscribed, its
    # first frame of any loudness.
    subscribed_ms: float | None = None
    first_audio_ms: float | None = None


@dataclass
class Worker:
    mode: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    timelines: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        env = {
            **os.environ,
            "FIRSTWORD_HTTP_PORT": "0",
            "FIRSTWORD_METRICS_PORT": "-1",
            "FIRSTWORD_MAX_CALLS": "16",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, *WORKERS[self.mode]],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def registered(self, within_s: float = 120.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if '"registered worker"' in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.mode} worker exited; see {self.log}")
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.mode} worker did not register in {within_s:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.timelines += _timelines(self.log)
        self.process = None


def _timelines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"call timeline' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


@dataclass
class WebApp:
    """`python -m agent.web` on a free loopback port, for the predispatched mode."""

    log: Path
    url: str = ""
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        env = {
            **os.environ,
            "FIRSTWORD_WEB_PORT": str(port),
            # The benchmark is one client asking for hundreds of tokens.
            "FIRSTWORD_WEB_TOKEN_BURST": "100000",
            "FIRSTWORD_WEB_TOKENS_PER_MINUTE": "100000",
            # Every bench caller comes from this machine: no cap on calls per client.
            "FIRSTWORD_WEB_MAX_CALLS_PER_CLIENT": "0",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.web"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return port

    async def start(self) -> None:
        port = self.launch()
        assert self.process is not None
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
                writer.close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the web app exited; see {self.log}") from None
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the web app did not listen within 30 s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


WEB: WebApp | None = None


async def _call(mode: str, scenario: str) -> Sample:
    options = CallOptions(room=f"bench-{mode}-{uuid.uuid4().hex[:8]}", greeting_timeout_s=60.0)
    if mode == "predispatched":
        assert WEB is not None
        options = CallOptions(
            account=BENCH_ACCOUNT,
            web_url=WEB.url,
            web_lead_s=WEB_LEAD_S,
            greeting_timeout_s=60.0,
        )
    report = await run_call(get_settings(), [], None, options)

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000

    return Sample(
        mode,
        scenario,
        ms(report.ttfw_s),
        report.connect_s * 1000,
        report.room,
        report.joined_at,
        ms(report.subscribed_s),
        ms(report.first_audio_s),
    )


async def _bench_mode(
    mode: str, args: argparse.Namespace, out: Path
) -> tuple[list[Sample], Worker]:
    global WEB
    samples: list[Sample] = []
    worker = Worker(mode, out / f"{mode}-worker.log")
    if mode == "predispatched":
        WEB = WebApp(out / "web-app.log")
        await WEB.start()
    try:
        await _bench_worker(mode, args, out, worker, samples)
    finally:
        if WEB is not None:
            WEB.stop()
            WEB = None
    return samples, worker


async def _bench_worker(
    mode: str, args: argparse.Namespace, out: Path, worker: Worker, samples: list[Sample]
) -> None:
    for i in range(args.cold):
        worker.log = out / f"{mode}-worker-{i}.log"
        worker.start()
        try:
            await worker.registered()
            samples.append(await _call(mode, "cold"))
            _progress(samples[-1])
            if i < args.cold - 1:
                continue
            await asyncio.sleep(args.gap)
            for _ in range(args.warm):
                samples.append(await _call(mode, "warm"))
                _progress(samples[-1])
                await asyncio.sleep(args.gap)
            for n in args.concurrency:
                for _ in range(args.rounds):
                    round_ = await asyncio.gather(
                        *(_call(mode, f"concurrent-{n}") for _ in range(n))
                    )
                    samples += round_
                    _progress(*round_)
                    await asyncio.sleep(args.gap + 0.25 * n)
        finally:
            worker.stop()


def _progress(*samples: Sample) -> None:
    for s in samples:
        value = "no greeting" if s.ttfw_ms is None else f"{s.ttfw_ms:.0f} ms"
        print(f"  {s.mode:9} {s.scenario:13} {value}", flush=True)


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {}
    return {**percentiles(values, digits=1), "mean": round(float(np.mean(values)), 1)}


def _breakdown(
    samples: list[Sample], workers: list[Worker], scenario: str, mode: str = "firstword"
) -> dict[str, float]:
    """When each step of `mode`'s calls in `scenario` happened: median ms after the caller's
    connect() returned (negative: before), in the order of those medians.

    The caller and the worker stamp CLOCK_MONOTONIC, so the worker's timeline of a call
    (by room) lines up with the caller's own marks: `caller_connect_started` (connect()
    called), `caller_subscribed` (the agent's track subscribed), `caller_first_audio` (its
    first frame, of any loudness) and `caller_heard` (the first audible frame: the figure).
    Times, not differences between steps, because the order of the steps varies per call
    (a pre-dispatched agent hears of the caller after the caller subscribed to it).
    """
    timelines = {line.get("room"): line for w in workers for line in w.timelines}
    events: dict[str, list[float]] = {}
    for sample in samples:
        line = timelines.get(sample.room)
        if sample.mode != mode or sample.scenario != scenario or line is None:
            continue
        if sample.ttfw_ms is None:
            continue
        origin_ms = (line["origin_monotonic"] - sample.joined_at) * 1000
        for stage, ms in line["timeline_ms"].items():
            events.setdefault(stage, []).append(origin_ms + ms)
        caller = {
            "caller_connect_started": -sample.connect_ms,
            "caller_subscribed": sample.subscribed_ms,
            "caller_first_audio": sample.first_audio_ms,
            "caller_heard": sample.ttfw_ms,
        }
        for name, value in caller.items():
            if value is not None:
                events.setdefault(name, []).append(value)
    medians = {name: round(statistics.median(v), 1) for name, v in events.items()}
    return dict(sorted(medians.items(), key=lambda item: item[1]))


def _report(samples: list[Sample], workers: list[Worker], out: Path) -> dict[str, Any]:
    scenarios = list(dict.fromkeys(s.scenario for s in samples))
    modes = list(dict.fromkeys(s.mode for s in samples))
    table: dict[str, dict[str, dict[str, float]]] = {}
    failures: dict[str, dict[str, int]] = {}
    for mode in modes:
        for scenario in scenarios:
            values = [s.ttfw_ms for s in samples if s.mode == mode and s.scenario == scenario]
            heard = [v for v in values if v is not None]
            table.setdefault(mode, {})[scenario] = _stats(heard)
            failures.setdefault(mode, {})[scenario] = len(values) - len(heard)
    comparisons: dict[str, dict[str, float]] = {}
    for scenario in scenarios:
        fw = table.get("firstword", {}).get(scenario, {})
        base = table.get("baseline", {}).get(scenario, {})
        floor = table.get("floor", {}).get(scenario, {})
        row: dict[str, float] = {}
        if fw and base:
            row["baseline_over_firstword_p50"] = round(base["p50"] / fw["p50"], 2)
        starter = table.get("starter", {}).get(scenario, {})
        if fw and starter:
            row["starter_over_firstword_p50"] = round(starter["p50"] / fw["p50"], 2)
            row["starter_over_firstword_p90"] = round(starter["p90"] / fw["p90"], 2)
        pre = table.get("predispatched", {}).get(scenario, {})
        if fw and pre:
            row["firstword_over_predispatched_p50"] = round(fw["p50"] / pre["p50"], 2)
        if fw and floor:
            row["firstword_minus_floor_p50_ms"] = round(fw["p50"] - floor["p50"], 1)
            row["firstword_minus_floor_p90_ms"] = round(fw["p90"] - floor["p90"], 1)
        comparisons[scenario] = row
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "ttfw_ms": table,
        "no_greeting": failures,
        "comparisons": comparisons,
        "firstword_breakdown_median_ms": {
            scenario: _breakdown(samples, workers, scenario) for scenario in scenarios
        },
        "predispatched_breakdown_median_ms": {
            scenario: _breakdown(samples, workers, scenario, "predispatched")
            for scenario in scenarios
        },
        "samples": [s.__dict__ for s in samples],
    }
    (out / "ttfw.json").write_text(json.dumps(result, indent=2))
    with (out / "ttfw.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["mode", "scenario", "ttfw_ms", "connect_ms", "subscribed_ms", "first_audio_ms"]
        )
        for s in samples:
            writer.writerow(
                [
                    s.mode,
                    s.scenario,
                    s.ttfw_ms,
                    round(s.connect_ms, 1),
                    s.subscribed_ms,
                    s.first_audio_ms,
                ]
            )
    return result


def _print_table(result: dict[str, Any], out: Path) -> None:
    print("\ntime to first word, ms after the caller joined (caller-measured)")
    print(f"{'scenario':14} {'mode':10} {'n':>3} {'p50':>7} {'p90':>7} {'p99':>7} {'lost':>5}")
    scenarios = list(dict.fromkeys(s["scenario"] for s in result["samples"]))
    for scenario in scenarios:
        for mode, rows in result["ttfw_ms"].items():
            st = rows.get(scenario, {})
            lost = result["no_greeting"][mode][scenario]
            if st:
                print(
                    f"{scenario:14} {mode:10} {st['n']:>3} {st['p50']:>7.0f} {st['p90']:>7.0f}"
                    f" {shown(st['p99'], 7)} {lost:>5}"
                )
        for name, value in result["comparisons"].get(scenario, {}).items():
            print(f"{'':14} {name} = {value}")
    print("\nfirstword, when each step happened: median ms after the caller's connect() returned")
    for scenario, steps in result["firstword_breakdown_median_ms"].items():
        if steps:
            print(f"  {scenario}: " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()))
    if any(result["predispatched_breakdown_median_ms"].values()):
        print("\npredispatched, the same (negative: before the caller's connect() returned):")
        for scenario, steps in result["predispatched_breakdown_median_ms"].items():
            if steps:
                print(f"  {scenario}: " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()))
    print(f"\nresults: {out / 'ttfw.json'} and {out / 'ttfw.csv'}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="baseline,starter,firstword,predispatched,floor")
    parser.add_argument("--cold", type=int, default=3, help="worker restarts (cold samples)")
    parser.add_argument("--warm", type=int, default=20, help="sequential warm calls")
    parser.add_argument("--concurrency", default="1,4,8", help="simultaneous calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per concurrency level")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between calls/rounds")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / ".cache" / "bench")
    args = parser.parse_args()
    args.concurrency = [int(n) for n in args.concurrency.split(",") if n]
    if args.cold < 1:
        parser.error("--cold must be at least 1 (the last cold worker runs the other scenarios)")
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)

    samples: list[Sample] = []
    workers: list[Worker] = []
    for mode in args.modes.split(","):
        if mode not in WORKERS:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(WORKERS)}")
        print(f"== {mode}", flush=True)
        mode_samples, worker = await _bench_mode(mode, args, out)
        samples += mode_samples
        workers.append(worker)
    _print_table(_report(samples, workers, out), out)


if __name__ == "__main__":
    asyncio.run(main())
