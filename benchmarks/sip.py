"""Phone (SIP) beside WebRTC: ring time, first word and answer latency on one worker.

Run by `scripts/bench-sip.sh`, which starts Redis, livekit-server in Redis mode and LiveKit's
SIP bridge (scripts/sip.sh) and one worker. Then, alternating, N WebRTC calls (the caller
simulator) and N SIP calls (caller/sip.py) to the same account, each hearing the
greeting and asking one question. Every time is taken by the caller on `perf_counter`:

- WebRTC "dial → first word" = `connect()` + joined → first audible frame;
- SIP "dial → first word" = INVITE → first audible G.711 packet; "answered" = INVITE → 200 OK;
- answer latency (both) = the last frame of the question sent → first audible answer frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from agent.engines.local_tts import load_piper
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import get_settings
from caller.simulator import CallOptions, CallReport, Question, run_call
from caller.sip import SipCallOptions, SipCallReport, bridge_address, run_sip_call

QUESTION = "Hi, what time do you open on Saturdays?"


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    arr = np.array(values) * 1000
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50))),
        "p90": round(float(np.percentile(arr, 90))),
        "max": round(float(arr.max())),
    }


async def _main(args: argparse.Namespace) -> int:
    settings = get_settings()
    bridge = bridge_address(None)
    stt = WhisperSTT(await asyncio.to_thread(load_whisper, None, threads=2, verify=True))
    voice = await asyncio.to_thread(load_piper, None, threads=2, verify=True)
    question = Question(
        QUESTION, await asyncio.to_thread(voice.render, QUESTION), voice.sample_rate
    )

    def transcribe(audio: np.ndarray, rate: int) -> str:
        return stt.transcribe_pcm(audio, rate, "en") if audio.size else ""

    account = settings.default_account
    number = args.number
    webrtc: list[CallReport] = []
    sip: list[SipCallReport] = []
    for i in range(args.calls):
        web = await run_call(
            settings, [question], transcribe, CallOptions(account=account, end_silence_s=2.0)
        )
        webrtc.append(web)
        phone = await run_sip_call(
            [question],
            transcribe,
            SipCallOptions(number=number, bridge=bridge, end_silence_s=2.0),
        )
        sip.append(phone)
        print(
            f"call {i + 1}: webrtc first word {_ms(_webrtc_dial(web))} answer "
            f"{_ms(_latency(web))} | sip answered {_ms(phone.answered_s)} first word "
            f"{_ms(phone.ttfw_s)} answer {_ms(_latency(phone))}",
            flush=True,
        )
        await asyncio.sleep(1.0)  # let the previous call's job end

    rows = {
        "webrtc: dial -> first word": _stats([v for r in webrtc if (v := _webrtc_dial(r))]),
        "webrtc: joined -> first word": _stats([r.ttfw_s for r in webrtc if r.ttfw_s]),
        "webrtc: answer latency": _stats([v for r in webrtc if (v := _latency(r))]),
        "sip: INVITE -> 200 OK": _stats([r.answered_s for r in sip if r.answered_s]),
        "sip: INVITE -> first word": _stats([r.ttfw_s for r in sip if r.ttfw_s]),
        "sip: 200 OK -> first word": _stats(
            [r.ttfw_s - r.answered_s for r in sip if r.ttfw_s and r.answered_s]
        ),
        "sip: answer latency": _stats([v for r in sip if (v := _latency(r))]),
    }
    print(f"\n{'measure':32} {'n':>3} {'p50 ms':>7} {'p90 ms':>7} {'max ms':>7}")
    for name, st in rows.items():
        if st["n"]:
            print(f"{name:32} {st['n']:>3} {st['p50']:>7} {st['p90']:>7} {st['max']:>7}")
        else:
            print(f"{name:32}   0")
    pairs = [
        ("first word (from dial)", "webrtc: dial -> first word", "sip: INVITE -> first word"),
        ("answer latency", "webrtc: answer latency", "sip: answer latency"),
    ]
    for label, web_key, sip_key in pairs:
        web_st, sip_st = rows[web_key], rows[sip_key]
        if web_st["n"] and sip_st["n"]:
            print(
                f"sip / webrtc, {label}: p50 {sip_st['p50'] / web_st['p50']:.2f}, "
                f"p90 {sip_st['p90'] / web_st['p90']:.2f}"
            )
    if args.json:
        out = {
            "rows": rows,
            "webrtc": [r.to_dict() for r in webrtc],
            "sip": [r.to_dict() for r in sip],
        }
        path = Path(args.json)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_text, json.dumps(out, indent=2))
    lost = sum(r.ttfw_s is None for r in webrtc) + sum(r.ttfw_s is None for r in sip)
    return 1 if lost else 0


def _webrtc_dial(report: CallReport) -> float | None:
    return None if report.ttfw_s is None else report.connect_s + report.ttfw_s


def _latency(report: CallReport) -> float | None:
    values = [t.latency_s for t in report.turns if t.latency_s is not None]
    return values[0] if values else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def main() -> None:
    warnings.filterwarnings("ignore", message="The HMAC key is .* bytes long")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sip", description=__doc__)
    parser.add_argument("--calls", type=int, default=10, help="calls of each kind")
    parser.add_argument("--number", default="+15035550100", help="the trunk number to dial")
    parser.add_argument(
        "--json",
        default=str(Path(os.environ.get("FIRSTWORD_CACHE_DIR", ".cache")) / "bench" / "sip.json"),
    )
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
