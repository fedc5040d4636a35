"""Memory per call of LiveKit's WebRTC alone: the floor under firstword's memory per call.

The capacity benchmark measures ~15 MB of RSS per additional call (local engines, thread
executor) against a call centre's 6 MB, with ~2.7 MB of it on the Python heap. This says how
much of the rest a call costs before any engine runs: a child process holds N agent-side
rooms, each as a call's agent holds it (connected, a published audio track fed 10 ms frames,
the caller's track subscribed and read), and nothing else; this process holds the callers.
The child's RSS is read after each step has had audio flowing both ways for a few seconds,
and the least-squares slope over the steps is the memory of one more call.

Two layouts side by side, in one invocation:
- `loop`: every room on one event loop (the least a process can spend per call);
- `threads`: each room on its own thread and event loop, as firstword's thread executor
  runs each call (per-thread stacks and allocator state come on top).
Both with glibc limited to 2 malloc arenas, as firstword's worker (agent/worker/native_memory.py).

    scripts/bench-memory-floor.sh [--steps 0,1,2,4,8,16] [--settle 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from livekit import api, rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent.settings import get_settings
from agent.worker import native_memory

RATE = 48000
FRAME = RATE // 100  # 10 ms
MB = 1024 * 1024
LAYOUTS = ("loop", "threads")


def _token(room: str, identity: str) -> str:
    settings = get_settings()
    return (
        api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Party:
    """One side of a call: a room, its published track fed in real time, the other side's
    track read. Closed with `aclose` (every task it made is cancelled and awaited)."""

    room: rtc.Room = field(default_factory=rtc.Room)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def join(self, room: str, identity: str, tone_hz: float) -> None:
        await asyncio.wait_for(
            self.room.connect(get_settings().livekit_url, _token(room, identity)), 15.0
        )
        source = rtc.AudioSource(RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("audio", source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self.tasks.append(asyncio.create_task(_feed(source, tone_hz)))
        self.room.on("track_subscribed", self._on_track)

    def _on_track(self, track: rtc.Track, *_: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self.tasks.append(asyncio.create_task(_drain(rtc.AudioStream(track))))

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.room.disconnect(), 10.0)


async def _feed(source: rtc.AudioSource, tone_hz: float) -> None:
    t = np.arange(FRAME) / RATE
    start = time.monotonic()
    sent = 0
    while True:
        phase = 2 * np.pi * tone_hz * sent * FRAME / RATE
        samples = (0.2 * 32767 * np.sin(2 * np.pi * tone_hz * t + phase)).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
        sent += 1
        # Real time: a frame each 10 ms (the source's queue would otherwise fill ahead).
        await asyncio.sleep(max(0.0, start + sent * 0.01 - time.monotonic()))


async def _drain(stream: rtc.AudioStream) -> None:
    try:
        async for _event in stream:
            pass
    finally:
        await stream.aclose()


# ---- the measured process: agent-side rooms --------------------------------------------


class ThreadedParty:
    """A Party on a thread and event loop of its own (the thread executor's layout)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.party: Party | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def join(self, room: str, identity: str) -> None:
        async def _join() -> None:
            self.party = Party()
            await self.party.join(room, identity, 440.0)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_join(), self.loop))

    async def aclose(self) -> None:
        if self.party is not None:
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.party.aclose(), self.loop)
            )
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join, 10.0)
        self.loop.close()


async def agents_main(layout: str) -> None:
    """Reads `join <room>` and `rss` lines from stdin; answers each with one JSON line."""
    native_memory.limit_arenas(2)
    parties: list[Party | ThreadedParty] = []
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().split():
            if line[0] == "join":
                party: Party | ThreadedParty = ThreadedParty() if layout == "threads" else Party()
                if isinstance(party, Party):
                    await party.join(line[1], f"agent-{line[1]}", 440.0)
                else:
                    await party.join(line[1], f"agent-{line[1]}")
                parties.append(party)
                print(json.dumps({"joined": line[1]}), flush=True)
            elif line[0] == "rss":
                native_memory.give_back()
                reply = {"rss": _rss_bytes(), "cpu": time.process_time(), "rooms": len(parties)}
                print(json.dumps(reply), flush=True)
    finally:
        for party in parties:
            await party.aclose()


