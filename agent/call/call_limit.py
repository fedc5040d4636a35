"""The longest a call may last: past it the agent says so, says goodbye and ends the call.

A caller (or a script) that stays on the line holds a worker slot, a Whisper turn now and
then and a LiveKit room for as long as they like. FIRSTWORD_MAX_CALL_SECONDS bounds that. The
caller hears why the call ends rather than being cut off: at the limit the agent waits for
the sentence it is saying to finish (up to `FINISH_WAIT_S`), interrupts nothing, says
`closing_line()` and, once it has been heard, deletes the room (which ends every participant's
connection, a SIP caller's included). A person who has taken the call is not cut off: the
limit is the agent's, and a taken call no longer has one.

The timer starts with the agent's first frame and is a task of the call's loop, cancelled
when the call ends (`JobContext.add_shutdown_callback`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentSession, JobContext

from ..accounts import Account

logger = logging.getLogger("firstword.call_limit")

# How long the agent may finish what it is saying when the limit comes.
FINISH_WAIT_S = 15.0
# How long the closing line may take to be heard before the room goes anyway.
CLOSING_WAIT_S = 20.0
DELETE_TIMEOUT_S = 5.0


def closing_line(account: Account) -> str:
    return (
        "We've reached the time limit for this call, so I have to end it now. "
        f"Thank you for calling {account.business_name}. Goodbye."
    )


def attach(
    ctx: JobContext,
    session: AgentSession[Any],
    account: Account,
    limit_s: float,
    *,
    taken: Callable[[], bool] = lambda: False,
) -> asyncio.Task[None] | None:
    """Start the call's limit (None when `limit_s` is 0: no limit)."""
    if limit_s <= 0:
        return None

    async def run() -> None:
        await asyncio.sleep(limit_s)
        if taken():
            return
        logger.info("call limit reached", extra={"account": account.id, "limit_s": limit_s})
        speech = session.current_speech
        if speech is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(speech.wait_for_playout(), FINISH_WAIT_S)
        if taken():
            return
        handle = session.say(closing_line(account), allow_interruptions=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.wait_for_playout(), CLOSING_WAIT_S)
        try:
            await asyncio.wait_for(ctx.delete_room(), DELETE_TIMEOUT_S)
        except Exception:  # the job ends anyway; the server reaps the empty room
            logger.warning("call limit: could not delete the room", exc_info=True)
        ctx.shutdown(reason="call limit reached")

    task = asyncio.create_task(run(), name="call-limit")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    ctx.add_shutdown_callback(stop)
    return task
