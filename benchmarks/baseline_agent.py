"""The baseline: the common way to build the same agent, with the same engines.

The pattern of LiveKit's starter agent: a job process with no prewarm, set-up done in order
inside the call (load the account, load the engines, build the session, start it, connect),
and a greeting synthesised by the TTS after the session has started.
Run as a worker: `python benchmarks/baseline_agent.py start` (the benchmark does).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from livekit.agents import AgentServer, AgentSession, JobContext, cli, inference

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from livekit.plugins import silero

from agent.accounts import load_accounts
from agent.call.assistant import Assistant
from agent.engines.embedder import load_embedder
from agent.engines.faq_llm import FaqIndex, FaqLLM
from agent.engines.local_tts import load_hibari, load_piper
from agent.engines.whisper_stt import WhisperSTT, load_whisper
from agent.settings import get_settings
from benchmarks.common import worker_options

# Default executor (a process per job) and default idle processes, as the starter has.
server = AgentServer(**worker_options())


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    settings = get_settings()
    account = load_accounts(settings.accounts_dir, settings.default_account).default
    tts = (
        load_piper(None, threads=2, verify=False)
        if account.voice.engine == "piper"
        else load_hibari(threads=2, verify=False)
    )
    session: AgentSession[Any] = AgentSession(
        vad=silero.VAD.load(),
        stt=WhisperSTT(load_whisper(None, threads=2, verify=False)),
        llm=FaqLLM(
            account,
            FaqIndex(load_embedder(None, verify=False), list(account.faqs)),
            min_score=settings.faq_min_score,
        ),
        tts=tts,
        turn_handling={
            "turn_detection": inference.TurnDetector(version="v1-mini"),
            "interruption": {"mode": "vad"},
        },
    )
    await session.start(agent=Assistant(account), room=ctx.room)
    await ctx.connect()
    session.say(account.greeting)


if __name__ == "__main__":
    cli.run_app(server)
