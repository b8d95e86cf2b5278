"""The bridge's tables: everything an instance needs to pick up any mailbox's work lives here, not in memory.

Times are stored and read back as timezone-aware UTC on both backends (`UTCDateTime`). Columns with a fixed set
of values are VARCHAR + CHECK rather than native PostgreSQL enums, so a later value is a plain migration.
Deleting a mailbox row deletes everything that hangs off it (subscriptions, delta state, mirror, outbox,
commands): callers that must tell the workforce system first do so before deleting.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from bridge.domain import AppointmentKind, ChangeType, FreeBusy

# Named constraints and indexes make later migrations (and Alembic's comparisons) the same on both backends.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is aware UTC in Python whatever the backend keeps.

    Naive values are refused rather than guessed at: one would most likely be local time from `datetime.now()`.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # One step instead of two (`process_bind_param`, then SQLAlchemy's DATETIME formatting through a dict of
        # the fields), writing the same text: a sync commit binds a hundred timestamps.
        def process(value: datetime | None) -> str | None:
            return None if value is None else sqlite_timestamp(value)

        return process

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = utc_instant(value)
        # SQLite has no time-zone type and would drop the offset anyway; the stored wall time is UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_instant(value: datetime) -> datetime:
    """An aware timestamp in UTC, as `UTCDateTime` stores it."""
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored: give it a time zone")
    return value.astimezone(UTC)


def sqlite_timestamp(value: datetime) -> str:
    """A timestamp as SQLite keeps it (`UTCDateTime`): the UTC wall time as text, in the form SQLAlchemy's DATETIME
    writes (`YYYY-MM-DD HH:MM:SS.ffffff`), which sorts and compares in time order."""
    return utc_instant(value).replace(tzinfo=None).isoformat(" ", "microseconds")


@dataclass(frozen=True, slots=True)
class DriverValues:
    """How the database driver takes a timestamp and a JSON value: what `UTCDateTime` and `JSONType` bind, for
    rows handed to the driver as they are (`db.execute_rows`)."""

    timestamp: Callable[[datetime], Any]
    json: Callable[[Any], Any]


def driver_values(dialect: Dialect) -> DriverValues:
    return _SQLITE_VALUES if dialect.name == "sqlite" else _postgresql_values()


_SQLITE_VALUES = DriverValues(sqlite_timestamp, json.dumps)


@functools.cache
def _postgresql_values() -> DriverValues:
    # Imported with PostgreSQL's use, as SQLAlchemy imports the driver: it takes 0.3 s, which a SQLite deployment
    # and every CLI command would spend for nothing.
    from psycopg.types.json import Jsonb

    return DriverValues(utc_instant, Jsonb)


class Address(sa.TypeDecorator[str]):
    """A mail address, lower-cased on the way in, so that both storing and looking one up ignore case."""

    impl = sa.String(320)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else value.lower()


# Changes made inside a loaded dict are not tracked: assign a new dict to have it written.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only aliases the rowid (and only honours AUTOINCREMENT) for a column declared exactly INTEGER.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def now() -> datetime:
    return datetime.now(UTC)


def _choice(values: type[enum.StrEnum], column: str, *, checked: bool = True) -> sa.Enum:
    """VARCHAR (+ CHECK); the enum's name becomes the CHECK's, so name it after the column it constrains.

    `checked=False` is for enums the domain owns: a value added there must not need a migration here.
    """
    return sa.Enum(
        values,
        name=column,
        native_enum=False,
        create_constraint=checked,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class SourceKind(enum.StrEnum):
    GRAPH = "graph"
    EWS = "ews"


class SourceStatus(enum.StrEnum):
    OK = "ok"
    AUTH_FAILED = "auth_failed"
    UNREACHABLE = "unreachable"


class MailboxStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    PAUSED = "paused"


class CommandKind(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    STATE = "state"
    MAIL = "mail"
    PURGE = "purge"


class CommandStatus(enum.StrEnum):
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"


class SourceRow(SQLModel, table=True):
    """A configured Exchange connection (named in the config) and whether it currently works."""

    __tablename__ = "source"

    name: str = Field(primary_key=True, max_length=64)
    kind: SourceKind = Field(sa_type=_choice(SourceKind, "kind"))
    status: SourceStatus = Field(default=SourceStatus.OK, sa_type=_choice(SourceStatus, "status"))
    status_reason: str | None = None
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, sa_column_kwargs={"onupdate": now})
    # When the current status began (what `/readyz` shows as "since"); null until the first change of status.
    status_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # While the source is failing, none of its mailboxes is read before this time (every instance honours it).
    held_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Failures in a row, for the back-off; the first success sets it back to 0.
    failures: int = 0


# A mailbox some mark has not been synced for yet (bridge/store/work.py).
DIRTY = sa.text("dirty_generation > synced_generation")
# A mailbox with changes the webhook has not taken yet (bridge/delivery.py).
UNDELIVERED = sa.text("next_sequence > delivered_sequence + 1")


class MailboxRow(SQLModel, table=True):
    """A mailbox the bridge mirrors, its dirty/synced generations and the lease of the instance working it.

    A notification bumps `dirty_generation`; a sync that read up to generation g sets `synced_generation = g`,
    so a notification arriving during a sync leaves the mailbox dirty instead of being lost.
    """

    __tablename__ = "mailbox"
    __table_args__ = (
        sa.UniqueConstraint("address"),
        # `Address` lower-cases what the ORM writes and looks up; this also holds for raw SQL.
        sa.CheckConstraint("address = lower(address)", name="address_lower"),
        # The dirty mailboxes, in the order the sync claims them (bridge/store/work.py): without it every claim
        # scanned and sorted all mailboxes, 4 ms of the bridge's CPU per claim at 10,000 mailboxes on SQLite.
        sa.Index(
            "ix_mailbox_dirty",
            "notified_at",
            "dirty_at",
            "id",
            sqlite_where=DIRTY,
            postgresql_where=DIRTY,
        ),
        # The mailboxes with changes to deliver, in the order delivery claims them: without it every claim grouped
        # the whole undelivered outbox, 220 ms per claim with 10,000 mailboxes' first changes waiting on SQLite.
        sa.Index(
            "ix_mailbox_undelivered",
            "delivery_due_at",
            "id",
            sqlite_where=UNDELIVERED,
            postgresql_where=UNDELIVERED,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(sa_type=Address)
    workforce_id: str | None = Field(default=None, index=True)
    source: str = Field(max_length=64)
    status: MailboxStatus = Field(default=MailboxStatus.ACTIVE, sa_type=_choice(MailboxStatus, "status"))
    status_reason: str | None = None
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, sa_column_kwargs={"onupdate": now})
    dirty_generation: int = 0
    synced_generation: int = 0
    dirty_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set by a change notification (or a lifecycle resync) while the mailbox is dirty: such mailboxes are claimed
    # before maintenance (window roll, reconcile, first sync), so a person's change never waits behind them.
    notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When the periodic reconcile reads the mailbox again: spread per mailbox (bridge/store/work.py), so mailboxes
    # synced together are not all due together. Null: `last_synced_at` + the interval.
    reconcile_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_synced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_sequence: int = 1
    # Set when an administrator resumes a mailbox the mass-delete guard paused: its next sync may delete.
    mass_delete_approved: bool = False
    # The instance delivering this mailbox's changes, so that they leave in order even with several instances.
    delivery_owner: str | None = None
    delivery_lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The highest sequence the webhook accepted (or that retention pruned first): the mailbox has changes to deliver
    # while it is below `next_sequence - 1`, which the commit adding them raises, so none is ever overlooked.
    delivered_sequence: int = 0
    # When delivery may send the mailbox's changes: after a failure, the end of its back-off; otherwise when it was
    # last served (or added), so that the mailbox served longest ago goes first.
    delivery_due_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    # What enrolled it: None by hand (config, `mailboxes add`, a CSV roster), GROUP by its source's Entra ID group,
    # which then also removes it when the person leaves the group.
    enrolled_by: str | None = Field(default=None, max_length=16)
    # The owner's time zone (IANA), as Exchange said it or the source's default; refreshed daily (bridge/zones.py,
    # bridge/mailbox_zones.py). None until first read: the source's default applies.
    time_zone: str | None = Field(default=None, max_length=64)
    time_zone_read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def __setattr__(self, name: str, value: Any) -> None:
        # SQLModel writes the Python value after SQLAlchemy's attribute events, so `validates` cannot do this.
        if name == "address" and isinstance(value, str):
            value = value.lower()
        super().__setattr__(name, value)


class MailboxMarkRow(SQLModel, table=True):
    """A dirty mark that found its mailbox row held by another transaction (PostgreSQL: a sync committing it).

    Written instead of waiting for that commit, and folded into the mailbox's dirty generation by the next claim
    (bridge/store/work.py); nothing else reads it.
    """

    __tablename__ = "mailbox_mark"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    mailbox_id: int = Field(foreign_key="mailbox.id", ondelete="CASCADE", index=True)
    notified: bool  # Exchange said the mailbox changed: the sync's first lane
    marked_at: datetime = Field(sa_type=UTCDateTime)


class SubscriptionRow(SQLModel, table=True):
    """A change-notification subscription Exchange holds for a mailbox (Graph subscription or EWS stream)."""

    __tablename__ = "subscription"

    id: str = Field(primary_key=True)
    mailbox_id: int = Field(foreign_key="mailbox.id", ondelete="CASCADE", index=True)
    source: str = Field(max_length=64)
    resource: str
    client_state: str = Field(max_length=128)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    renewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set by a reauthorizationRequired lifecycle notification, cleared by the renewal it asks for.
    reauthorize_requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DeltaStateRow(SQLModel, table=True):
    """Where a mailbox's delta round stands: its fixed window and the token to continue from (none = full read)."""

    __tablename__ = "delta_state"

    mailbox_id: int = Field(foreign_key="mailbox.id", ondelete="CASCADE", primary_key=True)
    window_start: datetime = Field(sa_type=UTCDateTime)
    window_end: datetime = Field(sa_type=UTCDateTime)
    token: str | None = Field(default=None, sa_type=sa.Text)
    round_started_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, sa_column_kwargs={"onupdate": now})


