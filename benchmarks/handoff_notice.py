"""How soon the front desk can know of a handoff.

`scripts/bench-handoff.sh` starts the local server; this starts the worker (`python agent.py
start`) and makes N calls to the default account, each asking a question its facts do not
cover, so the agent says its handoff phrase. While each call runs, the server API is polled
every 50 ms for the agent participant's `firstword.handoff` attribute, the state the desk
lists calls from (it polls that API once a second). Per call, from the end of the caller's
question (the simulator's clock, CLOCK_MONOTONIC like this process's):

- `requested seen`: the attribute reads "requested" at the server;
- `phrase starts`: the agent's first audible audio of the phrase at the caller;
- `phrase ends`: its last audible audio. Before the request was published as the phrase
  began (issue 22), it was published once the phrase had been said: at this moment plus the
  publish, which is what the column after it shows the new request saves.

Nobody takes the handoff: each call hangs up after the phrase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from livekit import api

from agent.engines.local_tts import load_piper
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.server_api import server_api
from agent.settings import PROJECT_ROOT, get_settings
from benchmarks.failover import _worker
from benchmarks.stats import percentiles, shown
from caller.simulator import CallOptions, Question, run_call

QUESTION = "Do you sell concert tickets?"
HANDOFF = "firstword.handoff"


async def _watch(lkapi: api.LiveKitAPI, room: str, seen: dict[str, float]) -> None:
    """Poll the room's participants until an agent reads "requested"; note when."""
    while "requested" not in seen:
        try:
            listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
        except Exception:  # the room is not there yet
            listed = None
        for participant in listed.participants if listed else []:
            if participant.attributes.get(HANDOFF) == "requested":
                seen["requested"] = time.perf_counter()
        await asyncio.sleep(0.05)


async def _call(
    lkapi: api.LiveKitAPI, question: Question, stt: WhisperSTT, index: int
) -> dict[str, Any]:
    settings = get_settings()
    room = f"handoff-notice-{os.getpid()}-{index}"
    seen: dict[str, float] = {}
    watcher = asyncio.create_task(_watch(lkapi, room, seen))
    try:
        report = await run_call(
            settings,
            [question],
            lambda audio, rate: stt.transcribe_pcm(audio, rate, "en") if audio.size else "",
            # The phrase ends before the no-take line begins (nobody takes the handoff here):
            # a pause this long splits the two, and none inside the phrase is as long.
            CallOptions(room=room, end_silence_s=0.7),
        )
        # The attribute may land a moment after the caller has heard the whole phrase.
        for _ in range(40):
            if "requested" in seen:
                break
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    turn = report.turns[0] if report.turns else None
    if turn is None or turn.latency_s is None:
        return {"room": room, "answered": False}
    question_end = report.joined_at + turn.asked_at_s
    ms = lambda t: round((t - question_end) * 1000)  # noqa: E731
    return {
        "room": room,
        "answered": True,
        "answer": turn.answer,
        # What the caller heard until the first pause was the phrase alone.
        "phrase_alone": "front desk" in turn.answer and "nobody" not in turn.answer.lower(),
        "requested_seen_ms": ms(seen["requested"]) if "requested" in seen else None,
        "phrase_starts_ms": round(turn.latency_s * 1000),
        "phrase_ends_ms": round((turn.latency_s + turn.answer_audio_s) * 1000),
    }


async def _main(args: argparse.Namespace) -> None:
    out = PROJECT_ROOT / ".cache" / "bench" / time.strftime("%Y%m%d-%H%M%S-handoff")
    out.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    stt = WhisperSTT(await asyncio.to_thread(load_whisper, None, threads=2, verify=True))
    voice = await asyncio.to_thread(load_piper, None, threads=2, verify=True)
    question = Question(
        QUESTION, await asyncio.to_thread(voice.render, QUESTION), voice.sample_rate
    )
    proc = _worker(dict(os.environ), out / "worker.log")
    rows: list[dict[str, Any]] = []
    try:
        async with server_api(settings, timeout_s=2.0) as lkapi:
            for index in range(args.calls):
                row = await _call(lkapi, question, stt, index)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    (out / "handoff_notice.json").write_text(json.dumps(rows, indent=2))
    answered = [r for r in rows if r["answered"]]
    columns = ("requested_seen_ms", "phrase_starts_ms", "phrase_ends_ms")
    print(f"\nms after the end of the caller's question ({len(rows)} calls; {out})")
    print("| | n | p50 | p90 | p99 | max |")
    print("|---|---|---|---|---|---|")
    for column in columns:
        values = [r[column] for r in answered if r[column] is not None]
        st = percentiles(values)
        print(
            f"| {column} | {st['n']} | {shown(st['p50'])} | {shown(st['p90'])} "
            f"| {shown(st['p99'])} | {shown(st['max'])} |"
        )
    saved = [
        r["phrase_ends_ms"] - r["requested_seen_ms"] for r in answered if r["requested_seen_ms"]
    ]
    st = percentiles(saved)
    print(f"| phrase end − requested seen | {st['n']} | {shown(st['p50'])} | {shown(st['p90'])} "
          f"| {shown(st['p99'])} | {shown(st['max'])} |")  # fmt: skip
    unseen = sum(r["answered"] and r["requested_seen_ms"] is None for r in rows)
    print(f"calls unanswered: {len(rows) - len(answered)}; answered, request never seen: {unseen}")
    mixed = sum(not r["phrase_alone"] for r in answered)
    print(f"calls whose first heard line was not the phrase alone (its end is then wrong): {mixed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
