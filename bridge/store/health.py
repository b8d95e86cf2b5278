"""What administrators see about sources and mailboxes: their status, the reason for it, and since when.

A source's status is shared by every instance through its row: a failing source is held (`held_until`) so that
none of its mailboxes is read before the hold ends, and the first success anywhere clears it. What every health
view reports is read in one place, `bridge/store/summary.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from bridge.store.models import MailboxRow, MailboxStatus, SourceRow, SourceStatus, now


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