class MirrorRow(SQLModel, table=True):
    """The bridge's copy of one appointment instance in the window, and the template it was last shown as.

    `template` is null when the workforce system was not shown the item (free, unmapped, ignored), so the diff
    against a new read knows whether to emit created, updated or deleted.
    """

    __tablename__ = "mirror"

    mailbox_id: int = Field(foreign_key="mailbox.id", ondelete="CASCADE", primary_key=True)
    item_id: str = Field(primary_key=True)
    change_key: str
    series_id: str | None = None
    kind: AppointmentKind = Field(sa_type=_choice(AppointmentKind, "kind", checked=False))
    start: datetime = Field(sa_type=UTCDateTime)
    end: datetime = Field(sa_type=UTCDateTime)
    all_day: bool = False
    free_busy: FreeBusy = Field(sa_type=_choice(FreeBusy, "free_busy", checked=False))
    subject: str = ""
    private: bool = False
    is_organizer: bool = True
    bridge_ref: str | None = None
    content_hash: str = Field(max_length=128)
    template: str | None = None
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, sa_column_kwargs={"onupdate": now})


class OutboxRow(SQLModel, table=True):
    """One change for the workforce system, kept until delivered; `id` doubles as the pull feed's cursor.

    `change_id` is stable across replays so the receiver can de-duplicate; `sequence` orders a mailbox's changes.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.UniqueConstraint("change_id"),
        sa.UniqueConstraint("mailbox_id", "sequence"),
        # A mailbox's undelivered changes in sequence order, without its delivered ones (kept for days) to skip.
        sa.Index(
            "ix_outbox_undelivered",
            "mailbox_id",
            "sequence",
            sqlite_where=sa.text("delivered_at IS NULL"),
            postgresql_where=sa.text("delivered_at IS NULL"),
        ),
        # Only delivered changes (retention's query): a change is written undelivered, and an entry for its null
        # was one more index write per change in every sync commit.
        sa.Index(
            "ix_outbox_delivered_at",
            "delivered_at",
            sqlite_where=sa.text("delivered_at IS NOT NULL"),
            postgresql_where=sa.text("delivered_at IS NOT NULL"),
        ),
        # AUTOINCREMENT: plain SQLite rowids reuse the highest id after a delete, which would rewind the cursor.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    change_id: str = Field(max_length=36)
    # Not indexed alone: the unique (mailbox_id, sequence) index serves lookups by mailbox.
    mailbox_id: int = Field(foreign_key="mailbox.id", ondelete="CASCADE")
    sequence: int
    change_type: ChangeType = Field(sa_type=_choice(ChangeType, "change_type"))
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    # When Exchange last changed the appointment (None when unknown, as for a deletion): the change-latency metric.
    source_modified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)


class FeedHorizonRow(SQLModel, table=True):
    """How far retention has pruned the outbox (one row, id 1): a feed cursor below `pruned_through` has lost
    changes, and the feed says so instead of silently skipping them (bridge/store/retention.py)."""

    __tablename__ = "feed_horizon"

    id: int = Field(default=1, primary_key=True)
    pruned_through: int = Field(default=0, sa_type=sa.BigInteger)
    pruned_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)


class CommandRow(SQLModel, table=True):
    """A request from the workforce system to change Exchange, stored before it is sent (DESIGN §3.3).

    `scope` is the mailbox address (or `mail` for mail): a repeated request with the same idempotency key in the
    same scope finds this row instead of making a new one. `item_id`/`change_key` record what the write touched
    and what Exchange answered, so the sync engine recognises the write when it comes back as a change (echo).
    """

    __tablename__ = "command"
    __table_args__ = (
        sa.UniqueConstraint("scope", "idempotency_key"),
        sa.Index("ix_command_mailbox_updated", "mailbox_id", "updated_at"),
        sa.Index("ix_command_finished", "finished_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    mailbox_id: int | None = Field(default=None, foreign_key="mailbox.id", ondelete="CASCADE")
    scope: str = Field(max_length=320)
    kind: CommandKind = Field(sa_type=_choice(CommandKind, "kind"))
    idempotency_key: str | None = Field(default=None, max_length=255)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    status: CommandStatus = Field(default=CommandStatus.SENDING, sa_type=_choice(CommandStatus, "status"), index=True)
    transaction_id: str | None = Field(default=None, max_length=255)
    # The instance carrying the command out: after a restart it takes its own interrupted commands back at once.
    owner: str | None = None
    item_id: str | None = Field(default=None, sa_type=sa.Text)
    change_key: str | None = Field(default=None, sa_type=sa.Text)
    http_status: int | None = None
    result: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    error: str | None = Field(default=None, sa_type=sa.Text)
    attempts: int = 0
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, sa_column_kwargs={"onupdate": now})
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A create or state command that made an appointment: its id names that appointment (an update or delete may
    # give it), so retention keeps the row until the appointment (or the series' last day) is over.
    needed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NoticeRow(SQLModel, table=True):
    """A problem the administrator has been told about and not yet told has ended (bridge/notices.py).

    `state` is what the problem was when it was announced: a different state of the same problem (another
    reason for a pause) is announced again, the same one never.
    """

    __tablename__ = "notice"

    key: str = Field(primary_key=True, max_length=400)
    state: str = Field(sa_type=sa.Text)
    text: str = Field(sa_type=sa.Text)
    announced_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)


class NoticeMessageRow(SQLModel, table=True):
    """One message to the administrator, kept until every channel it is for has taken it."""

    __tablename__ = "notice_message"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    subject: str = Field(sa_type=sa.Text)
    text: str = Field(sa_type=sa.Text)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    # The channels ("webhook", "mail") still to send it to.
    pending: list[str] = Field(default_factory=list, sa_type=JSONType)
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, index=True)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)


class MappingStateRow(SQLModel, table=True):
    """The template mapping the mirror reflects, and a change of it held for an administrator's confirmation.

    One row (id 1). The applied mapping's text is kept so that a file edited while the bridge was stopped is
    compared with what was applied, not taken as if it always had been. Digests are SHA-256 of the file's bytes.
    """

    __tablename__ = "mapping_state"

    id: int = Field(default=1, primary_key=True)
    applied_digest: str = Field(max_length=64)
    applied_text: str = Field(sa_type=sa.Text)
    applied_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    held_digest: str | None = Field(default=None, max_length=64)
    held_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # What the held change would do (bridge/mapping_change.py's preview, as JSON).
    held_preview: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    approved_digest: str | None = Field(default=None, max_length=64)
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AdminSessionRow(SQLModel, table=True):
    """A signed-in administrator on the admin page (bridge/web/admin/session.py).

    Kept here rather than in a signed cookie so that every instance sharing the database knows it and signing out
    ends it everywhere at once. The cookie's secret is not stored, only its SHA-256: a copy of the database does
    not sign anyone in.
    """

    __tablename__ = "admin_session"

    id: str = Field(primary_key=True, max_length=64)  # SHA-256 hex of the cookie's secret
    token_name: str = Field(max_length=200)  # the admin token signed in with: its name, never its value
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    seen_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, index=True)
    # A line for the next page shown (what the last form did), shown once.
    notice: str | None = Field(default=None, sa_type=sa.Text)


class MappingHistoryRow(SQLModel, table=True):
    """One template mapping the mirror was made to reflect: its text, when and by whom it was applied.

    Appended whenever the applied mapping changes (`mapping_state.record_applied`); the admin page shows the diff
    between consecutive rows and rolls back to the row before the newest.
    """

    __tablename__ = "mapping_history"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    digest: str = Field(max_length=64)
    text: str = Field(sa_type=sa.Text)
    applied_at: datetime = Field(sa_type=UTCDateTime, index=True)
    applied_by: str = Field(max_length=200)
    # Changes the re-map emitted to the workforce system; None when it was not counted (the first record).
    emitted: int | None = None
