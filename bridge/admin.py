"""Mailbox administration: what `presence-bridge mailboxes ...` (and later the admin page) does to the database.

The database is the list of mailboxes; the configuration only seeds it. Disabling stops syncing and leaves what
the workforce system shows as it is; removing also tells the workforce system that every shown appointment is
gone, then forgets the mailbox's mirror (its row stays, disabled, so undelivered changes still go out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.config import Config
from bridge.domain import ChangeType
from bridge.errors import UserError
from bridge.store import DeltaStateRow, MailboxRow, MailboxStatus, MirrorRow, SourceKind, SourceRow, SubscriptionRow
from bridge.store.db import serialise
from bridge.store.mirror import load_mirror
from bridge.store.models import UTCDateTime
from bridge.store.outbox import add_changes
from bridge.store.work import find_mailbox, mark_dirty
from bridge.sync import shown_entries
from bridge.templates import TemplateMapping

REMOVED = "removed by an administrator"


@dataclass(frozen=True, slots=True)
class MailboxView:
    address: str
    workforce_id: str | None
    source: str
    status: str
    reason: str | None
    last_synced_at: datetime | None
    dirty: bool
    time_zone: str | None = None  # None: not read from Exchange yet (the source's default applies meanwhile)


def register(session: Session, config: Config, now: datetime) -> None:
    """Make the database know the configured sources and mailboxes; new mailboxes get a first sync.

    Mailboxes only in the database (added with `presence-bridge mailboxes add`) are left alone: the config seeds,
    it does not own the list.
    """
    serialise(session, "register")  # instances started together would each insert the same new mailboxes
    for name, source in config.sources.items():
        if session.get(SourceRow, name) is None:
            session.add(SourceRow(name=name, kind=SourceKind(source.kind)))
    known = {row.address: row for row in session.exec(select(MailboxRow)).all()}
    added = []
    for mailbox in config.mailboxes:
        row = known.get(mailbox.address.lower())
        if row is None:
            row = MailboxRow(address=mailbox.address, workforce_id=mailbox.workforce_id, source=mailbox.source)
            session.add(row)
            added.append(row)
        else:
            row.workforce_id = mailbox.workforce_id
            row.source = mailbox.source
    session.flush()
    mark_dirty(session, [row.id for row in added if row.id is not None], now)


def list_mailboxes(session: Session) -> list[MailboxView]:
    rows = session.exec(select(MailboxRow).order_by(col(MailboxRow.address))).all()
    return [_view(row) for row in rows]


@dataclass(frozen=True, slots=True)
class MailboxSearch:
    """Which mailboxes a list shows: `text` within the address or workforce id, a status, a source; one page."""

    text: str = ""
    status: str | None = None
    source: str | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class MailboxListing:
    mailbox: MailboxView
    subscription_expires_at: datetime | None  # the earliest of its subscriptions; None without one


def find_mailboxes(session: Session, search: MailboxSearch) -> tuple[list[MailboxListing], int]:
    """One page of the mailboxes `search` matches, by address, and how many match in all."""
    conditions = []
    if search.text:
        # LIKE's own wildcards in what was typed are taken literally.
        pattern = "%" + search.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            sa.or_(
                col(MailboxRow.address).like(pattern, escape="\\"),
                sa.func.lower(col(MailboxRow.workforce_id)).like(pattern, escape="\\"),
            )
        )
    if search.status is not None:
        conditions.append(col(MailboxRow.status) == MailboxStatus(search.status))
    if search.source is not None:
        conditions.append(col(MailboxRow.source) == search.source)
    total = session.execute(sa.select(sa.func.count()).select_from(MailboxRow).where(*conditions)).scalar_one()
    expiry = (
        sa.select(col(SubscriptionRow.mailbox_id), sa.func.min(col(SubscriptionRow.expires_at)).label("expires_at"))
        .group_by(col(SubscriptionRow.mailbox_id))
        .subquery()
    )
    rows = session.execute(
        sa.select(MailboxRow, expiry.c.expires_at)
        .outerjoin(expiry, expiry.c.mailbox_id == col(MailboxRow.id))
        .where(*conditions)
        .order_by(col(MailboxRow.address))
        .limit(search.limit)
        .offset(search.offset)
    ).all()
    dialect = session.get_bind().dialect
    # An aggregate bypasses the column type that makes a timestamp aware UTC.
    return [
        MailboxListing(_view(row), UTCDateTime().process_result_value(expires, dialect)) for row, expires in rows
    ], total


def _view(row: MailboxRow) -> MailboxView:
    return MailboxView(
        row.address,
        row.workforce_id,
        row.source,
        row.status.value,
        row.status_reason,
        row.last_synced_at,
        row.dirty_generation > row.synced_generation,
        row.time_zone,
    )


def add_mailbox(session: Session, address: str, workforce_id: str, source: str, now: datetime) -> None:
    """Mirror a mailbox (again); refused when it is mirrored already or another active mailbox has the workforce id
    (two mailboxes would report as one person)."""
    holder = session.exec(
        select(MailboxRow.address).where(
            MailboxRow.workforce_id == workforce_id,
            MailboxRow.status == MailboxStatus.ACTIVE,
            MailboxRow.address != address.lower(),
        )
    ).first()
    if holder is not None:
        raise UserError(
            f"workforce id {workforce_id!r} belongs to the active mailbox {holder}",
            ["disable or remove that one first"],
        )
    row = find_mailbox(session, address)
    if row is None:
        row = MailboxRow(address=address, workforce_id=workforce_id, source=source)
        session.add(row)
    elif row.status is MailboxStatus.ACTIVE:
        raise UserError(f"mailbox {address} is already mirrored")
    row.workforce_id = workforce_id
    row.source = source
    row.status = MailboxStatus.ACTIVE
    row.status_reason = None
    row.enrolled_by = None  # enrolled by hand now: a source's group no longer removes it
    session.flush()
    assert row.id is not None
    mark_dirty(session, [row.id], now)


def enable(session: Session, address: str, now: datetime) -> None:
    """Resume a disabled or paused mailbox; a paused one may then apply the deletions that paused it."""
    row = _mailbox(session, address)
    assert row.id is not None
    row.mass_delete_approved = row.status is MailboxStatus.PAUSED
    row.status = MailboxStatus.ACTIVE
    row.status_reason = None
    mark_dirty(session, [row.id], now)


def disable(session: Session, address: str, reason: str) -> None:
    row = _mailbox(session, address)
    row.status = MailboxStatus.DISABLED
    row.status_reason = reason


def resync(session: Session, address: str, now: datetime) -> None:
    """Read the whole window again from nothing (a new delta round); only real differences are emitted."""
    row = _mailbox(session, address)
    assert row.id is not None
    session.execute(sa.delete(DeltaStateRow).where(col(DeltaStateRow.mailbox_id) == row.id))
    mark_dirty(session, [row.id], now)


def remove(session: Session, address: str, mapping: TemplateMapping, now: datetime, *, reason: str = REMOVED) -> int:
    """Emit a deletion for every appointment the workforce system shows, then forget the mailbox's calendar."""
    row = _mailbox(session, address, locked=True)
    assert row.id is not None
    shown = shown_entries(load_mirror(session, row.id).values(), mapping)
    add_changes(session, row, [(ChangeType.DELETED, entry) for entry in shown], now)
    # Its subscription is left to the subscription manager, which unsubscribes inactive mailboxes at Exchange.
    for table in (MirrorRow, DeltaStateRow):
        session.execute(sa.delete(table).where(col(table.mailbox_id) == row.id))
    row.status = MailboxStatus.DISABLED
    row.status_reason = reason
    # A sync under way would otherwise commit its reading after the deletions, showing the appointments again.
    row.lease_owner = row.lease_expires_at = None
    return len(shown)


def _mailbox(session: Session, address: str, *, locked: bool = False) -> MailboxRow:
    """The mailbox's row; `locked`: held for this transaction as a sync commit holds it, for writing the outbox
    (whose sequence numbers come from the row)."""
    row = find_mailbox(session, address, locked=locked)
    if row is None:
        raise UserError(f"no mailbox {address}", ["`presence-bridge mailboxes list` shows the mirrored mailboxes"])
    return row
