"""An account with `recording: false` keeps nothing of its calls: no history record, no voice
message, no handoff record, no transcript in the log (agent/worker/job.py, core.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from agent.accounts import Account, AccountRegistry
from agent.accounts.history_store import CallHistory
from agent.call.call_log import logs_transcripts
from agent.call.handoff.core import records_for
from agent.call.record import CallRecord
from agent.call.timeline import CallTimeline
from agent.settings import Settings
from agent.worker import job


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    made = Settings(FIRSTWORD_CACHE_DIR=tmp_path, FIRSTWORD_CALL_HISTORY_DAYS=0)
    monkeypatch.setattr(job, "get_settings", lambda: made)
    return made


def _accounts(registry: AccountRegistry) -> tuple[Account, Account]:
    keeps = registry.accounts["harbor-dental"]
    return keeps, keeps.model_copy(update={"recording": False})


async def test_no_history_record(registry: AccountRegistry, settings: Settings) -> None:
    keeps, keeps_nothing = _accounts(registry)
    assert keeps.recording, "recording is on unless an account turns it off"
    for account in (keeps, keeps_nothing):
        call = CallRecord(room=f"call-{account.recording}", account=account.id, started_at=1.0)
        call.turns = [{"question": "Do you sell concert tickets?", "answer": "..."}]
        await job._keep_in_history(call, account, CallTimeline(), "caller left")
    history = CallHistory(settings.call_history_where)
    assert [c["room"] for c in history.latest(keeps.id)] == ["call-True"]


def test_no_voice_message_and_no_handoff_record(
    registry: AccountRegistry, settings: Settings
) -> None:
    keeps, keeps_nothing = _accounts(registry)
    ctx = cast(Any, None)  # not reached: the account decides first
    assert job._voice_mail(ctx, cast(Any, None), keeps_nothing, cast(Any, None), settings) is None
    assert records_for(keeps_nothing, settings) is None
    kept = records_for(keeps, settings)
    assert kept is not None and kept.directory == settings.handoff_records


def test_no_transcript_in_the_log(registry: AccountRegistry) -> None:
    keeps, keeps_nothing = _accounts(registry)
    assert logs_transcripts(True, keeps) and not logs_transcripts(False, keeps)
    assert not logs_transcripts(True, keeps_nothing)
