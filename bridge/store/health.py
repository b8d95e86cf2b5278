"""What administrators see about sources and mailboxes: their status, the reason for it, and since when.

A source's status is shared by every instance through its row: a failing source is held (`held_until`) so that
none of its mailboxes is read before the hold ends, and the first success anywhere clears it. What every health
view reports is read in one place, `bridge/store/summary.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from bridge.store.models import MailboxRow, MailboxStatus, SourceRow, SourceStatus, UTCDateTime, now


def set_source_status(session: Session, name: str, status: SourceStatus, reason: str | None) -> None:
    # One UPDATE that matches nothing when the status stands (every subscription made calls this), no ORM load.
    session.connection().execute(
        sa.update(SourceRow.__table__)  # type: ignore[attr-defined]
        .where(
            col(SourceRow.name) == name,
            sa.or_(col(SourceRow.status) != status, col(SourceRow.status_reason).is_distinct_from(reason)),
        )
        .values(
            status=status,
            status_reason=reason,
            status_since=sa.case(
                (col(SourceRow.status) != status, sa.literal(now(), UTCDateTime())), else_=col(SourceRow.status_since)
            ),
        )
    )


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
    # One UPDATE that matches nothing while the source is well (every sync commit calls this), not an ORM load.
    failing = sa.or_(
        col(SourceRow.status) != SourceStatus.OK, col(SourceRow.held_until).is_not(None), col(SourceRow.failures) != 0
    )
    result = session.connection().execute(
        sa.update(SourceRow.__table__)  # type: ignore[attr-defined]
        .where(col(SourceRow.name) == name, failing)
        .values(
            status=SourceStatus.OK,
            status_reason=None,
            held_until=None,
            failures=0,
            status_since=sa.case(
                (col(SourceRow.status) != SourceStatus.OK, sa.literal(at, UTCDateTime())),
                else_=col(SourceRow.status_since),
            ),
        )
    )
    return bool(result.rowcount)


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
    session.connection().execute(
        sa.update(MailboxRow.__table__)  # type: ignore[attr-defined]
        .where(
            col(MailboxRow.id) == mailbox_id,
            col(MailboxRow.status) == MailboxStatus.ACTIVE,
            col(MailboxRow.status_reason).is_distinct_from(reason),
        )
        .values(status_reason=reason)
    )
