"""Delivery finds the mailboxes with changes to send from the mailbox table, not by grouping the outbox.

Revision ID: 0014_delivery
Revises: 0013_locks
Create Date: 2026-11-30

`delivered_sequence` (the highest sequence the webhook took) against `next_sequence` tells whether a mailbox has
changes waiting; `delivery_due_at` holds its back-off and its turn. The partial index `ix_mailbox_undelivered`
holds only mailboxes with changes waiting, in the order delivery claims them, and `ix_outbox_undelivered` only
undelivered changes, so neither a claim nor reading a batch reads what was delivered. Existing mailboxes are
filled in from their outbox: what is undelivered stays to deliver, backing off as it did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014_delivery"
down_revision: str | None = "0013_locks"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_UNDELIVERED = sa.text("next_sequence > delivered_sequence + 1")
_WAITING = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    op.add_column("mailbox", sa.Column("delivered_sequence", sa.Integer(), nullable=False, server_default="0"))
    # Every row is filled in below; the default only lets the column be added NOT NULL.
    op.add_column(
        "mailbox",
        sa.Column("delivery_due_at", sa.DateTime(timezone=True), nullable=False, server_default="1970-01-01 00:00:00"),
    )
    op.execute(
        "UPDATE mailbox SET"
        " delivered_sequence = COALESCE((SELECT MIN(o.sequence) - 1 FROM outbox o"
        " WHERE o.mailbox_id = mailbox.id AND o.delivered_at IS NULL), next_sequence - 1),"
        " delivery_due_at = COALESCE((SELECT MAX(o.next_attempt_at) FROM outbox o"
        " WHERE o.mailbox_id = mailbox.id AND o.delivered_at IS NULL), created_at)"
    )
    op.create_index(
        op.f("ix_mailbox_undelivered"),
        "mailbox",
        ["delivery_due_at", "id"],
        sqlite_where=_UNDELIVERED,
        postgresql_where=_UNDELIVERED,
    )
    op.create_index(
        op.f("ix_outbox_undelivered"),
        "outbox",
        ["mailbox_id", "sequence"],
        sqlite_where=_WAITING,
        postgresql_where=_WAITING,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_undelivered"), table_name="outbox")
    op.drop_index(op.f("ix_mailbox_undelivered"), table_name="mailbox")
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_column("delivery_due_at")
        batch.drop_column("delivered_sequence")
