"""Dirty marks that found their mailbox row locked: kept beside it until a claim folds them in.

Revision ID: 0013_locks
Revises: 0012_cpu
Create Date: 2026-11-30

A notification's mark bumps the mailbox's dirty generation; while a sync commit holds that row, the mark waited
for the whole commit (and the webhook's answer with it). On PostgreSQL such a mark is now written here instead
(bridge/store/work.py, `mark_dirty`) and folded into the mailbox by the next claim. Existing rows are untouched:
the table starts empty, and a mailbox dirty before the upgrade stays dirty in its own columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013_locks"
down_revision: str | None = "0012_cpu"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mailbox_mark",
        sa.Column("id", ID, nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_mark")),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailbox.id"], name=op.f("fk_mailbox_mark_mailbox_id_mailbox"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_mailbox_mark_mailbox_id"), "mailbox_mark", ["mailbox_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mailbox_mark_mailbox_id"), table_name="mailbox_mark")
    op.drop_table("mailbox_mark")
