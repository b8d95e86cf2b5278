"""The initial schema: sources, mailboxes, subscriptions, delta state, mirror, outbox, commands.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Written against plain SQLAlchemy types, not the models' (a migration is a snapshot and must not change when
the models do): UTCDateTime is DateTime(timezone=True) underneath, Address is String(320). Names are wrapped
in op.f() so that the models' naming convention, which Alembic applies to `op`, leaves them as written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def choice(column: str, table: str, *values: str) -> tuple[sa.Column[object], sa.CheckConstraint]:
    listed = ", ".join(f"'{value}'" for value in values)
    return (
        sa.Column(column, sa.String(32), nullable=False),
        sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}")),
    )


def mailbox_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["mailbox_id"], ["mailbox.id"], name=op.f(f"fk_{table}_mailbox_id_mailbox"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "source",
        sa.Column("name", sa.String(64), nullable=False),
        *choice("kind", "source", "graph", "ews"),
        *choice("status", "source", "ok", "auth_failed", "unreachable"),
        sa.Column("status_reason", sa.String(), nullable=True),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_source")),
    )

    op.create_table(
        "mailbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("workforce_id", sa.String(), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        *choice("status", "mailbox", "active", "disabled", "paused"),
        sa.Column("status_reason", sa.String(), nullable=True),
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.Column("dirty_generation", sa.Integer(), nullable=False),
        sa.Column("synced_generation", sa.Integer(), nullable=False),
        timestamp("dirty_at", nullable=True),
        timestamp("last_synced_at", nullable=True),
        sa.Column("lease_owner", sa.String(), nullable=True),
        timestamp("lease_expires_at", nullable=True),
        sa.Column("next_sequence", sa.Integer(), nullable=False),
        sa.Column("mass_delete_approved", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("delivery_owner", sa.String(), nullable=True),
        timestamp("delivery_lease_until", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox")),
        sa.UniqueConstraint("address", name=op.f("uq_mailbox_address")),
        sa.CheckConstraint("address = lower(address)", name=op.f("ck_mailbox_address_lower")),
    )
    op.create_index(op.f("ix_mailbox_workforce_id"), "mailbox", ["workforce_id"])

    op.create_table(
        "subscription",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(), nullable=False),
        sa.Column("client_state", sa.String(128), nullable=False),
        timestamp("expires_at"),
        timestamp("created_at"),
        timestamp("renewed_at", nullable=True),
        timestamp("reauthorize_requested_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription")),
        mailbox_fk("subscription"),
    )
    op.create_index(op.f("ix_subscription_mailbox_id"), "subscription", ["mailbox_id"])

    op.create_table(
        "delta_state",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        timestamp("window_start"),
        timestamp("window_end"),
        sa.Column("token", sa.Text(), nullable=True),
        timestamp("round_started_at"),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_delta_state")),
        mailbox_fk("delta_state"),
    )

    op.create_table(
        "mirror",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("change_key", sa.String(), nullable=False),
        sa.Column("series_id", sa.String(), nullable=True),
        # kind and free_busy hold the domain's enums, unchecked so a value added there needs no migration.
        sa.Column("kind", sa.String(32), nullable=False),
        timestamp("start"),
        timestamp("end"),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("free_busy", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("is_organizer", sa.Boolean(), nullable=False),
        sa.Column("bridge_ref", sa.String(), nullable=True),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("template", sa.String(), nullable=True),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("mailbox_id", "item_id", name=op.f("pk_mirror")),
        mailbox_fk("mirror"),
    )
    op.create_index(op.f("ix_mirror_mailbox_start"), "mirror", ["mailbox_id", "start"])

    op.create_table(
        "outbox",
        # INTEGER on SQLite: only that spelling is the rowid, which AUTOINCREMENT needs.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("change_id", sa.String(36), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        *choice("change_type", "outbox", "appointment.created", "appointment.updated", "appointment.deleted"),
        sa.Column("payload", JSON, nullable=False),
        timestamp("created_at"),
        timestamp("delivered_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("next_attempt_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("change_id", name=op.f("uq_outbox_change_id")),
        sa.UniqueConstraint("mailbox_id", "sequence", name=op.f("uq_outbox_mailbox_id_sequence")),
        mailbox_fk("outbox"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_outbox_mailbox_id"), "outbox", ["mailbox_id"])
    op.create_index(op.f("ix_outbox_delivered_at"), "outbox", ["delivered_at"])

    op.create_table(
        "command",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        *choice("kind", "command", "create", "update", "delete", "state", "mail", "purge"),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        *choice("status", "command", "accepted", "sending", "done", "failed"),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command")),
        sa.UniqueConstraint("mailbox_id", "idempotency_key", name=op.f("uq_command_mailbox_id_idempotency_key")),
        mailbox_fk("command"),
    )
    op.create_index(op.f("ix_command_mailbox_id"), "command", ["mailbox_id"])
    op.create_index(op.f("ix_command_status"), "command", ["status"])


def downgrade() -> None:
    for table in ("command", "outbox", "mirror", "delta_state", "subscription", "mailbox", "source"):
        op.drop_table(table)
