"""Alembic's entry for the call history's migrations: run on the connection that
agent/accounts/history_store.py `migrate` passes (no alembic.ini, no logging set-up of its
own: the process's logging stays as the worker or web app made it)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=context.config.get_main_option("version_table") or "alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
