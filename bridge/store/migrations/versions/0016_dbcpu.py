"""The outbox's index on `delivered_at` keeps only delivered changes.

Revision ID: 0016_dbcpu
Revises: 0015_commit
Create Date: 2026-12-01

Its one reader, retention's pruning, asks for delivered changes only (`delivered_at IS NOT NULL`); queries for
undelivered ones use `ix_outbox_undelivered`. Every change is written undelivered, so the full index took an
entry for a null on each row a sync commit wrote, and the partial one takes it only once the change is delivered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016_dbcpu"
down_revision: str | None = "0015_commit"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_DELIVERED = sa.text("delivered_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index(op.f("ix_outbox_delivered_at"), table_name="outbox")
    op.create_index(
        op.f("ix_outbox_delivered_at"),
        "outbox",
        ["delivered_at"],
        sqlite_where=_DELIVERED,
        postgresql_where=_DELIVERED,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_delivered_at"), table_name="outbox")
    op.create_index(op.f("ix_outbox_delivered_at"), "outbox", ["delivered_at"])
