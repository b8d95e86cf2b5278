"""Source health: since when a source is in its state, and until when the bridge leaves it alone.

Revision ID: 0003_faults
Revises: 0003_notices
Create Date: 2026-11-30

Both columns live in the database so that every instance sharing it reports the same `since` and holds a
failing source for the same time (a refused password is retried at one pace, however many instances run).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_faults"
down_revision: str | None = "0003_notices"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("source", sa.Column("status_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("source", sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("source", sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("source") as batch:
        batch.drop_column("failures")
        batch.drop_column("held_until")
        batch.drop_column("status_since")
