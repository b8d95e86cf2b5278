"""Each mailbox says whether a source's Entra ID group enrolled it, so that the group removes only its own.

Revision ID: 0007_group_roster
Revises: 0006_lanes
Create Date: 2026-11-30

Nullable: null is a mailbox enrolled by hand (config, `mailboxes add`, a CSV roster), as every one before this
revision was.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007_group_roster"
down_revision: str | None = "0006_lanes"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.add_column(sa.Column("enrolled_by", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_column("enrolled_by")
