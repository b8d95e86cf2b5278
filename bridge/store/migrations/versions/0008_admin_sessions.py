"""The admin page's sessions: who is signed in, since when, last seen (bridge/web/admin/session.py).

Revision ID: 0008_admin_sessions
Revises: 0007_group_roster
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008_admin_sessions"
down_revision: str | None = "0007_group_roster"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("token_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_session")),
    )
    op.create_index(op.f("ix_admin_session_seen_at"), "admin_session", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_admin_session_seen_at"), table_name="admin_session")
    op.drop_table("admin_session")
