"""What building a call's Gemini LLM costs: the plugin's own client against one shared TLS context.

Every cloud call builds a `google.LLM` (agent/cloud/plugins.py). As shipped, its
`google.genai.Client` creates three TLS contexts, each loading the CA bundle; with
`compat.share_gemini_tls` every client uses the process's one context. This builds the LLM
`--builds` times each way, in one process (shipped first, then shared: the wrap is
process-wide), and prints the CPU and wall time per build (p50/p90/p99) and the ratio, plus
the memory each build keeps (RSS growth over 20 builds kept alive).

    python -m benchmarks.gemini_client [--builds 30]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import psutil
from livekit.plugins import google

from agent import compat
from agent.cloud.plugins import tls_context


def _build() -> google.LLM:
    return google.LLM(model="gemini-2.5-flash", api_key="k" * 39, temperature=0.3)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure(builds: int) -> dict[str, float]:
    _build()  # imports and first-use caches out of the figures
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(builds):
        c, w = time.process_time(), time.perf_counter()
        _build()
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    # RSS, not the Python heap: a TLS context's CA store is OpenSSL's (native) memory.
    gc.collect()
    before = psutil.Process().memory_info().rss
    kept = [_build() for _ in range(20)]
    held = (psutil.Process().memory_info().rss - before) / len(kept) / 1024 / 1024
    return {
        "cpu_p50": statistics.median(cpu),
        "cpu_p90": _percentile(cpu, 0.9),
        "cpu_p99": _percentile(cpu, 0.99),
        "wall_p50": statistics.median(wall),
        "wall_p90": _percentile(wall, 0.9),
        "rss_mb": held,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", type=int, default=30)
    args = parser.parse_args()
    shipped = _measure(args.builds)
    compat.share_gemini_tls(tls_context())
    shared = _measure(args.builds)
    print(f"google.LLM built {args.builds} times each way (ms per build; RSS MB kept per build)")
    print("| client | CPU p50 / p90 / p99 | wall p50 / p90 | RSS MB |")
    print("|---|---|---|---|")
    for name, r in (("as shipped", shipped), ("one shared TLS context", shared)):
        print(
            f"| {name} | {r['cpu_p50']:.1f} / {r['cpu_p90']:.1f} / {r['cpu_p99']:.1f} "
            f"| {r['wall_p50']:.1f} / {r['wall_p90']:.1f} | {r['rss_mb']:.2f} |"
        )
    print(f"shipped / shared, CPU p50: {shipped['cpu_p50'] / shared['cpu_p50']:.1f}x")


if __name__ == "__main__":
    main()
