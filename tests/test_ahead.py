"""agent/call/ahead.py without a server: a greeting's transcript said before the caller waits."""

from __future__ import annotations

import asyncio

from livekit.agents.voice import io

from agent.accounts import Resolution
from agent.accounts.models import Account
from agent.call.ahead import TextAfterCaller, named_before_caller


class _Collect(io.TextOutput):
    def __init__(self) -> None:
        super().__init__(label="collect", next_in_chain=None)
        self.text: list[str] = []
        self.flushes = 0

    async def capture_text(self, text: str) -> None:
        self.text.append(text)

    def flush(self) -> None:
        self.flushes += 1


async def test_transcript_is_held_until_the_caller_is_linked() -> None:
    linked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sink = _Collect()
    out = TextAfterCaller(sink, lambda: linked)

    async def say() -> None:
        await out.capture_text("Thank you for calling")
        await out.capture_text(" Harbor Dental.")
        out.flush()

    speaking = asyncio.create_task(say())
    await asyncio.sleep(0.05)
    assert sink.text == [] and sink.flushes == 0, "text went out before the caller was linked"
    linked.set_result(None)
    await asyncio.wait_for(speaking, 1.0)
    assert sink.text == ["Thank you for calling", " Harbor Dental."] and sink.flushes == 1


def test_only_an_account_named_by_the_room_is_known_before_the_caller() -> None:
    account = Account.model_construct(
        id="harbor-dental",
        business_name="Harbor Dental",
        greeting="Hello.",
        instructions="",
        handoff_phrase="One moment.",
        faqs=[],
    )
    assert named_before_caller(Resolution(account, "job metadata"))
    assert named_before_caller(Resolution(account, "room metadata"))
    assert not named_before_caller(Resolution(account, "participant attribute firstword.account"))
    assert not named_before_caller(Resolution(account, "room name"))
