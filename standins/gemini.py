"""A Gemini-compatible REST server: `models/{model}:streamGenerateContent?alt=sse` and the
model list the plugin's prewarm reads.

It answers from the prompt it is given, as a grounded model should: the FAQ whose question
shares the most words with the caller's last turn, from the system instruction's
"- Q: ... / A: ..." lines; with no overlap it calls the hand-off tool; after a tool result
it says what the tool told it to say. `reply` can replace that with any function.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .faults import Faults

Reply = Callable[[dict[str, Any]], dict[str, Any]]  # request -> a "parts" element


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3}


def grounded_reply(request: dict[str, Any]) -> dict[str, Any]:
    contents = request.get("contents") or []
    last = contents[-1]["parts"] if contents else []
    for part in last:
        if "functionResponse" in part:
            said = json.dumps(part["functionResponse"].get("response", {}))
            return {"text": said.split("then stop: ", 1)[-1].rstrip('"}').strip()}
    question = " ".join(p.get("text", "") for p in last)
    system = " ".join(
        p.get("text", "") for p in (request.get("systemInstruction") or {}).get("parts", [])
    )
    faqs = re.findall(r"- Q: (.*?)\n\s*A: (.*?)(?:\n|$)", system)
    scored = [(len(_words(q) & _words(question)), a) for q, a in faqs]
    best = max(scored, default=(0, ""))
    if best[0] == 0:
        return {"functionCall": {"name": "hand_off_to_person", "args": {"reason": question}}}
    return {"text": best[1]}


class GeminiStandin:
    def __init__(self, *, api_key: str, reply: Reply = grounded_reply) -> None:
        self.api_key = api_key
        self.reply = reply
        self.faults = Faults()
        self.requests: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post(r"/{version}/models/{model}:streamGenerateContent", self._stream)
        self.app.router.add_get("/{version}/models", self._models)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("x-goog-api-key") == self.api_key

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        return web.json_response({"models": []})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.faults.requests += 1
        if not self._authorised(request):
            return web.json_response({"error": {"code": 401, "message": "bad key"}}, status=401)
        body = await request.json()
        self.requests.append(body)
        await self.faults.wait_first()
        if self.faults.error is not None:
            error = {"error": {"code": self.faults.error, "message": "injected"}}
            return web.json_response(error, status=self.faults.error)
        part = self.reply(body)
        # Text comes a few words per event, as the real service streams it.
        if "text" in part:
            words = part["text"].split(" ")
            pieces = [" ".join(words[i : i + 4]) + " " for i in range(0, len(words), 4)]
            parts = [{"text": p} for p in pieces]
        else:
            parts = [part]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            await response.prepare(request)
            for i, piece in enumerate(parts):
                last = i == len(parts) - 1
                event: dict[str, Any] = {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [piece]},
                            "index": 0,
                            **({"finishReason": "STOP"} if last else {}),
                        }
                    ],
                    "modelVersion": request.match_info["model"],
                }
                if last:
                    event["usageMetadata"] = {
                        "promptTokenCount": 100,
                        "candidatesTokenCount": 20,
                        "totalTokenCount": 120,
                    }
                await response.write(f"data: {json.dumps(event)}\r\n\r\n".encode())
                await asyncio.sleep(0.01)
            await response.write_eof()
        except ConnectionResetError:
            # The client gave up (a preemptive answer the agent no longer needs): a real
            # service just stops streaming; nothing to report.
            pass
        return response
