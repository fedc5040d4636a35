"""A LiveKit server restart does not end the worker: it reconnects, registers again, and takes
the next call (with the framework's former 2 retries it exited after ~2 s, ending every call
on it; FIRSTWORD_SERVER_RETRIES).

The server here is a process of its own on its own port, so restarting it disturbs no other
test. A single-node server keeps its rooms in memory, so the calls live during the restart end
with it; what this guards is the worker, and with it every call that comes after.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.accounts import AccountRegistry
from tests.conftest import PROJECT_ROOT
from tests.e2e_support import ENV, PORT, worker_process
from tests.test_e2e_recovery import live_call

pytestmark = pytest.mark.e2e

RESTART_PORT = PORT + 210
URL = f"ws://127.0.0.1:{RESTART_PORT}"
SCRIPT = PROJECT_ROOT / "scripts" / "livekit-server.sh"
# Longer than the old retries lasted (0 + 2 s between three attempts), shorter than the new.
DOWN_S = 10.0


def _server(action: str) -> None:
    env = {**ENV, **os.environ, "LIVEKIT_PORT": str(RESTART_PORT)}
    env["FIRSTWORD_CACHE_DIR"] = ENV["FIRSTWORD_CACHE_DIR"]
    subprocess.run([str(SCRIPT), action], env=env, check=action == "start", timeout=600)


@pytest.fixture
def own_server(e2e_cache_dir: Path) -> Iterator[str]:
    _server("start")
    try:
        yield URL
    finally:
        _server("stop")


async def _greeted(account: str) -> bool:
    async with live_call(URL, "devkey", "secret", account) as call:
        return await call.heard_after(0.0, 20.0) is not None


def _registrations(log: Path) -> int:
    return log.read_text().count('"registered worker"')


async def test_the_worker_rides_out_a_server_restart(
    own_server: str, registry: AccountRegistry, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    account = registry.accounts["harbor-dental"].id
    with worker_process(log, {"LIVEKIT_URL": own_server}, within_s=300) as proc:
        assert await _greeted(account), "the first call was not greeted"
        _server("stop")
        await asyncio.sleep(DOWN_S)
        down = log.read_text()[-2000:]
        assert proc.poll() is None, f"the worker exited while the server was down:\n{down}"
        _server("start")
        deadline = time.monotonic() + 60
        while _registrations(log) < 2:
            assert proc.poll() is None, f"the worker exited:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the worker did not register again within 60 s"
            await asyncio.sleep(0.3)
        assert await _greeted(account), "the call after the restart was not greeted"
        assert proc.poll() is None
