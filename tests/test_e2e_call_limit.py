"""A call past FIRSTWORD_MAX_CALL_SECONDS: the caller hears why it ends, then it ends."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from livekit import rtc

from agent.accounts import AccountRegistry
from agent.accounts.resolve import ACCOUNT_ATTRIBUTE
from agent.call.call_limit import closing_line
from agent.settings import Settings
from caller.simulator import caller_token
from tests.e2e_support import URL, log_records, running_worker

pytestmark = pytest.mark.e2e

LIMIT_S = 6.0


async def test_a_call_past_its_limit_hears_the_closing_line_and_ends(
    livekit_server: str, tmp_path: Path, registry: AccountRegistry
) -> None:
    room_name = f"call-{uuid.uuid4().hex[:8]}"
    settings = Settings(LIVEKIT_URL=URL, LIVEKIT_API_KEY="devkey", LIVEKIT_API_SECRET="secret")
    token = caller_token(settings, room_name, "caller-limit", {ACCOUNT_ATTRIBUTE: "harbor-dental"})
    env = {"FIRSTWORD_MAX_CALL_SECONDS": str(LIMIT_S)}
    with running_worker(tmp_path / "worker.log", env) as log:
        room = rtc.Room()
        ended = asyncio.Event()
        room.on("disconnected", lambda *_: ended.set())
        await room.connect(URL, token)
        joined = time.monotonic()
        try:
            async with asyncio.timeout(LIMIT_S + 40):
                await ended.wait()
        finally:
            await room.disconnect()
        lasted = time.monotonic() - joined
    # Not before the limit, and not long after it: the closing line, then the room is gone.
    assert LIMIT_S <= lasted <= LIMIT_S + 25, lasted
    lines = [r for r in log_records(log) if r.get("room") == room_name]
    messages = [str(r["message"]) for r in lines]
    assert "call limit reached" in " ".join(str(r["message"]) for r in log_records(log))
    said = [m for m in messages if m.startswith("transcript assistant")]
    closing = closing_line(registry.accounts["harbor-dental"])
    assert any(closing in m for m in said), said
    # The worker's GC was tuned at prewarm, and refrozen once its last call had ended.
    everything = [str(r["message"]) for r in log_records(log)]
    assert "garbage collector tuned" in everything
    assert "garbage collector refrozen while idle" in everything
