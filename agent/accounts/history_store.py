"""The call history's database: one row per call, SQLite by default, PostgreSQL by URL.

The worker appends a row when a call ends (agent/worker/job.py, with the entry made by
agent/call/history.py); the web app's desk reads them (`GET /api/desk/history`, filtered by
day, outcome, unanswered questions and words). A database rather than the append-only books
the handoff records use (books.py), because the history is searched and filtered, pruned by
age, and read by several web app instances at once: SQLite in a file for one machine
(`<FIRSTWORD_CALL_HISTORY_DIR>/history.sqlite3`, WAL mode so the worker writes while the web
app reads), or PostgreSQL (`FIRSTWORD_CALL_HISTORY_URL=postgresql+psycopg://...`) shared by
every instance.

The schema is made and changed by Alembic migrations (`history_migrations/`), run on first
use by each process (a second process migrating at the same moment finds the work done).
Each row keeps the columns the filters need and the whole entry as JSON, so a new field in an
entry needs no migration; a new filter does.

Retention: rows older than FIRSTWORD_CALL_HISTORY_DAYS are deleted (at most once an hour, on
an append). Blocking: call from a thread, off the event loop.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger("firstword.history")

MIGRATIONS = Path(__file__).with_name("history_migrations")
# Alembic's own table, named so that it cannot clash with a business's tables in a shared
# PostgreSQL database.
VERSION_TABLE = "firstword_history_version"
# The newest calls `unanswered` reads through.
UNANSWERED_WINDOW = 500
PRUNE_EVERY_S = 3600.0
# A handoff's outcome as the desk filters it; "none": no handoff was asked for.
OUTCOMES = ("none", "requested", "taken", "not_taken", "failed")

metadata = MetaData()
# What the migrations make (history_migrations/versions): kept here for the queries.
calls = Table(
    "firstword_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(64), nullable=False),
    Column("room", String(255), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("caller_number", String(64)),
    Column("unanswered", Integer, nullable=False),
    Column("search", Text, nullable=False),
    Column("entry", Text, nullable=False),
)


class HistoryError(RuntimeError):
    """The history's database cannot be reached or migrated; the message names it."""


def url_for(where: Path | str) -> str:
    """A database URL as given, or the SQLite file in a folder."""
    text = str(where)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text) / 'history.sqlite3'}"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


class CallHistory:
    """The call history of every account, in one database."""

    def __init__(self, where: Path | str, *, retention_days: float = 0.0) -> None:
        self.url = url_for(where)
        self._retention_s = retention_days * 86400.0
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    @property
    def where(self) -> str:
        """The database, for messages (a PostgreSQL URL without its password)."""
        return make_url(self.url).render_as_string(hide_password=True)

    def engine(self) -> Engine:
        """The engine, the schema migrated to the newest version on first use."""
        with self._lock:
            if self._engine is None:
                self._engine = self._open()
            return self._engine

    def _open(self) -> Engine:
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            migrate(engine)
        except SQLAlchemyError as error:
            engine.dispose()
            where = engine.url.render_as_string(hide_password=True)
            raise HistoryError(f"call history database {where}: {error}") from error
        return engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def append(self, record: dict[str, Any]) -> None:
        """Keep one call's entry (agent/call/history.py `entry`)."""
        row = {
            "account": str(record["account"]),
            "room": str(record.get("room", "")),
            "started_at": float(record.get("started_at") or 0.0),
            "ended_at": float(record.get("ended_at") or 0.0),
            "outcome": str(record.get("handoff") or "none"),
            "caller_number": record.get("caller_number"),
            "unanswered": len(record.get("unanswered") or []),
            "search": _searchable(record),
            "entry": json.dumps(record, ensure_ascii=False),
        }
        with self.engine().begin() as connection:
            connection.execute(insert(calls).values(**row))
        if self._retention_s > 0 and time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            self.prune(time.time() - self._retention_s)

    def prune(self, before: float) -> int:
        """Delete the calls that ended before `before` (unix seconds); how many."""
        with self.engine().begin() as connection:
            deleted = connection.execute(delete(calls).where(calls.c.ended_at < before)).rowcount
        if deleted:
            logger.info("call history: %d calls older than the retention deleted", deleted)
        return int(deleted or 0)

    def latest(
        self,
        account_id: str,
        limit: int = 50,
        *,
        since: float | None = None,
        until: float | None = None,
        outcome: str | None = None,
        unanswered: bool = False,
        words: str = "",
    ) -> list[dict[str, Any]]:
        """The account's newest calls, newest first, filtered: started in [since, until),
        by handoff outcome (OUTCOMES), with an unanswered question, holding `words` (in the
        caller's number, questions or answers; every word, any case)."""
        query = select(calls.c.entry).where(calls.c.account == account_id)
        if since is not None:
            query = query.where(calls.c.started_at >= since)
        if until is not None:
            query = query.where(calls.c.started_at < until)
        if outcome:
            query = query.where(calls.c.outcome == outcome)
        if unanswered:
            query = query.where(calls.c.unanswered > 0)
        for word in _norm(words).split()[:8]:
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(calls.c.search.like(f"%{escaped}%", escape="\\"))
        query = query.order_by(calls.c.started_at.desc(), calls.c.id.desc()).limit(max(0, limit))
        with self.engine().connect() as connection:
            return [json.loads(row.entry) for row in connection.execute(query)]

    def unanswered(self, account_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The questions the agent could not answer in the account's newest calls, the most
        asked first: {"question", "times", "last_at"}."""
        times: Counter[str] = Counter()
        said: dict[str, str] = {}
        last: dict[str, float] = {}
        for record in self.latest(account_id, UNANSWERED_WINDOW, unanswered=True):
            for question in record.get("unanswered", []):
                key = _norm(question).rstrip("?.! ")
                times[key] += 1
                said.setdefault(key, question)  # the newest wording
                last[key] = max(last.get(key, 0.0), float(record.get("ended_at", 0.0)))
        return [
            {"question": said[key], "times": count, "last_at": last[key]}
            for key, count in times.most_common(limit)
        ]


def _searchable(record: dict[str, Any]) -> str:
    """What `words` are looked for in: the number, the questions and the answers."""
    parts = [str(record.get("caller_number") or ""), str(record.get("caller") or "")]
    for turn in record.get("turns") or []:
        parts += [str(turn.get("question", "")), str(turn.get("answer", ""))]
    return _norm(" ".join(parts))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL: the worker appends while the web app reads, without "database is locked"; and a
    # writer waits up to 5 s for another instead of failing at once.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration. Another process doing the same at the same
    moment can make this one fail on a table it just made: tried once more, it finds the work
    done."""
    config = alembic_config()
    with _MIGRATING:
        _migrate(engine, config)


# Alembic keeps the migration under way in module globals: one at a time per process.
_MIGRATING = threading.Lock()


def _migrate(engine: Engine, config: Config) -> None:
    for attempt in (1, 2):
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            return
        except SQLAlchemyError:
            if attempt == 2:
                raise
            time.sleep(0.2)


@functools.lru_cache(maxsize=4)
def shared(where: str, retention_days: float = 0.0) -> CallHistory:
    """One history per database and process (its engine pools connections, and the schema
    is checked once): the worker appends a call at each call's end."""
    return CallHistory(where, retention_days=retention_days)
