"""The history of applied template mappings (who applied which text, when), for the admin page's diff and rollback.

Revision ID: 0009_mapping
Revises: 0008_admin_sessions
Create Date: 2026-11-30

The mapping applied before this revision becomes the history's first entry, so that the first change made after
the upgrade can be rolled back too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_mapping"
down_revision: str | None = "0008_admin_sessions"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mapping_history",
        sa.Column("id", ID, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_by", sa.String(200), nullable=False),
        sa.Column("emitted", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mapping_history")),
    )
    op.create_index(op.f("ix_mapping_history_applied_at"), "mapping_history", ["applied_at"])
    op.execute(
        "INSERT INTO mapping_history (digest, text, applied_at, applied_by) "
        "SELECT applied_digest, applied_text, applied_at, 'applied before the history was kept' FROM mapping_state"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mapping_history_applied_at"), table_name="mapping_history")
    op.drop_table("mapping_history")
