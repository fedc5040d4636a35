"""The container images, built from the Dockerfile and run as an operator would run them.

`scripts/image-build.sh --local-bases` builds both targets with buildah on bases made from
Debian's packages (no image registry is reachable here; the Dockerfile's instructions are the
same, only its PYTHON_BASE / NODE_BASE arguments change). Then the worker image, started with
its own CMD, registers with the real LiveKit server and greets a real caller over WebRTC; the
web image serves its health endpoint, the call page and the bundle built inside it; each
image's own HEALTHCHECK command passes; neither runs as root or carries the build's tools.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.accounts import AccountRegistry
from agent.settings import PROJECT_ROOT
from tests.e2e_support import ENV, URL, stop_process
from tests.helpers import similarity
from tests.test_e2e import call

# Serial: the build (the fixture's, or scripts/test.sh's background one) and the worker's
# start-up are the heaviest minutes of the suite; run beside nothing else.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

WORKER = "localhost/firstword-worker"
WEB = "localhost/firstword-web"
BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def buildah(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["buildah", *args], env=BUILDAH_ENV, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"buildah {' '.join(args)}:\n{done.stderr[-2000:]}"
    return done.stdout.strip()


def config(image: str) -> dict[str, Any]:
    return dict(json.loads(buildah("inspect", "--type", "image", image))["Docker"]["config"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# scripts/test.sh builds the images in the background while the two-process phase runs and
# names here the folder where the build writes `log` and, once done, `rc`.
BACKGROUND_BUILD = "FIRSTWORD_TEST_IMAGE_BUILD"


@pytest.fixture(scope="module")
def images() -> None:
    """Both images: waited for when scripts/test.sh built them in the background, otherwise
    built here (a few minutes on a new machine)."""
    background = os.environ.get(BACKGROUND_BUILD)
    if background:
        rc, log = Path(background) / "rc", Path(background) / "log"
        deadline = time.monotonic() + 1500
        while not rc.exists():
            unfinished = f"background image build unfinished:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, unfinished
            time.sleep(2)
        assert rc.read_text().strip() == "0", f"image build failed:\n{log.read_text()[-5000:]}"
        return
    done = subprocess.run(
        ["bash", "scripts/image-build.sh", "--local-bases"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    failed = f"image build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, failed


@contextmanager
def container(image: str, env: dict[str, str], log: Path) -> Iterator[tuple[str, list[str]]]:
    """A container of `image` running the image's own CMD on the host's network; yields its
    name and how to run a further command in it (`buildah run` with the same environment)."""
    name = buildah("from", image)
    env_args = [f"--env={key}={value}" for key, value in env.items()]
    run = ["buildah", "run", "--network", "host", *env_args, name, "--"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*run, *config(image)["Cmd"]], env=BUILDAH_ENV, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield name, run
    finally:
        stop_process(proc, signal.SIGTERM)
        buildah("rm", name)


def healthcheck(image: str, run: list[str]) -> subprocess.CompletedProcess[str]:
    """The image's own HEALTHCHECK command, run in the container."""
    test = config(image)["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    return subprocess.run(
        [*run, *test[1:]], env=BUILDAH_ENV, capture_output=True, text=True, timeout=60
    )


def wait_for(what: str, ready: Any, within_s: float, log: Path) -> None:
    deadline = time.monotonic() + within_s
    while not ready():
        late = f"{what} not within {within_s:.0f} s:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, late
        time.sleep(0.5)


def test_the_images_run_as_a_user_without_the_build_tools(images: None) -> None:
    for image in (WORKER, WEB):
        image_config = config(image)
        assert image_config["User"] == "10001", image
        assert image_config["Healthcheck"]["Test"][:3] == ["CMD", "python", "-m"], image
        name = buildah("from", image)
        try:
            listing = buildah(
                "run", name, "--", "sh", "-c", "id -u; command -v uv || echo no-uv; ls -A /app"
            ).split()
        finally:
            buildah("rm", name)
        assert listing[:2] == ["10001", "no-uv"], listing
        # Only what the images are built from (.dockerignore lets nothing else in).
        assert {"tests", "benchmarks", "standins", "caller", "web", ".git"}.isdisjoint(listing)
        assert {"agent", "agent.py", ".venv", "config"} <= set(listing), listing


def test_the_worker_image_registers_and_greets_a_call(
    images: None, livekit_server: str, registry: AccountRegistry, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    env = {
        "LIVEKIT_URL": URL,
        "LIVEKIT_API_KEY": ENV["LIVEKIT_API_KEY"],
        "LIVEKIT_API_SECRET": ENV["LIVEKIT_API_SECRET"],
        "FIRSTWORD_HTTP_PORT": str(free_port()),
        "FIRSTWORD_METRICS_PORT": "0",
        "FIRSTWORD_IDLE_PROCESSES": "1",
    }
    with container(WORKER, env, log) as (_, run):
        wait_for("worker registered", lambda: '"registered worker"' in log.read_text(), 180, log)
        checked = healthcheck(WORKER, run)
        assert checked.returncode == 0, checked.stderr
        account = registry.accounts["harbor-dental"]
        report = call(
            tmp_path, "--account", account.id, "--question", "How much does a teeth cleaning cost?"
        )
        assert report["ttfw_s"] is not None, f"the agent never spoke:\n{log.read_text()[-3000:]}"
        assert similarity(report["greeting"], account.greeting) >= 0.8, report["greeting"]
        (answer,) = report["turns"]
        assert "cleaning" in answer["answer"].lower(), answer
    # The image's prewarm rendered the greetings into its own /app/.cache (what the
    # Dockerfile says a volume should keep).
    assert "process prewarmed" in log.read_text()


def test_the_web_image_serves_the_call_page_and_its_bundle(images: None, tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    port = free_port()
    env = {
        "LIVEKIT_URL": URL,
        "LIVEKIT_API_KEY": ENV["LIVEKIT_API_KEY"],
        "LIVEKIT_API_SECRET": ENV["LIVEKIT_API_SECRET"],
        "FIRSTWORD_WEB_PORT": str(port),
    }
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    with container(WEB, env, log) as (_, run):
        wait_for("web app answering", answers, 60, log)
        checked = healthcheck(WEB, run)
        assert checked.returncode == 0, checked.stderr
        with urllib.request.urlopen(f"{base}/call/harbor-dental", timeout=5) as response:
            page = response.read().decode()
        assert "/static/call.js" in page
        for bundle in ("call.js", "desk.js"):
            with urllib.request.urlopen(f"{base}/static/{bundle}", timeout=5) as response:
                script = response.read()
            # Built inside the image (the bundle stage), not copied from this machine: the
            # build context leaves the machine's bundles out.
            assert len(script) > 100_000 and b"livekit" in script.lower(), bundle
