"""An `llm.LLM` around a cloud model: breaker, first-token timeout, retries.

A failure before the first token is raised as a non-retryable error, so the fallback
adapter around it moves to the next model (in the end the FAQ answerer) with the same
conversation at once, instead of the plugin's own retries and 10 s timeout.

The model's client is built lazily, in a thread: the Gemini plugin's client loads the CA
bundle three times when it is made (~75 ms on an idle core, 150-300 ms under load, measured
on the cloud account's `account_ready` stage), and the first answer is seconds away when a
call starts. `CallChains` builds it when it warms the call's connections after the
greeting's first frame (`ready`), or the first request does at the latest; the framework's
own prewarm at session start leaves it alone, off the first word's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from . import hedge
from .policy import Policy, as_api_error, failure_kind, first_item

logger = logging.getLogger("firstword.cloud")


class GuardedLLM(llm.LLM):
    def __init__(
        self,
        make: Callable[[], llm.LLM],
        policy: Policy,
        *,
        model: str,
        provider: str,
        local: llm.LLM | None = None,
        hedge_after: float = 0.0,
    ) -> None:
        super().__init__()
        self._make = make  # blocking: run in a thread, once (see the module's docstring)
        self._inner: llm.LLM | None = None
        self._building: asyncio.Future[llm.LLM] | None = None
        self._model, self._provider = model, provider
        self.policy = policy
        # The local answerer races a first token later than `hedge_after` s; 0: never.
        self.local = local
        self.hedge_after = hedge_after

    @property
    def inner(self) -> llm.LLM | None:
        """The model's plugin; None until it is built."""
        return self._inner

    async def ready(self) -> llm.LLM:
        """The model's plugin, built now if it is not yet (once, whoever asks first)."""
        if self._inner is not None:
            return self._inner
        if self._building is None:
            self._building = asyncio.ensure_future(asyncio.to_thread(self._make))
        # Shielded: a cancelled request (an interrupted turn) does not cancel the build.
        try:
            self._inner = await asyncio.shield(self._building)
        except Exception:
            self._building = None  # the next request tries again
            raise
        return self._inner

    @property
    def model(self) -> str:
        return self._inner.model if self._inner is not None else self._model

    @property
    def provider(self) -> str:
        return self._inner.provider if self._inner is not None else self._provider

    def prewarm(self, *, loop: Any = None) -> None:
        # Not built yet: nothing to warm (the build waits for `ready`, after the first word).
        if self._inner is not None:
            self._inner.prewarm()

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _GuardedStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            tool_choice=tool_choice,
        )

    async def aclose(self) -> None:
        building = self._building
        if self._inner is None and building is not None and not building.cancelled():
            # A thread cannot be stopped: let the build finish, then close what it made.
            with contextlib.suppress(Exception):
                self._inner = await building
        if self._inner is not None:
            await self._inner.aclose()


class _GuardedStream(llm.LLMStream):
    def __init__(
        self, guarded: GuardedLLM, *, tool_choice: NotGivenOr[llm.ToolChoice], **kwargs: Any
    ) -> None:
        super().__init__(guarded, **kwargs)
        self._guarded = guarded
        self._tool_choice = tool_choice
        # True once the cloud model gave the whole reply (not the local answerer's hedge):
        # the response cache stores only such replies (agent/cloud/response_cache.py).
        self.served_by_cloud = False

    async def _run(self) -> None:
        policy = self._guarded.policy
        policy.admit()
        for attempt in range(policy.retries + 1):
            sent = False
            try:
                inner = await self._guarded.ready()
                async with inner.chat(
                    chat_ctx=self._chat_ctx,
                    tools=self._tools,
                    tool_choice=self._tool_choice,
                    conn_options=APIConnectOptions(
                        max_retry=0, timeout=policy.total_timeout, retry_interval=0
                    ),
                ) as stream:
                    chunks = aiter(stream)
                    cloud_first = first_item(chunks, policy.first_timeout, policy.name)
                    local = self._guarded.local
                    if (
                        local
                        and 0 < self._guarded.hedge_after < policy.first_timeout
                        and attempt == 0
                    ):
                        # The local stream is opened only if the cloud is late (a stream
                        # starts working as soon as it exists).
                        alt: list[llm.LLMStream] = []

                        async def start_local(
                            local: llm.LLM = local, alt: list[llm.LLMStream] = alt
                        ) -> llm.ChatChunk:
                            alt.append(local.chat(chat_ctx=self._chat_ctx, tools=self._tools))
                            return await anext(aiter(alt[0]))

                        try:
                            winner, chunk = await hedge.race(
                                cloud_first, start_local,
                                after=self._guarded.hedge_after, name=policy.name,
                            )  # fmt: skip
                            if winner == "local":
                                # The cloud was late: counted against its breaker; the
                                # local answer is used whole, the cloud's is dropped.
                                policy.breaker.record_failure("timeout")
                                self._event_ch.send_nowait(chunk)
                                async for chunk in alt[0]:
                                    self._event_ch.send_nowait(chunk)
                                return
                        finally:
                            for opened in alt:
                                await opened.aclose()
                    else:
                        chunk = await cloud_first
                    self._event_ch.send_nowait(chunk)
                    sent = True
                    async for chunk in chunks:
                        self._event_ch.send_nowait(chunk)
                policy.breaker.record_success()
                self.served_by_cloud = True
                return
            except BaseException as exc:
                if not isinstance(exc, Exception):  # cancelled: the turn was interrupted
                    policy.breaker.release()
                    raise
                policy.breaker.record_failure("dropped" if sent else failure_kind(exc))
                if sent or attempt == policy.retries or not policy.breaker.allow():
                    raise as_api_error(exc, policy.name) from exc
                logger.warning("%s failed (%s), retrying", policy.name, exc)
