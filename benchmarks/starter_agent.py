"""The starter-shaped baseline: the same agent built as LiveKit's agent-starter-python builds one.

The starter prewarms its VAD into `proc.userdata` (`setup_fnc`) and builds the session inside
the call from providers that cost nothing to make (its STT, LLM and TTS are cloud inference
clients). With local engines the same shape loads each engine once per job process, in
prewarm, and the call makes only the session: the account, the Silero VAD, Whisper, the voice
and the FAQ index are ready before the job, as the starter's VAD is. Then, as in the starter,
`session.start(...)` before `ctx.connect()`, and the greeting synthesised by the voice when the
session has started (the starter has no pre-rendered audio). The default job executor (one
process per call) and idle processes, as the starter has.

What it leaves out that firstword does: the greeting pre-rendered, the agent's track published
at connect, engines shared across calls (threads), the room connected while the account loads.
Run as a worker: `python benchmarks/starter_agent.py start` (the benchmark does).
"""

from __future__ import annotations

import sys
from pathlib import Path

from livekit.agents import AgentServer, JobContext, JobProcess, cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from livekit.plugins import silero

from agent.accounts import load_accounts
from agent.call.assistant import Assistant
from agent.engines.embedder import load_embedder
from agent.engines.faq_llm import FaqIndex
from agent.engines.whisper_stt import load_whisper
from agent.settings import get_settings
from benchmarks.common import account_voice, local_session, worker_options


def prewarm(proc: JobProcess) -> None:
    """Everything a call needs that the starter would load once: the VAD and the engines."""
    settings = get_settings()
    account = load_accounts(settings.accounts_dir, settings.default_account).default
    proc.userdata["account"] = account
    proc.userdata["vad"] = silero.VAD.load()
    proc.userdata["whisper"] = load_whisper(None, threads=2, verify=False)
    proc.userdata["voice"] = account_voice(account)
    proc.userdata["index"] = FaqIndex(load_embedder(None, verify=False), list(account.faqs))


server = AgentServer(setup_fnc=prewarm, **worker_options())


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    data = ctx.proc.userdata
    account = data["account"]
    session = local_session(
        account, vad=data["vad"], whisper=data["whisper"], voice=data["voice"], index=data["index"]
    )
    await session.start(agent=Assistant(account), room=ctx.room)
    await ctx.connect()
    session.say(account.greeting)


if __name__ == "__main__":
    cli.run_app(server)
