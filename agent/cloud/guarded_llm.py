"""An `llm.LLM` around a cloud model: breaker, first-token timeout, retries.

A failure before the first token is raised as a non-retryable error, so the fallback
adapter around it moves to the next model (in the end the FAQ answerer) with the same
conversation at once, instead of the plugin's own retries and 10 s timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from . import hedge
from .policy import Policy, as_api_error, failure_kind, first_item

logger = logging.getLogger("firstword.cloud")


class GuardedLLM(llm.LLM):
    def __init__(
        self,
        inner: llm.LLM,
        policy: Policy,
        *,
        local: llm.LLM | None = None,
        hedge_after: float = 0.0,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.policy = policy
        # The local answerer races a first token later than `hedge_after` s; 0: never.
        self.local = local
        self.hedge_after = hedge_after

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def prewarm(self, *, loop: Any = None) -> None:
        self.inner.prewarm()

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
        await self.inner.aclose()


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
                async with self._guarded.inner.chat(
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
