"""Notices to the administrator (what was announced, and the messages still to send) and the template mapping
the mirror reflects, with a change of it held for confirmation.

Revision ID: 0003_notices
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003_notices"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notice",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_notice")),
    )
    op.create_table(
        "notice_message",
        sa.Column("id", ID, nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("pending", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_message")),
    )
    op.create_index(op.f("ix_notice_message_next_attempt_at"), "notice_message", ["next_attempt_at"])
    op.create_table(
        "mapping_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("applied_digest", sa.String(64), nullable=False),
        sa.Column("applied_text", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("held_digest", sa.String(64), nullable=True),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held_preview", JSON, nullable=True),
        sa.Column("approved_digest", sa.String(64), nullable=True),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mapping_state")),
    )


def downgrade() -> None:
    op.drop_table("mapping_state")
    op.drop_index(op.f("ix_notice_message_next_attempt_at"), "notice_message")
    op.drop_table("notice_message")
    op.drop_table("notice")
