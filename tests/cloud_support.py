"""What the cloud tests share: the stand-ins, settings pointing at them, a cloud account."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
from livekit import rtc
from livekit.agents import llm, tts

from agent.accounts import Account
from agent.accounts.models import CloudLLM, CloudSTT, CloudTTS, Providers
from agent.call.assistant import Assistant, grounded_instructions
from agent.engines.audio import float_to_int16_bytes


def cloud_account(base: Account, *, tts_engine: str = "elevenlabs") -> Account:
    return base.model_copy(
        update={
            "providers": Providers(
                stt=[CloudSTT(engine="google")],
                llm=[CloudLLM(engine="gemini")],
                tts=[CloudTTS.model_validate({"engine": tts_engine, "voice": "standin-voice"})],
            )
        }
    )


async def ask(chain: llm.LLM, account: Account, question: str) -> str:
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content=grounded_instructions(account))
    ctx.add_message(role="user", content=question)
    text = ""
    async with chain.chat(
        chat_ctx=ctx, tools=[t for t in Assistant(account).tools if isinstance(t, llm.Tool)]
    ) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                text += chunk.delta.content
    return text.strip()


async def speak(voice: tts.TTS, text: str) -> tuple[np.ndarray, int, float]:
    """The audio of `text` (float32), its rate, and seconds to the first frame."""
    start = time.perf_counter()
    first: float | None = None
    frames: list[rtc.AudioFrame] = []
    async with voice.synthesize(text) as stream:
        async for audio in stream:
            first = first if first is not None else time.perf_counter() - start
            frames.append(audio.frame)
    merged = rtc.combine_audio_frames(frames)
    samples = np.frombuffer(merged.data, dtype=np.int16).astype(np.float32) / 32768
    return samples, merged.sample_rate, first if first is not None else -1.0


async def caller_frames(
    audio: np.ndarray, rate: int, tail: float = 2.0
) -> AsyncIterator[rtc.AudioFrame]:
    """`audio` then `tail` seconds of silence, as 20 ms frames in real time."""
    pcm = float_to_int16_bytes(np.concatenate([audio, np.zeros(int(rate * tail), np.float32)]))
    step = rate // 50
    for i in range(0, len(pcm) // 2 - step, step):
        yield rtc.AudioFrame(pcm[i * 2 : (i + step) * 2], rate, 1, step)
        await asyncio.sleep(0.02)
