"""An ElevenLabs-compatible TTS server: the HTTP stream endpoint and the WebSocket
multi-stream-input protocol, with raw PCM output (`output_format=pcm_<rate>`)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

import numpy as np
from aiohttp import WSMsgType, web

from .faults import Faults

Render = Callable[[str], np.ndarray]  # text -> float32 mono at `rate`
CHUNK_SECONDS = 0.1


class ElevenLabsStandin:
    def __init__(self, render: Render, *, rate: int, api_key: str) -> None:
        self.render = render
        self.rate = rate
        self.api_key = api_key
        self.faults = Faults()
        self.texts: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/text-to-speech/{voice}/stream", self._http_stream)
        self.app.router.add_get("/v1/text-to-speech/{voice}/multi-stream-input", self._ws)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("xi-api-key") == self.api_key

    async def _pcm_chunks(self, text: str) -> list[bytes]:
        audio = await asyncio.to_thread(self.render, text)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        step = int(self.rate * CHUNK_SECONDS) * 2
        return [pcm[i : i + step] for i in range(0, len(pcm), step)]

    def _chunks_before_drop(self, chunks: list[bytes]) -> list[bytes] | None:
        if self.faults.drop_after is None:
            return None
        return chunks[: max(1, int(self.faults.drop_after / CHUNK_SECONDS))]

    async def _http_stream(self, request: web.Request) -> web.StreamResponse:
        self.faults.requests += 1
        if not self._authorised(request):
            return web.json_response({"detail": "invalid api key"}, status=401)
        body = await request.json()
        text = str(body.get("text", ""))
        self.texts.append(text)
        loop = asyncio.get_running_loop()
        start = loop.time()
        chunks = await self._pcm_chunks(text)
        await self.faults.wait_first(loop.time() - start)
        if self.faults.error is not None:
            return web.json_response({"detail": "injected"}, status=self.faults.error)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        partial = self._chunks_before_drop(chunks)
        for chunk in partial if partial is not None else chunks:
            await response.write(chunk)
        if partial is not None:
            # An abrupt end: the transport closes with the body unfinished.
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        if not self._authorised(request):
            return web.json_response({"detail": "invalid api key"}, status=401)  # type: ignore[return-value]
        await ws.prepare(request)
        pending: dict[str, list[str]] = {}
        loop = asyncio.get_running_loop()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            context = str(data.get("context_id", ""))
            if context not in pending:
                self.faults.requests += 1
                pending[context] = []
            text = str(data.get("text", ""))
            if text.strip():
                pending[context].append(text)
            if not (data.get("flush") or data.get("close_context")):
                continue
            said = "".join(pending[context]).strip()
            pending[context] = []
            if said:
                self.texts.append(said)
                start = loop.time()
                chunks = await self._pcm_chunks(said)
                await self.faults.wait_first(loop.time() - start)
                if self.faults.error is not None:
                    await ws.send_json({"error": "injected", "contextId": context})
                    continue
                partial = self._chunks_before_drop(chunks)
                for chunk in partial if partial is not None else chunks:
                    audio = base64.b64encode(chunk).decode()
                    await ws.send_json({"audio": audio, "contextId": context, "isFinal": False})
                if partial is not None:
                    await ws.close()
                    return ws
            if data.get("close_context"):
                await ws.send_json({"contextId": context, "isFinal": True})
                pending.pop(context, None)
        return ws
