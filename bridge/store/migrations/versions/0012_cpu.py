"""The dirty mailboxes indexed in the order the sync claims them.

Revision ID: 0012_cpu
Revises: 0011_rest
Create Date: 2026-11-30

A partial index: it holds only the mailboxes some mark has not been synced for, so at rest it is nearly empty,
and a claim reads the next few mailboxes from it instead of scanning and sorting every mailbox.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012_cpu"
down_revision: str | None = "0011_rest"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_DIRTY = sa.text("dirty_generation > synced_generation")


def upgrade() -> None:
    op.create_index(
        op.f("ix_mailbox_dirty"),
        "mailbox",
        ["notified_at", "dirty_at", "id"],
        sqlite_where=_DIRTY,
        postgresql_where=_DIRTY,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mailbox_dirty"), table_name="mailbox")
