"""Commands as the relay keeps them: an idempotency scope (mail has no mailbox), the transaction id, what each
write touched and answered, and when it finished.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The table is recreated rather than altered: nothing wrote commands before this revision (the relay arrives
with it), and SQLite cannot change a unique constraint or a column's nullability in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _choice(column: str, *values: str) -> tuple[sa.Column[object], sa.CheckConstraint]:
    listed = ", ".join(f"'{value}'" for value in values)
    return (
        sa.Column(column, sa.String(32), nullable=False),
        sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_command_{column}")),
    )


def upgrade() -> None:
    op.drop_table("command")
    op.create_table(
        "command",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("scope", sa.String(320), nullable=False),
        *_choice("kind", "create", "update", "delete", "state", "mail", "purge"),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        *_choice("status", "sending", "done", "failed"),
        sa.Column("transaction_id", sa.String(255), nullable=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("item_id", sa.Text(), nullable=True),
        sa.Column("change_key", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command")),
        sa.UniqueConstraint("scope", "idempotency_key", name=op.f("uq_command_scope_idempotency_key")),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailbox.id"], name=op.f("fk_command_mailbox_id_mailbox"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_command_status"), "command", ["status"])
    op.create_index(op.f("ix_command_mailbox_updated"), "command", ["mailbox_id", "updated_at"])


def downgrade() -> None:
    op.drop_table("command")
    op.create_table(
        "command",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        *_choice("kind", "create", "update", "delete", "state", "mail", "purge"),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        *_choice("status", "accepted", "sending", "done", "failed"),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command")),
        sa.UniqueConstraint("mailbox_id", "idempotency_key", name=op.f("uq_command_mailbox_id_idempotency_key")),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailbox.id"], name=op.f("fk_command_mailbox_id_mailbox"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_command_mailbox_id"), "command", ["mailbox_id"])
    op.create_index(op.f("ix_command_status"), "command", ["status"])
