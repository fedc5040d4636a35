"""The calls table: one row per call, the filters' columns and the entry as JSON.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "firstword_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("room", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=False),
        # The handoff's last state, or "none".
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("caller_number", sa.String(64)),
        # How many of the call's questions the agent could not answer.
        sa.Column("unanswered", sa.Integer, nullable=False),
        # The number, questions and answers, lower-cased: what a search looks in.
        sa.Column("search", sa.Text, nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
    )
    op.create_index("firstword_calls_account_started", "firstword_calls", ["account", "started_at"])
    op.create_index("firstword_calls_ended", "firstword_calls", ["ended_at"])


def downgrade() -> None:
    op.drop_table("firstword_calls")
