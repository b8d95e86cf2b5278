"""Each mailbox keeps its owner's time zone (IANA) and when Exchange was last asked for it.

Revision ID: 0010_tz
Revises: 0009_mapping
Create Date: 2026-11-30

Nullable: a mailbox whose zone has not been read yet is taken to be in its source's default zone (UTC unless
`sources.NAME.time_zone` says otherwise); the first refresh fills it in.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010_tz"
down_revision: str | None = "0009_mapping"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("time_zone_read_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_column("time_zone_read_at")
        batch.drop_column("time_zone")
