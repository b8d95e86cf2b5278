"""The outbox keeps when Exchange last changed the appointment behind each change, for the change-latency metric.

Revision ID: 0005_observe
Revises: 0003_faults
Create Date: 2026-11-30

Nullable: a deletion has no such time, nor has a change written before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_observe"
down_revision: str | None = "0003_faults"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("source_modified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("source_modified_at")
