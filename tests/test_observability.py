"""Fast checks of the observability pieces: Prometheus config and rules (promtool), the
Grafana dashboard's shape and metric names, readiness/liveness on the framework's health
server, and the compatibility reaches they use. No LiveKit server, no engines.

The end-to-end check (a real worker taking calls, scraped by a real Prometheus, every
dashboard query run against it) is `tests/test_observability_e2e.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit.agents import JobContext, JobExecutorType
from prometheus_client import Counter
from prometheus_client.metrics import MetricWrapperBase

from agent import metrics
from agent.compat import AgentServerWithRoutes, server_connection
from agent.settings import PROJECT_ROOT
from agent.worker.health import Health, check_voices, ping_redis

PROMETHEUS_DIR = PROJECT_ROOT / "config" / "prometheus"
DASHBOARD = PROJECT_ROOT / "config" / "grafana" / "firstword.json"

# Metrics of the brief's contract that other branches add (capacity, answers, hedge, crash).
# Dashboard panels and rules over them are skipped by the end-to-end test until they exist;
# `test_not_yet_exported_lists_only_missing_metrics` fails as soon as one is defined here, so
# this list cannot hide a real failure. Empty it when those branches are merged.
_SUFFIXES = re.compile(r"_(bucket|sum|count|created)$")


def defined_metrics() -> set[str]:
    """Every metric `agent/metrics.py` defines, as PromQL names it (counters with `_total`)."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name  # prometheus_client keeps the counter's name without `_total`
            names.add(f"{name}_total" if isinstance(value, Counter) else name)
    return names


def metrics_in(expr: str) -> set[str]:
    """The firstword metrics a PromQL expression reads (recording-rule names included)."""
    return {_SUFFIXES.sub("", name) for name in re.findall(r"firstword_[a-z0-9_]+", expr)}


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every dashboard panel."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def recording_rules() -> list[tuple[str, str]]:
    import yaml

    groups = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
    return [(r["record"], r["expr"]) for g in groups for r in g["rules"]]


@pytest.fixture(scope="module")
def promtool() -> str:
    subprocess.run([str(PROJECT_ROOT / "scripts" / "os-packages.sh"), "prometheus"], check=True)
    return "promtool"


