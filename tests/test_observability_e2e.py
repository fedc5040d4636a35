"""End to end, issue 12: a real worker takes real calls, a real Prometheus (started by
`scripts/prometheus.sh` with the shipped rules) scrapes its framework-served `/metrics`,
the recording rules answer per account, and every Grafana panel's query returns data.
The worker's readiness is checked over HTTP as a Kubernetes probe would, with both executors.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.accounts import AccountRegistry
from agent.settings import PROJECT_ROOT
from standins import Standins
from tests.cloud_support import cloud_account
from tests.e2e_support import health_url, metrics_url, running_worker
from tests.test_e2e import call
from tests.test_observability import (
    PROMETHEUS_DIR,
    _free_port,
    dashboard_targets,
    recording_rules,
)

pytestmark = pytest.mark.e2e
# Each test starts its own worker: under pytest-xdist they are handed out one by one.
SPLIT_ACROSS_PROCESSES = True
SCRIPT = PROJECT_ROOT / "scripts" / "prometheus.sh"


def _get(url: str, timeout: float = 5) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_ready(log: Path, deadline_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        status, body = _get(health_url(log, "/ready"))
        if status == 200:
            return dict(body)
        assert time.monotonic() < deadline, f"worker not ready: {body}"
        time.sleep(0.5)


class Prometheus:
    """A real Prometheus started by the project's script on a free port, with a short
    scrape/evaluation interval and the shipped rule files, scraping one worker."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS_DIR / "rules.yml"), str(PROMETHEUS_DIR / "alerts.yml")],
            "scrape_configs": [
                {"job_name": "firstword", "static_configs": [{"targets": [target]}]}
            ],
        }
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.env = {
            **os.environ,
            "PROMETHEUS_PORT": str(self.port),
            "PROMETHEUS_CONFIG": str(self.config),
            "FIRSTWORD_CACHE_DIR": str(tmp / "cache"),
        }

    def script(self, action: str) -> None:
        subprocess.run([str(SCRIPT), action], env=self.env, check=True, timeout=120)

    def query(self, expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr})
        status, body = _get(f"{self.url}/api/v1/query?{params}")
        assert status == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def wait_for(self, expr: str, what: str = "", deadline_s: float = 60) -> list[dict[str, Any]]:
        """The query's result once it has a finite value (rules evaluate every second)."""
        deadline = time.monotonic() + deadline_s
        while True:
            result = self.query(expr)
            if result and all(math.isfinite(float(r["value"][1])) for r in result):
                return result
            assert time.monotonic() < deadline, f"no data for {what or expr} ({expr}): {result}"
            time.sleep(1)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        prom = Prometheus(tmp_path / f"prometheus-{len(started)}", target)
        prom.script("start")
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.script("stop")


def test_prometheus_scrapes_a_worker_that_took_calls_and_every_panel_has_data(
    livekit_server: str,
    standins: Standins,
    registry: AccountRegistry,
    tmp_path: Path,
    prometheus_for: Any,
) -> None:
    # harbor-dental on the cloud stand-ins (so its providers have breakers), bluebird local.
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    harbor = cloud_account(registry.accounts["harbor-dental"])
    (accounts / "harbor-dental.yaml").write_text(yaml.safe_dump(harbor.model_dump(mode="json")))
    bluebird = registry.accounts["bluebird-bikes"]
    (accounts / "bluebird-bikes.yaml").write_text(yaml.safe_dump(bluebird.model_dump(mode="json")))
    standins.all_healthy()
    env = {
        **standins.env(),
        "FIRSTWORD_ACCOUNTS_DIR": str(accounts),
        "FIRSTWORD_CACHE_DIR": str(tmp_path / "cache"),
    }
    with running_worker(tmp_path / "worker.log", env) as log:
        ready = _wait_ready(log)
        assert ready["checks"]["engines"]["ok"] and ready["checks"]["voices"]["working"] >= 1
        assert ready["checks"]["livekit_server"]["state"] == "registered"
        assert ready["checks"]["breakers"]["ok"] is True
        status, live = _get(health_url(log, "/live"))
        assert status == 200 and live == {"alive": True}

        # What Prometheus' federation and some exporters send: the framework's endpoint
        # serves it (the hand-made one answered 500).
        url = metrics_url(log)
        with urllib.request.urlopen(f"{url}?name[]=firstword_active_calls", timeout=5) as r:
            assert r.status == 200 and b"firstword_active_calls" in r.read()

        target = urllib.parse.urlsplit(url).netloc
        prom = prometheus_for(target)
        prom.wait_for('up{job="firstword"} == 1')

        # Real calls after the first scrape, so the 5-minute rates see them.
        for account in (harbor, bluebird):
            report = call(tmp_path, "--account", account.id, "--question", "When are you open?")
            # The greeting's words are other tests' business; here, that the agent spoke.
            assert report["ttfw_s"] is not None, f"{account.id}: the agent never spoke"

        for name, _expr in recording_rules():
            result = prom.wait_for(name)
            if "time_to_first_word" in name:
                got = {r["metric"]["account"] for r in result}
                assert got == {"harbor-dental", "bluebird-bikes"}, result
                values = [float(r["value"][1]) for r in result]
                if name.endswith("_ratio_10m"):  # the share of calls over the bound
                    assert all(0 <= v <= 1 for v in values), result
                elif name.endswith("calls_10m"):  # calls in 10 minutes
                    assert all(v > 0 for v in values), result
                else:  # a quantile, in seconds
                    assert all(0 < v < 10 for v in values), result

        for title, expr in dashboard_targets():
            # Grafana substitutes the account variable; "All" is ".*".
            prom.wait_for(expr.replace("$account", ".*"), what=f"panel {title!r}")

        breakers = prom.query("max by (provider) (firstword_provider_breaker_state)")
        assert breakers and all(r["value"][1] == "0" for r in breakers), breakers
        alerts = prom.query('ALERTS{alertname=~"ProviderBreakerOpen|WorkerDown"}')
        assert alerts == [], alerts


def test_readiness_with_job_processes(livekit_server: str, tmp_path: Path) -> None:
    """With the process executor, engines load in job processes; readiness sees their
    prewarm and voice check through the multiprocess metrics files."""
    env = {"FIRSTWORD_JOB_EXECUTOR": "process", "FIRSTWORD_CACHE_DIR": str(tmp_path / "cache")}
    with running_worker(tmp_path / "worker.log", env) as log:
        ready = _wait_ready(log, deadline_s=90)
        assert ready["checks"]["engines"]["prewarmed"] >= 1
        assert ready["checks"]["voices"]["working"] >= 1
        assert ready["problems"] == []
