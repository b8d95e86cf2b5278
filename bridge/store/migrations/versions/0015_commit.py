"""Two indexes no query reads, dropped: every sync commit maintained them for each row it wrote.

Revision ID: 0015_commit
Revises: 0014_delivery
Create Date: 2026-11-30

`ix_outbox_mailbox_id` repeats the first column of the unique `(mailbox_id, sequence)` index, which serves every
lookup by mailbox (delivery's, the foreign key's cascade) as well. `ix_mirror_mailbox_start` served no query: the
mirror is read by mailbox and item id, its primary key. Together they were a sixth of the pages a mailbox's first
sync wrote to SQLite's WAL.
"""

from __future__ import annotations

from alembic import op

revision: str = "0015_commit"
down_revision: str | None = "0014_delivery"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_outbox_mailbox_id"), table_name="outbox")
    op.drop_index(op.f("ix_mirror_mailbox_start"), table_name="mirror")


def downgrade() -> None:
    op.create_index(op.f("ix_mirror_mailbox_start"), "mirror", ["mailbox_id", "start"])
    op.create_index(op.f("ix_outbox_mailbox_id"), "outbox", ["mailbox_id"])
