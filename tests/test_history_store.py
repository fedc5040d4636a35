"""The call history's database (agent/accounts/history_store.py) on SQLite and on a real
PostgreSQL (scripts/postgres.sh): migrations, newest first, the desk's filters, retention."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from agent.accounts.history_store import VERSION_TABLE, CallHistory, HistoryError
from agent.call.history import entry
from agent.call.record import CallRecord
from agent.settings import PROJECT_ROOT
from tests.e2e_support import PORT

PHRASE = "I'm not sure about that one, so let me connect you with someone from our front desk team."
POSTGRES_PORT = PORT + 205


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL for the test session (the project's script); its server URL."""
    script = PROJECT_ROOT / "scripts" / "postgres.sh"
    env = {"POSTGRES_PORT": str(POSTGRES_PORT), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run([str(script), "start"], env=env, check=True, timeout=600)
    url = subprocess.run(
        [str(script), "url"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    yield url
    subprocess.run([str(script), "stop"], env=env, check=False, timeout=60)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty history database of each kind."""
    if request.param == "sqlite":
        yield str(tmp_path / "history")
        return
    server: str = request.getfixturevalue("postgres")
    name = f"history_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _record(
    ended_at: float,
    *,
    handoff: str | None = "not_taken",
    number: str = "+15035550123",
    questions: tuple[str, ...] = ("When are you open?", "Do you sell concert tickets?"),
    account: str = "harbor-dental",
) -> dict[str, object]:
    call = CallRecord(room=f"r{ended_at}", account=account, caller="sip_1", sip=True)
    call.started_at, call.caller_number, call.handoff = ended_at - 30, number, handoff
    call.turns = [
        {"question": q, "answer": PHRASE if "ticket" in q else "We are open nine to five."}
        for q in questions
    ]
    return entry(call, handoff_phrase=PHRASE, ended_at=ended_at, ended="caller left", ttfw_s=0.4)


def test_the_schema_is_made_by_the_migrations_and_found_made_again(where: str) -> None:
    history = CallHistory(where)
    assert history.latest("harbor-dental") == [] and history.unanswered("harbor-dental") == []
    engine = history.engine()
    assert {"firstword_calls", VERSION_TABLE} <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        version = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    assert version == "0001"
    history.append(_record(1000.0))
    history.close()
    # A second process (here: a second object) finds the schema made and the call kept.
    again = CallHistory(where)
    assert [r["ended_at"] for r in again.latest("harbor-dental")] == [1000.0]
    again.close()


def test_two_processes_starting_at_once_both_get_the_schema(where: str) -> None:
    histories = [CallHistory(where) for _ in range(3)]
    errors: list[BaseException] = []

    def start(history: CallHistory) -> None:
        try:
            history.engine()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(h,)) for h in histories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    histories[0].append(_record(5.0))
    assert all(len(h.latest("harbor-dental")) == 1 for h in histories)
    for history in histories:
        history.close()


def test_calls_newest_first_per_account_and_the_unanswered_counted(where: str) -> None:
    history = CallHistory(where)
    for ended_at in (100.0, 200.0):
        history.append(_record(ended_at))
    history.append(_record(300.0, account="bluebird-bikes"))
    assert [r["ended_at"] for r in history.latest("harbor-dental")] == [200.0, 100.0]
    assert [r["ended_at"] for r in history.latest("harbor-dental", limit=1)] == [200.0]
    (missed,) = history.unanswered("harbor-dental")
    assert missed == {"question": "Do you sell concert tickets?", "times": 2, "last_at": 200.0}
    history.close()


def test_the_desks_filters(where: str) -> None:
    history = CallHistory(where)
    history.append(_record(1000.0, handoff=None, questions=("When are you open?",)))
    history.append(_record(2000.0, handoff="taken", number="+15035550777"))
    history.append(_record(3000.0, handoff="not_taken", questions=("Is 100% of it covered?",)))

    def ended(**filters: object) -> list[float]:
        return [r["ended_at"] for r in history.latest("harbor-dental", **filters)]  # type: ignore[arg-type]

    assert ended() == [3000.0, 2000.0, 1000.0]
    # A day: started in [since, until).
    assert ended(since=1500.0, until=2500.0) == [2000.0]
    assert ended(since=1500.0) == [3000.0, 2000.0]
    # The handoff's outcome; "none": no handoff asked for.
    assert ended(outcome="taken") == [2000.0] and ended(outcome="none") == [1000.0]
    # Calls with a question the agent could not answer.
    assert ended(unanswered=True) == [2000.0]
    # Words, in any case, every one of them, in the number, questions or answers.
    assert ended(words="CONCERT tickets") == [2000.0]
    assert ended(words="5550777") == [2000.0]
    assert ended(words="concert open") == [2000.0]
    assert ended(words="nine to five") == [3000.0, 2000.0, 1000.0]
    # LIKE's own characters are plain characters.
    assert ended(words="100%") == [3000.0] and ended(words="%") == [3000.0]
    assert ended(words="nin_") == []  # would match "nine" as a wildcard
    history.close()


def test_calls_older_than_the_retention_are_deleted(where: str) -> None:
    now = round(time.time(), 3)
    kept_for_ever = CallHistory(where)
    kept_for_ever.append(_record(now - 3 * 86400))
    kept_for_ever.append(_record(now - 2 * 86400))
    kept_for_ever.close()
    # A process keeping calls a day: its first append prunes what ended before that.
    history = CallHistory(where, retention_days=1.0)
    history.append(_record(now))
    assert [r["ended_at"] for r in history.latest("harbor-dental")] == [now]
    assert history.prune(now + 1) == 1 and history.latest("harbor-dental") == []
    history.close()


def test_an_unreachable_database_is_a_clear_error_without_its_password() -> None:
    history = CallHistory("postgresql+psycopg://firstword:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in history.where
    with pytest.raises(HistoryError) as raised:
        history.latest("harbor-dental")
    message = str(raised.value)
    assert "call history database" in message and "127.0.0.1:1" in message
    assert "hunter2" not in message
