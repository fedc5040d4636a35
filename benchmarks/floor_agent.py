"""The floor: a bare agent with no engines that publishes a tone the instant it joins.

Nothing can greet a caller sooner on this machine, server and WebRTC path, so the
benchmark reports firstword's time to first word as a difference from this one.
Run as a worker: `python benchmarks/floor_agent.py start` (the benchmark does).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import worker_options

RATE = 48000
FRAME = RATE // 100  # 10 ms
TONE_S = 3.0


def _tone() -> list[rtc.AudioFrame]:
    t = np.arange(int(RATE * TONE_S)) / RATE
    samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return [
        rtc.AudioFrame(samples[i : i + FRAME].tobytes(), RATE, 1, FRAME)
        for i in range(0, samples.size - FRAME + 1, FRAME)
    ]


TONE = _tone()  # made once per process, before any call
server = AgentServer(job_executor_type=JobExecutorType.THREAD, **worker_options())


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    # Frames go out from the first moment; the caller hears the tone once subscribed.
    publish = asyncio.ensure_future(
        ctx.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
    )
    try:
        await publish
        for frame in TONE:
            await source.capture_frame(frame)
    finally:
        await source.aclose()
    ctx.shutdown(reason="tone played")


if __name__ == "__main__":
    cli.run_app(server)
