"""The LiveKit worker: per-process prewarm of the engines, and one session per call.

Every room gets the agent (automatic dispatch). For each call the account is chosen from
the job's metadata, the room, and the caller (see `agent.accounts.resolve`), and the agent
greets the caller with the account's greeting as soon as the session is up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from livekit import rtc
from livekit.agents import (
    AgentServer,
    AgentSession,
    CloseEvent,
    JobContext,
    JobProcess,
    inference,
    room_io,
)

from .accounts import AccountRegistry, CallHints, load_accounts, resolve_account
from .assistant import Assistant
from .pools import EnginePool, load_pool
from .settings import get_settings

logger = logging.getLogger("firstword.worker")


def prewarm(proc: JobProcess) -> None:
    """Load accounts and engines once per job process, before any call arrives."""
    start = time.perf_counter()
    settings = get_settings()
    registry = load_accounts(settings.accounts_dir, settings.default_account)
    proc.userdata["accounts"] = registry
    proc.userdata["pool"] = load_pool(settings, registry)
    logger.info(
        "process prewarmed", extra={"prewarm_seconds": round(time.perf_counter() - start, 3)}
    )


def _build_server() -> AgentServer:
    settings = get_settings()
    return AgentServer(
        setup_fnc=prewarm,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=settings.livekit_api_secret.get_secret_value(),
        num_idle_processes=settings.idle_processes,
        port=settings.http_port,
        # Loading whisper + two voices + the embedder takes a few seconds on 2 cores.
        initialize_process_timeout=60.0,
        # The default CPU-based load reads ~1.0 on a busy 2-core box and would refuse
        # every job; we count calls instead.
        load_fnc=_load_by_calls,
        load_threshold=1.0,
        # Two reconnect attempts, not sixteen: an unreachable server is reported, not hidden.
        max_retry=2,
        log_level=settings.log_level,
    )


def _load_by_calls(server: AgentServer) -> float:
    return min(1.0, len(server.active_jobs) / max(1, get_settings().max_concurrent_calls))


server = _build_server()


def _text(value: object) -> str:
    # Console mode hands us stand-in objects where a real room has strings.
    return value if isinstance(value, str) else ""


def _caller_hints(ctx: JobContext, caller: rtc.RemoteParticipant) -> CallHints:
    attributes = caller.attributes if isinstance(caller.attributes, Mapping) else {}
    return CallHints(
        job_metadata=_text(ctx.job.metadata),
        room_metadata=_text(ctx.room.metadata),
        room_name=_text(ctx.room.name),
        participant_attributes={k: v for k, v in attributes.items() if isinstance(v, str)},
        participant_metadata=_text(caller.metadata),
    )


@server.rtc_session(agent_name=get_settings().agent_name)
async def entrypoint(ctx: JobContext) -> None:
    """One call: connect, find the caller and their account, start the session, greet."""
    t0 = time.perf_counter()
    registry: AccountRegistry = ctx.proc.userdata["accounts"]
    pool: EnginePool = ctx.proc.userdata["pool"]

    await ctx.connect()
    caller = await ctx.wait_for_participant()
    resolution = resolve_account(registry, _caller_hints(ctx, caller))
    account = resolution.account

    session: AgentSession[Any] = AgentSession(
        vad=pool.vad,
        stt=pool.stt,
        llm=pool.llm_for(account),
        tts=pool.tts_for(account.voice),
        turn_handling={
            # The local v1-mini model; the default would call LiveKit's hosted detector.
            "turn_detection": inference.TurnDetector(version="v1-mini"),
            "interruption": {"mode": "vad"},
            "endpointing": {"min_delay": 0.4, "max_delay": 1.5},
            # Answers are stored text, so rendering them before the turn is confirmed
            # wastes nothing and takes the TTS out of the critical path.
            "preemptive_generation": {"enabled": True, "preemptive_tts": True},
        },
    )

    # The session closes when the caller leaves; end the job with it, so the agent leaves
    # the room and the process is freed now rather than when the server reaps the room.
    @session.on("close")
    def _on_close(event: CloseEvent) -> None:
        ctx.shutdown(reason=f"session closed: {event.reason}")

    await session.start(
        agent=Assistant(account),
        room=ctx.room,
        room_options=room_io.RoomOptions(participant_identity=caller.identity),
    )
    session.say(account.greeting)
    logger.info(
        "call started",
        extra={
            "room": ctx.room.name,
            "caller": caller.identity,
            "account": account.id,
            "account_source": resolution.source,
            "setup_seconds": round(time.perf_counter() - t0, 3),
        },
    )
