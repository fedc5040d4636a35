"""A burst of callers against one worker: does every caller hear the business, and how soon?

For each variant of the worker's hold slots (`default`: FIRSTWORD_HOLD_SLOTS unset, derived
from FIRSTWORD_MAX_CALLS; `old-4`: the old fixed default of 4), it starts one worker with
the default settings otherwise, makes one warm-up call, then for each burst size N (a
multiple of the worker's conversation capacity, FIRSTWORD_MAX_CALLS) makes N calls that all
join at once, --rounds times. Every caller stays --stay seconds (so no slot frees during the
burst: a caller is heard from a slot of its own, or not at all until the first callers
leave), timing the agent's first audible audio after joining. Per variant and burst it prints:

- time to hear the business (caller-measured, as scripts/bench.sh) p50/p90/max, and how many
  callers heard it within 2 s (the issue's target);
- held: calls the worker put on hold ("call on hold" in its log);
- redispatched: callers who found every slot of the worker taken and waited for the
  unanswered sweep (agent/worker/unanswered.py) to dispatch their room again once a slot freed;
- lost: callers who heard nothing within --stay seconds.

The callers run in this process on the same machine as the worker (light: no transcription).

    python -m benchmarks.burst [--bursts 3,4] [--rounds 2] [--stay 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.settings import HOLD_SLOTS_PER_CALL, PROJECT_ROOT, get_settings
from benchmarks.capacity import Worker, _settled, stop_all_workers
from caller.simulator import CallOptions, CallReport, run_call

ACCOUNT = "harbor-dental"
TARGET_S = 2.0
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},  # FIRSTWORD_HOLD_SLOTS unset: derived from FIRSTWORD_MAX_CALLS
    "old-4": {"FIRSTWORD_HOLD_SLOTS": "4"},
    # The FFI event routing off (agent/compat.py, route_ffi_events): to see it alone.
    "unrouted": {"FIRSTWORD_FFI_EVENT_ROUTING": "false"},
}


@dataclass
class Burst:
    variant: str
    callers: int
    heard_ms: list[float] = field(default_factory=list)
    lost: int = 0
    held: int = 0
    redispatched: int = 0

    def summary(self) -> dict[str, Any]:
        def p(q: int) -> int | None:
            return round(float(np.percentile(self.heard_ms, q))) if self.heard_ms else None

        return {
            "variant": self.variant,
            "callers": self.callers,
            "n": len(self.heard_ms) + self.lost,
            "heard_p50_ms": p(50),
            "heard_p90_ms": p(90),
            "heard_max_ms": round(max(self.heard_ms)) if self.heard_ms else None,
            "within_2s": sum(1 for ms in self.heard_ms if ms <= TARGET_S * 1000),
            "held": self.held,
            "redispatched": self.redispatched,
            "lost": self.lost,
        }


def _rooms_logged(log: Path, prefix: str) -> set[str]:
    rooms = set()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"message": "{prefix}' in line:
            try:
                room = json.loads(line).get("room")
            except ValueError:
                continue
            if room:
                rooms.add(room)
    return rooms


async def _call(stay_s: float) -> CallReport:
    return await run_call(
        get_settings(), [], None, CallOptions(account=ACCOUNT, hang_up_after_s=stay_s)
    )


async def run_variant(
    name: str, env: dict[str, str], bursts: list[int], args: argparse.Namespace, out: Path
) -> list[dict[str, Any]]:
    worker = Worker(name, env, out / f"{name}.worker.log")
    print(f"== {name}: bursts {bursts} x {args.rounds} round(s)", flush=True)
    await worker.start()
    results: list[dict[str, Any]] = []
    try:
        await _call(1.0)  # warm-up: the bursts measure overflow, not the first connection
        await _settled(worker)
        for n in bursts:
            burst = Burst(name, n)
            for _ in range(args.rounds):
                reports = await asyncio.gather(*(_call(args.stay) for _ in range(n)))
                await _settled(worker)
                rooms = {r.room for r in reports}
                burst.held += len(rooms & _rooms_logged(worker.log, "call on hold"))
                burst.redispatched += len(rooms & _rooms_logged(worker.log, "caller had no"))
                for report in reports:
                    if report.ttfw_s is None:
                        burst.lost += 1
                    else:
                        burst.heard_ms.append(report.ttfw_s * 1000)
                await asyncio.sleep(1.0)
            summary = burst.summary()
            results.append(summary)
            print(f"  {_row(summary)}", flush=True)
    finally:
        worker.stop()
    return results


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def _row(s: dict[str, Any]) -> str:
    return (
        f"{s['variant']:>8} | {s['callers']:>3} callers | heard p50/p90/max"
        f" {_fmt(s['heard_p50_ms']):>5}/{_fmt(s['heard_p90_ms']):>5}/{_fmt(s['heard_max_ms']):>5}"
        f" ms | within 2 s {s['within_2s']:>3}/{s['n']:<3} | held {s['held']:>3}"
        f" | redispatched {s['redispatched']:>3} | lost {s['lost']:>3}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bursts", default="3,4", help="burst sizes, as multiples of FIRSTWORD_MAX_CALLS"
    )
    parser.add_argument("--rounds", type=int, default=2, help="bursts per size")
    parser.add_argument("--stay", type=float, default=10.0, help="seconds each caller stays")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    settings = get_settings()
    max_calls = settings.max_concurrent_calls
    try:
        bursts = [int(m) * max_calls for m in args.bursts.split(",") if m.strip()]
    except ValueError:
        parser.error(f"--bursts {args.bursts!r}: give whole multiples, e.g. 3,4")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    out = PROJECT_ROOT / ".cache" / "bench" / f"burst-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k != "FIRSTWORD_HOLD_SLOTS"}
    base.update(
        {
            "FIRSTWORD_HTTP_PORT": "0",
            "FIRSTWORD_METRICS_PORT": "0",
            "FIRSTWORD_HTTP_HOST": "127.0.0.1",
        }
    )
    results: list[dict[str, Any]] = []
    for name in args.variants.split(","):
        results += await run_variant(name, {**base, **VARIANTS[name]}, bursts, args, out)
        (out / "burst.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nA burst against one worker ({os.cpu_count()} cores; FIRSTWORD_MAX_CALLS={max_calls},"
        f" hold slots: default {HOLD_SLOTS_PER_CALL * max_calls} (derived), old-4 4;"
        f" callers on the same machine, each staying {args.stay:.0f} s)."
        " Time to hear the business, caller-measured from joining:\n"
    )
    for summary in results:
        print(_row(summary))
    print(f"\nresults: {out / 'burst.json'}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        stop_all_workers()
