"""Set-up mistakes stop the worker with one clear message."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import PROJECT_ROOT, Settings
from agent.worker.preflight import PreflightError, check_secrets, check_server_reachable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_one_clear_error() -> None:
    url = f"ws://127.0.0.1:{_free_port()}"
    with pytest.raises(PreflightError, match=f"cannot reach the LiveKit server at {url}"):
        check_server_reachable(Settings(LIVEKIT_URL=url), timeout=1.0)


def _run_agent(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "agent.py", "start"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_refuses_to_start_on_broken_account(accounts_copy: Path) -> None:
    broken = accounts_copy / "bluebird-bikes.yaml"
    broken.write_text(broken.read_text().replace("handoff_phrase:", "handoff:"))
    proc = _run_agent({"FIRSTWORD_ACCOUNTS_DIR": str(accounts_copy)})
    assert proc.returncode == 2
    assert str(broken) in proc.stderr and "field 'handoff_phrase'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_reports_unreachable_server_once() -> None:
    proc = _run_agent({"LIVEKIT_URL": f"ws://127.0.0.1:{_free_port()}"})
    assert proc.returncode == 2
    assert proc.stderr.count("cannot reach the LiveKit server") == 1
    assert "Traceback" not in proc.stderr and "retry" not in proc.stderr.lower()


def test_secret_is_not_in_settings_repr() -> None:
    settings = Settings(LIVEKIT_API_SECRET="s3cr3t-value-123")
    assert "s3cr3t-value-123" not in repr(settings)
    assert "s3cr3t-value-123" not in str(settings.model_dump())


def test_the_development_key_pair_is_refused_off_this_machine() -> None:
    remote = "wss://livekit.example.com"
    with pytest.raises(PreflightError, match="development pair"):
        check_secrets(Settings(LIVEKIT_URL=remote))  # devkey / secret, the defaults
    weak = "s" * 31
    with pytest.raises(PreflightError, match="shorter than 32") as refused:
        check_secrets(Settings(LIVEKIT_URL=remote, LIVEKIT_API_KEY="prod", LIVEKIT_API_SECRET=weak))
    assert weak not in str(refused.value)
    check_secrets(Settings(LIVEKIT_URL=remote, LIVEKIT_API_KEY="prod", LIVEKIT_API_SECRET="s" * 32))
    # Against a server on this machine the development pair is what `--dev` uses.
    for local in ("ws://127.0.0.1:7880", "ws://localhost:7880", "ws://[::1]:7880"):
        check_secrets(Settings(LIVEKIT_URL=local))


def test_the_worker_will_not_start_with_the_development_pair_off_this_machine() -> None:
    proc = _run_agent({"LIVEKIT_URL": "wss://livekit.example.com"})
    assert proc.returncode == 2 and "development pair" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dotenv_local_is_read_after_dotenv_as_in_livekit_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lk app env` and LiveKit's starters write `.env.local`: read, and it wins over `.env`."""
    monkeypatch.chdir(tmp_path)
    for name in ("LIVEKIT_URL", "FIRSTWORD_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("LIVEKIT_URL=ws://from-dotenv:7880\nFIRSTWORD_LOG_LEVEL=DEBUG\n")
    (tmp_path / ".env.local").write_text("LIVEKIT_URL=wss://from-dotenv-local.example\n")
    settings = Settings()
    assert settings.livekit_url == "wss://from-dotenv-local.example"
    assert settings.log_level == "DEBUG"
