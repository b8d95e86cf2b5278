"""What administrators see about sources and mailboxes: their status, the reason for it, and since when.

A source's status is shared by every instance through its row: a failing source is held (`held_until`) so that
none of its mailboxes is read before the hold ends, and the first success anywhere clears it.
`health_summary` gathers what `/readyz` (and any other health view) reports, in one plain value, sync progress
included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.store.models import MailboxRow, MailboxStatus, OutboxRow, SourceRow, SourceStatus, now
from bridge.store.progress import SyncProgress, sync_progress


def set_source_status(session: Session, name: str, status: SourceStatus, reason: str | None) -> None:
    row = session.get(SourceRow, name)
    if row is not None and (row.status, row.status_reason) != (status, reason):
        if row.status != status:
            row.status_since = now()
        row.status = status
        row.status_reason = reason


def source_failed(
    session: Session,
    name: str,
    status: SourceStatus,
    reason: str,
    at: datetime,
    wait: Callable[[int], timedelta],
) -> datetime | None:
    """Record that the source failed and hold it for `wait(failures in a row)`; returns the end of the hold.

    Failures that arrive while the source is already held in the same status (reads of several mailboxes were
    under way together, or another instance got there first) do not lengthen the hold.
    """
    row = session.get(SourceRow, name, with_for_update=True)
    if row is None:
        return None
    if row.status == status and row.held_until is not None and row.held_until > at:
        return row.held_until
    row.failures += 1
    if row.status != status:
        row.status_since = at
    row.status = status
    row.status_reason = reason
    row.held_until = at + wait(row.failures)
    return row.held_until


def source_works(session: Session, name: str, at: datetime) -> bool:
    """Clear a failing source's status and hold after a success; True when it was failing."""
    row = session.get(SourceRow, name)
    if row is None or (row.status is SourceStatus.OK and row.held_until is None and not row.failures):
        return False
    if row.status is not SourceStatus.OK:
        row.status_since = at
    row.status = SourceStatus.OK
    row.status_reason = None
    row.held_until = None
    row.failures = 0
    return True


@dataclass(frozen=True, slots=True)
class SourceHold:
    status: SourceStatus
    held_until: datetime | None


def source_hold(session: Session, name: str) -> SourceHold | None:
    row = session.get(SourceRow, name)
    return None if row is None else SourceHold(row.status, row.held_until)


def set_mailbox_status(session: Session, mailbox_id: int, status: MailboxStatus, reason: str | None) -> None:
    row = session.get(MailboxRow, mailbox_id)
    if row is not None and (row.status, row.status_reason) != (status, reason):
        row.status = status
        row.status_reason = reason


def note_mailbox(session: Session, mailbox_id: int, reason: str | None) -> None:
    """A reason shown beside an active mailbox (it still syncs, something is degraded), or None to clear it."""
    row = session.get(MailboxRow, mailbox_id)
    if row is not None and row.status is MailboxStatus.ACTIVE and row.status_reason != reason:
        row.status_reason = reason


@dataclass(frozen=True, slots=True)
class SourceHealth:
    name: str
    kind: str
    status: SourceStatus
    since: datetime | None
    held_until: datetime | None
    # What Exchange or the network said: for administrators only (it may name hosts and accounts).
    reason: str | None


@dataclass(frozen=True, slots=True)
class HealthSummary:
    """The bridge's state now, as the database holds it."""

    at: datetime
    sources: tuple[SourceHealth, ...]
    mailboxes: dict[MailboxStatus, int]
    backlog: int
    oldest_undelivered: datetime | None
    progress: SyncProgress | None = None  # mailboxes waiting for a sync (a first sync, a window roll)

    @property
    def working(self) -> bool:
        """Whether the bridge can do its job at all: at least one source works."""
        return any(source.status is SourceStatus.OK for source in self.sources)

    @property
    def degraded(self) -> bool:
        return not all(source.status is SourceStatus.OK for source in self.sources) or bool(
            self.mailboxes.get(MailboxStatus.DISABLED) or self.mailboxes.get(MailboxStatus.PAUSED)
        )

    @property
    def backlog_age(self) -> timedelta | None:
        return None if self.oldest_undelivered is None else max(self.at - self.oldest_undelivered, timedelta(0))


def health_summary(session: Session, at: datetime) -> HealthSummary:
    """Sources with their status, mailboxes counted by status, and the delivery backlog (a few cheap queries)."""
    sources = tuple(
        SourceHealth(row.name, row.kind.value, row.status, row.status_since, row.held_until, row.status_reason)
        for row in session.exec(select(SourceRow).order_by(col(SourceRow.name))).all()
    )
    counted = dict.fromkeys(MailboxStatus, 0)
    for status, count in session.execute(
        sa.select(col(MailboxRow.status), sa.func.count()).group_by(col(MailboxRow.status))
    ).all():
        counted[MailboxStatus(status)] = int(count)
    backlog, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(col(OutboxRow.created_at))).where(col(OutboxRow.delivered_at).is_(None))
    ).one()
    return HealthSummary(at, sources, counted, int(backlog), oldest, sync_progress(session, at))
