"""End to end from the web side: pre-dispatched rooms, and a real browser on the call page."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from livekit import api

from agent.engines.local_tts import LocalTTS
from agent.engines.whisper_stt import WhisperSTT
from agent.settings import PROJECT_ROOT, Settings
from agent.web.app import app_from_settings
from caller.simulator import CallOptions, run_call, web_ticket
from tests.browser_support import launch_chromium, serve_web_app, wait_for
from tests.e2e_support import URL, running_worker
from tests.helpers import similarity

pytestmark = pytest.mark.e2e

WAIT_TIMEOUT_S = 10  # the worker's FIRSTWORD_CALLER_WAIT_TIMEOUT in these tests (a browser on
# a busy machine takes seconds from opening the page, which dispatches, to joining)
SCREENSHOTS = PROJECT_ROOT / "out" / "screenshots"
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
    log = tmp_path_factory.mktemp("web-worker") / "worker.log"
    with running_worker(log, {"FIRSTWORD_CALLER_WAIT_TIMEOUT": str(WAIT_TIMEOUT_S)}):
        yield log


@pytest.fixture
async def web_app(worker_log: Path) -> AsyncIterator[str]:
    server = TestServer(app_from_settings(_settings()), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _agent_present(lk: api.LiveKitAPI, room: str, within: float) -> float | None:
    """Seconds until the agent is in `room` (None: never). (livekit-agents publishes the
    agent's track once a caller is there, so before the caller the agent is connected, its
    session started and its greeting audio at hand, but its track is not out yet.)"""
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            reply = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        except api.TwirpError:
            reply = None
        if reply is not None and any(
            p.kind == api.ParticipantInfo.Kind.AGENT for p in reply.participants
        ):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    return None


async def test_predispatched_agent_is_waiting_and_greets(web_app: str, whisper: WhisperSTT):
    settings = _settings()
    options = CallOptions(account="harbor-dental", web_url=web_app)
    async with api.LiveKitAPI(URL.replace("ws", "http"), "devkey", "secret") as lk:
        # The token alone puts the agent in the room, before any caller connects.
        ticket = await web_ticket(web_app, "harbor-dental")
        ready = await _agent_present(lk, ticket["room"], 15)
        assert ready is not None, "the agent was not in the room before the caller"
        report = await run_call(
            settings,
            [],
            lambda audio, rate: whisper.transcribe_pcm(audio, rate, "en"),
            CallOptions(room=ticket["room"], account="harbor-dental"),
        )
        assert report.ttfw_s is not None
        assert similarity(report.greeting, GREETING) > 0.8, report.greeting
        # And a caller of the simulator's web mode, which asks the web app itself.
        report = await run_call(settings, [], None, options)
        assert report.ttfw_s is not None and report.room.startswith("call-harbor-dental-")


async def test_room_whose_caller_never_comes_is_closed(web_app: str, worker_log: Path):
    ticket = await web_ticket(web_app, "bluebird-bikes")
    async with api.LiveKitAPI(URL.replace("ws", "http"), "devkey", "secret") as lk:
        assert await _agent_present(lk, ticket["room"], 15) is not None
        deadline = time.monotonic() + WAIT_TIMEOUT_S + 15
        while time.monotonic() < deadline:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[ticket["room"]]))
            if not rooms.rooms:
                break
            await asyncio.sleep(0.25)
        else:
            pytest.fail("the pre-dispatched room outlived its caller wait")
    log = await asyncio.to_thread(worker_log.read_text)
    assert f"closing room {ticket['room']}" in log


def _question_wav(path: Path, piper: LocalTTS, text: str) -> None:
    """Chromium's fake microphone loops this file: silence, the question, then long silence."""
    rate = piper.sample_rate
    speech = (np.clip(piper.render(text), -1, 1) * 32767).astype(np.int16)
    audio = np.concatenate(
        [np.zeros(int(rate * 6), np.int16), speech, np.zeros(int(rate * 40), np.int16)]
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())


def test_browser_call_page_greets_and_answers(
    worker_log: Path, piper: LocalTTS, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    wav = tmp_path / "question.wav"
    _question_wav(wav, piper, "How much does a teeth cleaning cost?")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with serve_web_app(_settings()) as base, playwright.sync_playwright() as p:
        browser = launch_chromium(p, wav)
        try:
            page = browser.new_page()
            # The page works under its own Content-Security-Policy: nothing it loads or
            # connects to is refused (agent/web/headers.py).
            refused: list[str] = []
            page.on(
                "console",
                lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(f"{base}/call/harbor-dental")
            assert "frame-ancestors 'none'" in page.evaluate(
                "fetch(location.href).then(r => r.headers.get('content-security-policy'))"
            )
            page.screenshot(path=str(SCREENSHOTS / "call-page-ready.png"))
            page.click("#call")
            wait_for(page, "window.firstword.ttfwMs !== null", timeout=20_000)
            wait_for(
                page,
                "window.firstword.transcript.some(l => l.agent && /Harbor Dental/.test(l.text))",
                timeout=20_000,
            )
            page.screenshot(path=str(SCREENSHOTS / "call-page-greeted.png"))
            wait_for(
                page,
                "window.firstword.transcript.some(l => l.agent && /cleaning/i.test(l.text))",
                timeout=40_000,
            )
            page.screenshot(path=str(SCREENSHOTS / "call-page-answered.png"))
            ttfw = page.evaluate("window.firstword.ttfwMs")
            print(f"browser time to first word: {ttfw} ms")
            assert ttfw > 0
            # The agent is heard: the page's ringback (if it started at all) has stopped.
            assert page.evaluate("window.firstword.ringing") is False
            page.click("#hangup")
            assert not refused, refused
        finally:
            browser.close()
    assert "Traceback" not in worker_log.read_text()