# ---- the benchmark: callers, steps, the table ------------------------------------------


@dataclass
class Agents:
    layout: str
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.memory_floor", "--agents", self.layout,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def ask(self, line: str) -> dict[str, Any]:
        assert self.process and self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        reply = await asyncio.wait_for(self.process.stdout.readline(), 30.0)
        if not reply:
            raise RuntimeError(f"the {self.layout} agent process exited")
        return dict(json.loads(reply))

    async def stop(self) -> None:
        if self.process is None:
            return
        assert self.process.stdin
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30.0)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def run_layout(layout: str, steps: list[int], settle_s: float) -> dict[str, Any]:
    agents = Agents(layout)
    callers: list[Party] = []
    points: list[tuple[int, int]] = []
    cores: list[tuple[int, float]] = []
    await agents.start()
    try:
        await asyncio.sleep(1.0)  # the child's imports
        for n in steps:
            while len(callers) < n:
                room = f"floor-{uuid.uuid4().hex[:8]}"
                caller = Party()
                await caller.join(room, f"caller-{room}", 300.0)
                callers.append(caller)
                await agents.ask(f"join {room}")
            before, t0 = await agents.ask("rss"), time.monotonic()
            await asyncio.sleep(settle_s)  # audio flowing both ways
            reply = await agents.ask("rss")
            busy = (reply["cpu"] - before["cpu"]) / (time.monotonic() - t0)
            points.append((n, int(reply["rss"])))
            cores.append((n, busy))
            print(
                f"  {layout:7s} {n:3d} calls: agent process RSS {reply['rss'] / MB:7.1f} MB,"
                f" CPU {busy:.3f} cores"
            )
    finally:
        for caller in callers:
            await caller.aclose()
        await agents.stop()
    xs = np.array([n for n, _ in points], dtype=float)
    ys = np.array([r for _, r in points], dtype=float)
    slope = float(np.polyfit(xs, ys, 1)[0]) if len(set(xs.tolist())) > 1 else None
    from_first = [(n, r) for n, r in points if n >= 1]
    slope_first = (
        float(np.polyfit([n for n, _ in from_first], [r for _, r in from_first], 1)[0])
        if len({n for n, _ in from_first}) > 1
        else None
    )
    cxs, cys = [float(n) for n, _ in cores], [c for _, c in cores]
    cpu_fit = np.polyfit(cxs, cys, 1) if len(set(cxs)) > 1 else None
    return {
        "layout": layout,
        "cores_per_call": None if cpu_fit is None else round(float(cpu_fit[0]), 4),
        "points_mb": [(n, round(r / MB, 1)) for n, r in points],
        "mb_per_call": round(slope / MB, 2) if slope is not None else None,
        "mb_per_call_from_first": round(slope_first / MB, 2) if slope_first is not None else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="0,1,2,4,8,16", help="simultaneous calls per step")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds of audio per step")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--agents", choices=LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agents:
        await agents_main(args.agents)
        return
    steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    results = []
    for layout in args.layouts.split(","):
        if layout not in LAYOUTS:
            parser.error(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
        print(f"== {layout}: steps {steps}, {args.settle:.0f} s of audio each", flush=True)
        results.append(await run_layout(layout, steps, args.settle))
    print(
        "\n| layout | RSS MB at each step (calls: MB) | MB per call | from the 1st call on"
        " | CPU cores per call |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        points = ", ".join(f"{n}: {mb}" for n, mb in r["points_mb"])
        print(
            f"| {r['layout']} | {points} | {r['mb_per_call']} | {r['mb_per_call_from_first']}"
            f" | {r['cores_per_call']} |"
        )
    print(
        "\nThe floor under firstword's RSS per call (scripts/bench-capacity.sh): what one "
        "LiveKit room with audio both ways costs before any engine runs."
    )


if __name__ == "__main__":
    asyncio.run(main())
