"""Tests of the bridge's database layer; the helpers build the rows most tests need."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from bridge.store import ChangeType, MailboxRow, OutboxRow


def add_mailbox(session: Session, address: str = "alice@example.com") -> int:
    """Insert a mailbox and return its id."""
    row = MailboxRow(address=address, source="exchange")
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def outbox_row(mailbox_id: int, sequence: int, change_id: str | None = None) -> OutboxRow:
    return OutboxRow(
        change_id=change_id or str(uuid.uuid4()),
        mailbox_id=mailbox_id,
        sequence=sequence,
        change_type=ChangeType.CREATED,
        payload={"sequence": sequence},
    )
