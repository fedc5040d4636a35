"""A pre-dispatched room (agent/call/ahead.py): the agent's track is out before the caller joins,
and the caller hears the greeting once, whole, from its first word."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from livekit import api

from agent.engines.whisper_stt import WhisperSTT
from agent.settings import Settings
from agent.web.app import app_from_settings
from caller.simulator import CallOptions, run_call, web_ticket
from tests.e2e_support import URL, log_records, running_worker
from tests.helpers import similarity, words

pytestmark = pytest.mark.e2e

GREETING = "Thank you for calling Harbor Dental. How can I help you today?"


def _settings() -> Settings:
    return Settings(
        LIVEKIT_URL=URL,
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="secret",
        # Every test caller is this machine: the per-client cap is tested in test_web.py.
        FIRSTWORD_WEB_MAX_CALLS_PER_CLIENT=0,
    )


@pytest.fixture(scope="module")
def worker_log(livekit_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("predispatch-worker") / "worker.log"
    # Long enough for a slow, shared machine: this test's caller joins once the track is out.
    with running_worker(log, {"FIRSTWORD_CALLER_WAIT_TIMEOUT": "60"}):
        yield log


async def _agent_audio_published(lk: api.LiveKitAPI, room: str, within: float) -> bool:
    """True once the agent is in `room` with an audio track published (the server's view)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            reply = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        except api.TwirpError:
            reply = None
        if reply is not None:
            for p in reply.participants:
                if p.kind == api.ParticipantInfo.Kind.AGENT and any(
                    t.type == api.TrackType.AUDIO for t in p.tracks
                ):
                    return True
        await asyncio.sleep(0.05)
    return False


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, np.int16).astype(np.float32) / 32768, wav.getframerate()


async def test_track_is_out_before_the_caller_and_the_greeting_is_heard_once(
    worker_log: Path, whisper: WhisperSTT, tmp_path: Path
) -> None:
    server = TestServer(app_from_settings(_settings()), host="127.0.0.1")
    await server.start_server()
    try:
        ticket = await web_ticket(str(server.make_url("")).rstrip("/"), "harbor-dental")
    finally:
        await server.close()
    room = ticket["room"]
    async with api.LiveKitAPI(URL.replace("ws", "http"), "devkey", "secret") as lk:
        assert await _agent_audio_published(lk, room, 60), (
            "the agent's audio track was not published before the caller joined"
        )
        reply = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        assert all(p.kind == api.ParticipantInfo.Kind.AGENT for p in reply.participants)

    report = await run_call(
        _settings(),
        [],
        lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en"),
        # Stay a few seconds after the greeting: a second greeting would be recorded.
        CallOptions(
            room=room, account="harbor-dental", pause_before_questions_s=4.0, record_dir=tmp_path
        ),
    )
    assert report.ttfw_s is not None, "no greeting"
    # Whole: the greeting as heard from its first audible frame to the silence after it.
    assert similarity(report.greeting, GREETING) > 0.8, report.greeting
    # Once: everything the caller received holds the greeting once, and nothing else.
    audio, rate = _read_wav(tmp_path / f"{room}.wav")
    everything = await asyncio.to_thread(whisper.transcribe_pcm, audio, rate, "en")
    # Counted by a common word, not the name: Whisper tiny sometimes hears "Harvard Dental".
    # The similarity bound alone also fails a doubled greeting (its ratio is 2/3).
    assert words(everything).count("calling") == 1, everything
    assert similarity(everything, GREETING) > 0.8, everything

    # And the worker took the pre-dispatched path: its session was started ahead.
    for _ in range(50):
        lines = [
            r
            for r in log_records(worker_log)
            if r.get("room") == room and str(r.get("message", "")).startswith("call timeline")
        ]
        if lines:
            break
        await asyncio.sleep(0.2)
    assert lines and lines[0].get("ahead") is True, lines
    marks = lines[0]["timeline_ms"]
    assert marks["track_published"] < marks["caller_joined"]
    assert marks["session_started"] < marks["caller_joined"]
