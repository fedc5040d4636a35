"""Readiness and liveness of a worker, for load balancers and Kubernetes probes.

Both are served by livekit-agents' own health server (FIRSTWORD_HTTP_PORT, next to its
`GET /` and `GET /worker`), through `agent.compat.AgentServerWithRoutes`:

- `GET /live`: 200 while the worker's event loop answers (restart the pod when it does not).
- `GET /ready`: 200 only when the worker is registered with the LiveKit server, the engines
  are loaded (a prewarm finished) and at least one voice synthesised a test word; otherwise
  503. The JSON body always names each dependency's state: the server connection, the
  engines, the voices, the cloud providers' circuit breakers and Redis (when `REDIS_URL` is
  set). Open breakers and an unreachable Redis are named (under `degraded`) but do not fail
  readiness: the local engines answer in a provider's place, and calls go on without Redis
  (the shared caches fail open; crash pick-up waits for it to come back). Taking every worker
  out of rotation for either would turn a degraded service into an outage, and a rollout would
  stall while every old pod keeps taking calls.

Engine and voice state is read from the worker's metrics registry (`firstword_prewarm_seconds`,
`firstword_voices_working`), so it is the same with threads and with job processes, whose
prewarm runs in another process and reaches the worker only through the multiprocess files.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from aiohttp import web
from livekit.agents import AgentServer

from .. import metrics
from ..compat import server_connection
from ..engines.local_tts import LocalTTS

logger = logging.getLogger("firstword.health")

# A probe must answer well inside Kubernetes' default 1 s probe timeout.
_REDIS_TIMEOUT = 0.5
_REGISTRY_TIMEOUT = 0.5
_BREAKER_STATES = {0.0: "closed", 1.0: "half-open", 2.0: "open"}


def check_voices(voices: dict[tuple[str, str], LocalTTS]) -> int:
    """Synthesise one short word with each loaded voice (blocking; prewarm); how many work.

    Greetings may all come from the disk cache, so a prewarm alone does not prove a voice
    can speak. A voice that fails is logged and not counted.
    """
    working = 0
    for (engine, name), voice in voices.items():
        start = time.perf_counter()
        try:
            audio: np.ndarray = voice.render("Hello.")
        except Exception:
            logger.exception("voice %s:%s failed its test word", engine, name)
            continue
        if audio.size == 0:
            logger.error("voice %s:%s produced no audio for its test word", engine, name)
            continue
        working += 1
        logger.debug("voice %s:%s works (%.3f s)", engine, name, time.perf_counter() - start)
    metrics.VOICES_WORKING.set(working)
    return working


def _redis_address(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must start with redis:// (got scheme {parts.scheme!r})")
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    return parts.hostname or "127.0.0.1", parts.port or 6379, username, password


async def ping_redis(url: str) -> str | None:
    """None when Redis answers PING, else what went wrong (never the password).

    A bare RESP exchange (AUTH if the URL has a password, then PING) rather than a client
    library: it is the whole of what a probe needs, and the project has no Redis client of
    its own to share. TLS (`rediss://`) is checked for reachability only (TCP connect).
    """
    try:
        host, port, username, password = _redis_address(url)
    except ValueError as error:
        return str(error)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(_REDIS_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            if url.startswith("rediss://"):
                return None
            if password is not None:
                auth = [b"AUTH", *([username.encode()] if username else []), password.encode()]
                writer.write(_resp(auth))
                reply = await reader.readline()
                if not reply.startswith(b"+OK"):
                    return f"redis at {host}:{port} refused AUTH"
            writer.write(_resp([b"PING"]))
            reply = await reader.readline()
            if not reply.startswith(b"+PONG"):
                return f"redis at {host}:{port} answered {reply[:40]!r} to PING"
            return None
    except TimeoutError:
        return f"redis at {host}:{port} did not answer within {_REDIS_TIMEOUT} s"
    except OSError as error:
        return f"redis at {host}:{port} unreachable: {error.strerror or error}"
    finally:
        if writer is not None:
            writer.close()


def _resp(words: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def _registry_state() -> dict[str, Any]:
    """Prewarms, working voices and breakers, from what a scrape of this worker would read."""
    prewarms = sum(v for _, v in metrics.sample_values("firstword_prewarm_seconds_count"))
    voices = max((v for _, v in metrics.sample_values("firstword_voices_working")), default=0.0)
    breakers = {
        labels.get("provider", "?"): _BREAKER_STATES.get(value, str(value))
        for labels, value in metrics.sample_values("firstword_provider_breaker_state")
    }
    return {"prewarms": int(prewarms), "voices": int(voices), "breakers": breakers}


class Health:
    """The `/ready` and `/live` handlers of one worker; `attach` it to the server it checks."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._redis_url = redis_url or None
        self._server: AgentServer | None = None

    def attach(self, server: AgentServer) -> None:
        self._server = server

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ready", self.ready), web.get("/live", self.live)]

    async def live(self, _request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def ready(self, _request: web.Request) -> web.Response:
        ready, body = await self.readiness()
        return web.json_response(body, status=200 if ready else 503)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        problems: list[str] = []
        checks: dict[str, Any] = {}

        if self._server is None:
            checks["livekit_server"] = {"ok": False, "state": "worker not started"}
        else:
            conn = server_connection(self._server)
            conn_state = (
                "registered"
                if conn.registered
                else "failed"
                if conn.failed
                else "connecting"
                if conn.connecting
                else "not registered yet"
            )
            checks["livekit_server"] = {"ok": conn.registered, "state": conn_state}
        if not checks["livekit_server"]["ok"]:
            problems.append(f"livekit server: {checks['livekit_server']['state']}")

        state: dict[str, Any] = {"prewarms": 0, "voices": 0, "breakers": {}}
        try:
            # The process executor's files are read from disk: off the event loop.
            async with asyncio.timeout(_REGISTRY_TIMEOUT):
                state = await asyncio.to_thread(_registry_state)
        except Exception as exc:  # a probe reports, it never raises
            problems.append(f"metrics registry unreadable: {exc!r}")
        checks["engines"] = {"ok": state["prewarms"] > 0, "prewarmed": state["prewarms"]}
        if not checks["engines"]["ok"]:
            problems.append("engines: not loaded yet (no prewarm finished)")
        checks["voices"] = {"ok": state["voices"] > 0, "working": state["voices"]}
        if not checks["voices"]["ok"]:
            problems.append("voices: none synthesised its test word")
        open_breakers = sorted(p for p, s in state["breakers"].items() if s != "closed")
        checks["breakers"] = {"ok": not open_breakers, "states": state["breakers"]}

        degraded = [f"breaker {p} is {state['breakers'][p]}" for p in open_breakers]
        if self._redis_url:
            redis_error = await ping_redis(self._redis_url)
            checks["redis"] = {"ok": redis_error is None}
            if redis_error:
                checks["redis"]["error"] = redis_error
                degraded.append(f"redis: {redis_error}")

        body = {"ready": not problems, "problems": problems, "degraded": degraded}
        return not problems, {**body, "checks": checks}
