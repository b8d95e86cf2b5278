"""What administrators see about sources and mailboxes: their status and the reason for it."""

from __future__ import annotations

from sqlmodel import Session

from bridge.store.models import MailboxRow, MailboxStatus, SourceRow, SourceStatus


def set_source_status(session: Session, name: str, status: SourceStatus, reason: str | None) -> None:
    row = session.get(SourceRow, name)
    if row is not None and (row.status, row.status_reason) != (status, reason):
        row.status = status
        row.status_reason = reason


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
