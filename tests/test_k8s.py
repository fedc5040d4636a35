"""The Kubernetes manifests (deploy/k8s/): valid against the Kubernetes schemas, offline (the
kubernetes-validate package ships them), strictly (no unknown field), and in agreement with
the code they deploy: the probes' paths are the health routes, every environment variable is
a setting, the worker's grace period outlasts the longest call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent.settings import Settings
from tests.conftest import PROJECT_ROOT

MANIFESTS = sorted((PROJECT_ROOT / "deploy" / "k8s").glob("*.yaml"))
# The Kubernetes release the manifests are checked against (a recent one the package ships).
KUBERNETES = "1.33.0"


def _documents() -> list[dict[str, Any]]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def _find(kind: str, name: str) -> dict[str, Any]:
    for document in _documents():
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    raise AssertionError(f"no {kind} {name} in deploy/k8s/")


def _container(deployment: str) -> dict[str, Any]:
    spec = _find("Deployment", deployment)["spec"]["template"]["spec"]
    container: dict[str, Any] = spec["containers"][0]
    return container


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_an_invalid_manifest_is_refused() -> None:
    broken = _find("Deployment", "firstword-worker")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_manifests_agree_with_the_code() -> None:
    settings_names = {f.validation_alias for f in Settings.model_fields.values()}
    for deployment in ("firstword-worker", "firstword-web"):
        for variable in _container(deployment).get("env", []):
            assert variable["name"] in settings_names, f"{deployment}: {variable['name']}"
    worker = _container("firstword-worker")
    assert worker["livenessProbe"]["httpGet"]["path"] == "/live"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    env = {v["name"]: v["value"] for v in worker["env"]}
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports == {
        "health": int(env["FIRSTWORD_HTTP_PORT"]),
        "metrics": int(env["FIRSTWORD_METRICS_PORT"]),
    }
    # A draining worker keeps its calls until they end: the grace period outlasts the longest.
    grace = _find("Deployment", "firstword-worker")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert grace >= float(env["FIRSTWORD_MAX_CALL_SECONDS"]) + 30
    assert float(env["FIRSTWORD_MAX_CALL_SECONDS"]) == Settings().max_call_seconds
    # Each Deployment runs its own image of the Dockerfile, with the image's own command.
    assert worker["image"].endswith("/firstword:latest") and "command" not in worker
    web = _container("firstword-web")
    assert web["image"].endswith("/firstword-web:latest") and "command" not in web
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    web_stage = dockerfile.split("AS web\n", 1)[1].split("\nFROM ", 1)[0]
    assert 'CMD ["python", "-m", "agent.web"]' in web_stage
    assert dockerfile.rstrip().endswith('CMD ["python", "agent.py", "start"]')
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = _find("HorizontalPodAutoscaler", "firstword-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "firstword-worker"
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "firstword_worker_load"
