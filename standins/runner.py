"""Start every stand-in on loopback, in a thread with its own event loop, and give the
settings (environment) that point firstword's real plugins at them."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import numpy as np
from aiohttp import web

from .elevenlabs import ElevenLabsStandin
from .gemini import GeminiStandin
from .google_grpc import GoogleSpeechStandin, GoogleTTSStandin, Transcribe

# Keys the stand-ins accept; anything else is refused, as the real services do.
ELEVEN_KEY = "standin-eleven-key-0123456789"
GOOGLE_KEY = "standin-google-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Standins:
    elevenlabs: ElevenLabsStandin
    gemini: GeminiStandin
    speech: GoogleSpeechStandin
    tts: GoogleTTSStandin
    ports: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What a worker needs to use the stand-ins (credentials included)."""
        return {
            "ELEVEN_API_KEY": ELEVEN_KEY,
            "GOOGLE_API_KEY": GOOGLE_KEY,
            "FIRSTWORD_ELEVENLABS_BASE_URL": f"http://127.0.0.1:{self.ports['elevenlabs']}/v1",
            "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{self.ports['gemini']}",
            "FIRSTWORD_GOOGLE_SPEECH_ENDPOINT": f"127.0.0.1:{self.ports['grpc']}",
            "FIRSTWORD_GOOGLE_TTS_ENDPOINT": f"127.0.0.1:{self.ports['grpc']}",
            "FIRSTWORD_GOOGLE_INSECURE": "true",
        }

    def all_healthy(self, *, stt: float = 0.0, llm: float = 0.0, tts: float = 0.0) -> None:
        self.speech.faults.healthy(stt)
        self.gemini.faults.healthy(llm)
        self.elevenlabs.faults.healthy(tts)
        self.tts.faults.healthy(tts)


@contextmanager
def start_standins(
    *, render: Callable[[str], np.ndarray], rate: int, transcribe: Transcribe
) -> Iterator[Standins]:
    """All four stand-ins, served until the block ends."""
    standins = Standins(
        elevenlabs=ElevenLabsStandin(render, rate=rate, api_key=ELEVEN_KEY),
        gemini=GeminiStandin(api_key=GOOGLE_KEY),
        speech=GoogleSpeechStandin(transcribe),
        tts=GoogleTTSStandin(render, rate=rate),
    )
    standins.ports = {name: _free_port() for name in ("elevenlabs", "gemini", "grpc")}
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        runners = []
        for name, app in (("elevenlabs", standins.elevenlabs.app), ("gemini", standins.gemini.app)):
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", standins.ports[name]).start()
            runners.append(runner)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((standins.speech.handler(), standins.tts.handler()))
        server.add_insecure_port(f"127.0.0.1:{standins.ports['grpc']}")
        await server.start()
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop(grace=None)
            for runner in runners:
                await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the stand-ins did not start in 30 s")
    try:
        yield standins
    finally:
        assert stop is not None
        standins.all_healthy()  # releases hanging requests, so the servers can stop
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        if not thread.is_alive():
            loop.close()
