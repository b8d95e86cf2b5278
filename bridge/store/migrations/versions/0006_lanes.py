"""Notified mailboxes before maintenance, reconcile times spread per mailbox, and the feed's retention horizon.

Revision ID: 0006_lanes
Revises: 0005_observe
Create Date: 2026-11-30

`notified_at` and `reconcile_due_at` are nullable: a mailbox marked before this revision is worked as
maintenance, and one synced before it is due `reconcile_interval` after its last sync, as before.
`feed_horizon` starts with its one row at 0: nothing has been pruned yet.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006_lanes"
down_revision: str | None = "0005_observe"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox") as batch:
        batch.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reconcile_due_at", sa.DateTime(timezone=True), nullable=True))
    horizon = op.create_table(
        "feed_horizon",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_horizon")),
    )
    # Its one row exists from the start: instances pruning at once then only update it (under a row lock), rather
    # than racing to insert it.
    op.bulk_insert(horizon, [{"id": 1, "pruned_through": 0, "pruned_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("feed_horizon")
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_column("reconcile_due_at")
        batch.drop_column("notified_at")
