"""What a stand-in does wrong, set by the test or benchmark that runs it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Faults:
    # Seconds before the first token, audio byte or transcript (the provider's own latency).
    latency: float = 0.0
    # Answer every request with this HTTP status (gRPC: UNAVAILABLE), after `latency`.
    error: int | None = None
    # Accept requests and never answer them.
    hang: bool = False
    # TTS: close the connection after this many seconds of audio were sent.
    # STT: close the stream when the caller starts speaking.
    drop_after: float | None = None
    # Requests received (each HTTP request, WebSocket context or gRPC call).
    requests: int = 0

    def healthy(self, latency: float = 0.0) -> None:
        self.latency, self.error, self.hang, self.drop_after = latency, None, False, None

    async def wait_first(self, already: float = 0.0) -> None:
        """Hold the first byte: forever when hanging, else what is left of the latency."""
        while self.hang:  # noqa: ASYNC110 (a flag the test flips from another thread)
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, self.latency - already))