def test_promtool_checks_config_rules_and_rule_tests(promtool: str) -> None:
    for args in (
        ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        ["check", "rules", str(PROMETHEUS_DIR / "rules.yml"), str(PROMETHEUS_DIR / "alerts.yml")],
        ["test", "rules", str(PROMETHEUS_DIR / "rules_test.yml")],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_recording_rules_cover_every_account_quantile() -> None:
    records = {name for name, _ in recording_rules()}
    for metric in ("firstword_time_to_first_word_seconds", "firstword_answer_latency_seconds"):
        for q in ("p50", "p90", "p99"):
            assert f"account:{metric}:{q}_5m" in records


def test_dashboard_reads_only_known_metrics_and_has_every_required_panel() -> None:
    targets = dashboard_targets()
    known = defined_metrics()
    for title, expr in targets:
        unknown = metrics_in(expr) - known
        # Recording rules' own names hold their metric's name; the rest must be defined.
        assert not unknown, f"panel {title!r} reads unknown metrics {unknown}"
    exprs = " ".join(expr for _, expr in targets)
    for needed in (
        "account:firstword_time_to_first_word_seconds:p50_5m",
        "account:firstword_time_to_first_word_seconds:p90_5m",
        "account:firstword_time_to_first_word_seconds:p99_5m",
        "firstword_call_stage_seconds_bucket",
        "account:firstword_answer_latency_seconds:p90_5m",
        "firstword_active_calls",
        "firstword_capacity_calls",
        'firstword_greeting_cache_total{result="hit"}',
        'firstword_answer_cache_total{result="hit"}',
        "firstword_provider_breaker_state",
        "firstword_prewarm_seconds",
    ):
        assert needed in exprs, f"no panel reads {needed}"
    board = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


class _Voice:
    def __init__(self, audio: np.ndarray | None) -> None:
        self._audio = audio

    def render(self, text: str) -> np.ndarray:
        if self._audio is None:
            raise RuntimeError("broken voice")
        return self._audio


def test_check_voices_counts_only_voices_that_speak() -> None:
    voices: dict[tuple[str, str], Any] = {
        ("hibari", "heart"): _Voice(np.ones(100, dtype=np.float32)),
        ("piper", "joe"): _Voice(None),
        ("piper", "silent"): _Voice(np.zeros(0, dtype=np.float32)),
    }
    assert check_voices(voices) == 1
    assert metrics.VOICES_WORKING._value.get() == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_ping_redis_names_an_unreachable_server_and_a_bad_url() -> None:
    error = await ping_redis(f"redis://:hunter2@127.0.0.1:{_free_port()}/0")
    assert error is not None and "unreachable" in error and "hunter2" not in error
    assert "redis://" in str(await ping_redis("http://127.0.0.1:1"))


@pytest.fixture
def real_redis() -> Iterator[int]:
    """A real Redis on a free loopback port, started by the project's script."""
    port = _free_port()
    env = {**os.environ, "REDIS_PORT": str(port)}
    script = str(PROJECT_ROOT / "scripts" / "redis-server.sh")
    subprocess.run([script, "start"], env=env, check=True, timeout=120, capture_output=True)
    yield port
    subprocess.run([script, "stop"], env=env, check=False, timeout=30)


async def test_ping_redis_against_a_real_redis(real_redis: int) -> None:
    assert await ping_redis(f"redis://127.0.0.1:{real_redis}/0") is None
    # This Redis has no password: AUTH is refused, and said so without the password.
    error = await ping_redis(f"redis://:hunter2@127.0.0.1:{real_redis}/0")
    assert error is not None and "refused AUTH" in error and "hunter2" not in error


async def test_ready_and_live_on_the_frameworks_health_server() -> None:
    """An unregistered AgentServer: the framework's `/` and our `/live` answer 200, `/ready`
    answers 503 naming the server connection (and, as degraded only, the unreachable Redis).
    Fails loudly when
    livekit-agents stops assigning `_http_server` in `run()` (no routes) or drops the
    connection attributes `server_connection` reads."""
    health = Health(redis_url=f"redis://127.0.0.1:{_free_port()}")
    server = AgentServerWithRoutes(
        routes=health.routes(),
        host="127.0.0.1",
        port=0,
        job_executor_type=JobExecutorType.THREAD,
        num_idle_processes=0,
    )
    health.attach(server)

    @server.rtc_session()
    async def _entry(ctx: JobContext) -> None:  # never dispatched: unregistered
        pass

    started = asyncio.Event()
    server.on("worker_started", lambda: started.set())
    run = asyncio.create_task(server.run(devmode=True, unregistered=True))
    try:
        await asyncio.wait_for(started.wait(), 30)
        assert server_connection(server).registered is False
        base = f"http://127.0.0.1:{server.worker_info.http_port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"{base}/") as response:
                assert response.status == 200  # the framework's own route is still there
            async with http.get(f"{base}/live") as response:
                assert response.status == 200 and (await response.json()) == {"alive": True}
            async with http.get(f"{base}/ready") as response:
                assert response.status == 503
                body = await response.json()
    finally:
        await server.aclose()
        await asyncio.wait_for(run, 30)
    assert body["ready"] is False
    assert body["checks"]["livekit_server"] == {"ok": False, "state": "not registered yet"}
    assert body["checks"]["redis"]["ok"] is False
    assert any(p.startswith("livekit server") for p in body["problems"])
    assert not any(p.startswith("redis:") for p in body["problems"])
    assert any(p.startswith("redis:") for p in body["degraded"])
    assert {"engines", "voices", "breakers"} <= set(body["checks"])


async def test_a_worker_is_ready_without_redis_and_not_without_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis down: calls go on (caches fail open), so it is reported, never gating; the
    LiveKit server or the engines are what readiness stands for."""
    from agent.worker import health as health_module

    state = {"prewarms": 1, "voices": 2, "breakers": {"google-stt": "open"}}
    monkeypatch.setattr(health_module, "_registry_state", lambda: state)
    registered = {"value": True}
    monkeypatch.setattr(
        health_module,
        "server_connection",
        lambda _server: SimpleNamespace(
            registered=registered["value"], failed=False, connecting=not registered["value"]
        ),
    )
    health = Health(redis_url=f"redis://127.0.0.1:{_free_port()}")
    health.attach(object())  # type: ignore[arg-type]
    ready, body = await health.readiness()
    assert ready and body["problems"] == []
    assert body["checks"]["redis"]["ok"] is False
    assert any(d.startswith("redis:") for d in body["degraded"])
    assert "breaker google-stt is open" in body["degraded"]
    registered["value"] = False
    ready, body = await health.readiness()
    assert not ready and body["problems"] == ["livekit server: connecting"]


def test_compat_reaches_exist_on_the_installed_framework() -> None:
    from livekit.agents import AgentServer

    server = AgentServer()
    for name in ("_connecting", "_connection_failed", "_http_server"):
        assert hasattr(server, name), f"livekit-agents no longer has AgentServer.{name}"
    assert server_connection(server).registered is False
