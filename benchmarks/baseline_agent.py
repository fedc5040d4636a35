"""The baseline: the common way to build the same agent, with the same engines.

The pattern of LiveKit's starter agent: a job process with no prewarm, set-up done in order
inside the call (load the account, load the engines, build the session, start it, connect),
and a greeting synthesised by the TTS after the session has started.
Run as a worker: `python benchmarks/baseline_agent.py start` (the benchmark does).
"""

from __future__ import annotations

import sys
from pathlib import Path

from livekit.agents import AgentServer, JobContext, cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from livekit.plugins import silero

from agent.accounts import load_accounts
from agent.call.assistant import Assistant
from agent.engines.embedder import load_embedder
from agent.engines.faq_llm import FaqIndex
from agent.engines.whisper_stt import load_whisper
from agent.settings import get_settings
from benchmarks.common import account_voice, local_session, worker_options

# Default executor (a process per job) and default idle processes, as the starter has.
server = AgentServer(**worker_options())


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    settings = get_settings()
    account = load_accounts(settings.accounts_dir, settings.default_account).default
    session = local_session(
        account,
        vad=silero.VAD.load(),
        whisper=load_whisper(None, threads=2, verify=False),
        voice=account_voice(account),
        index=FaqIndex(load_embedder(None, verify=False), list(account.faqs)),
    )
    await session.start(agent=Assistant(account), room=ctx.room)
    await ctx.connect()
    session.say(account.greeting)


if __name__ == "__main__":
    cli.run_app(server)
