"""Time to first word from a real browser and from the caller simulator, pre-dispatched vs
dispatched on join, in one run against one worker.

It starts a worker (`agent.py start`) and the web app (`python -m agent.web`) on the local
LiveKit server, and headless Chromium (Playwright, as tests/test_e2e_web.py, with a silent
fake microphone). Then, round after round, four calls, one at a time:
  - browser, predispatched: opens /call/<account> (the page asks for its token, which
    creates the room with the agent dispatched), waits --lead seconds, clicks Call;
  - browser, on join: the same page with `?predispatch=0` (the agent is dispatched when
    the browser joins);
  - simulator, predispatched / on join: the caller simulator, through the web app's token
    with the same lead, or in a room of its own.
Both callers measure the same thing: from their `connect()` returning to the agent's first
audible frame (-45 dBFS). The page shows what it measured (`window.firstword.ttfwMs`); that
is the browser's figure. Interleaving the four kinds makes the machine's load fall on all
of them alike. Prints p50/p90/p99 side by side and the on-join / pre-dispatched ratios;
writes .cache/bench/<time>/ttfw-web.json.

    scripts/bench-web.sh [--calls 10] [--lead 1.0] [--account harbor-dental]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, async_playwright

from agent.settings import PROJECT_ROOT, get_settings
from benchmarks.stats import shown
from benchmarks.ttfw import WebApp, Worker, _stats
from caller.browser import CHROMIUM, chromium_args, silent_wav
from caller.simulator import CallOptions, run_call

KINDS = (
    ("browser", "predispatched"),
    ("browser", "on join"),
    ("simulator", "predispatched"),
    ("simulator", "on join"),
)


@dataclass
class WebSample:
    caller: str  # browser | simulator
    dispatch: str  # predispatched | on join
    ttfw_ms: float | None
    room: str = ""


async def _browser_call(
    browser: Browser, base: str, account: str, predispatch: bool, lead_s: float
) -> WebSample:
    dispatch = "predispatched" if predispatch else "on join"
    page = await browser.new_page()
    try:
        query = "" if predispatch else "?predispatch=0"
        await page.goto(f"{base}/call/{account}{query}")
        # The page asks for its token as it opens; a person clicks a moment later.
        await asyncio.sleep(lead_s)
        await page.click("#call")
        try:
            await page.wait_for_function("window.firstword.ttfwMs !== null", timeout=30_000)
        except Exception:
            state = await page.evaluate("JSON.stringify(window.firstword)")
            print(f"  browser {dispatch}: no first word within 30 s; page state {state}")
            return WebSample("browser", dispatch, None)
        ttfw = float(await page.evaluate("window.firstword.ttfwMs"))
        room = str(await page.evaluate("window.firstword.room"))
        await page.click("#hangup")
        return WebSample("browser", dispatch, ttfw, room)
    finally:
        await page.close()


async def _simulator_call(
    web_url: str, account: str, predispatch: bool, lead_s: float
) -> WebSample:
    if predispatch:
        options = CallOptions(account=account, web_url=web_url, web_lead_s=lead_s)
    else:
        options = CallOptions(account=account)
    options.greeting_timeout_s = 30.0
    report = await run_call(get_settings(), [], None, options)
    ttfw = None if report.ttfw_s is None else report.ttfw_s * 1000
    return WebSample("simulator", "predispatched" if predispatch else "on join", ttfw, report.room)


def _summary(samples: list[WebSample]) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    for caller, dispatch in KINDS:
        values = [s.ttfw_ms for s in samples if (s.caller, s.dispatch) == (caller, dispatch)]
        heard = [v for v in values if v is not None]
        table[f"{caller}, {dispatch}"] = {**_stats(heard), "lost": len(values) - len(heard)}
    ratios: dict[str, float] = {}
    for caller in ("browser", "simulator"):
        pre, join = table[f"{caller}, predispatched"], table[f"{caller}, on join"]
        for q in ("p50", "p90"):
            if pre.get(q) and join.get(q):
                ratios[f"{caller} on join / predispatched ({q})"] = round(join[q] / pre[q], 2)
    return {"ttfw_ms": table, "ratios": ratios}


def _print(summary: dict[str, Any], load: tuple[float, float], out: Path) -> None:
    print("\ntime to first word, ms after the caller's connect() returned (caller-measured)")
    print(f"{'caller, dispatch':28} {'n':>3} {'p50':>6} {'p90':>6} {'p99':>6} {'lost':>5}")
    for name, st in summary["ttfw_ms"].items():
        if "p50" in st:
            print(
                f"{name:28} {st['n']:>3} {st['p50']:>6.0f} {st['p90']:>6.0f} {shown(st['p99'], 6)}"
                f" {st['lost']:>5}"
            )
        else:
            print(f"{name:28}   0      -      -      - {st['lost']:>5}")
    for name, value in summary["ratios"].items():
        print(f"  {name} = {value}")
    print(f"load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f}")
    print(f"results: {out}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10, help="calls of each kind (>= 1)")
    parser.add_argument("--lead", type=float, default=1.0, help="s between token and click")
    parser.add_argument("--gap", type=float, default=0.5, help="s between calls")
    parser.add_argument("--account", default="harbor-dental")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / ".cache" / "bench")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    mic = out / "silence.wav"
    silent_wav(mic)
    load_start = os.getloadavg()[0]

    worker = Worker("firstword", out / "worker.log")
    web = WebApp(out / "web-app.log")
    samples: list[WebSample] = []
    worker.start()
    try:
        await worker.registered(within_s=300)  # prewarm takes minutes on a loaded machine
        await web.start()
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=args.chromium,
                headless=True,
                args=chromium_args(mic),
            )
            try:
                for i in range(args.calls):
                    for caller, dispatch in KINDS:
                        predispatch = dispatch == "predispatched"
                        if caller == "browser":
                            sample = await _browser_call(
                                browser, web.url, args.account, predispatch, args.lead
                            )
                        else:
                            sample = await _simulator_call(
                                web.url, args.account, predispatch, args.lead
                            )
                        samples.append(sample)
                        value = "-" if sample.ttfw_ms is None else f"{sample.ttfw_ms:.0f} ms"
                        print(f"  {i + 1:>3} {caller:9} {dispatch:13} {value}", flush=True)
                        await asyncio.sleep(args.gap)
            finally:
                await browser.close()
    finally:
        web.stop()
        worker.stop()
    summary = _summary(samples)
    load = (load_start, os.getloadavg()[0])
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1min": {"start": load[0], "end": load[1]},
        "lead_s": args.lead,
        **summary,
        "samples": [asdict(s) for s in samples],
    }
    (out / "ttfw-web.json").write_text(json.dumps(result, indent=2))
    _print(summary, load, out / "ttfw-web.json")


if __name__ == "__main__":
    asyncio.run(main())
