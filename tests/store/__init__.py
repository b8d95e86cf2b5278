"""Tests of the bridge's database layer; the helpers build the rows most tests need."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from bridge.store import (
    ChangeType,
    Database,
    MailboxRow,
    MailboxStatus,
    OutboxRow,
    SourceKind,
    SourceRow,
    SourceStatus,
    SubscriptionRow,
)
from bridge.store.mapping_state import hold_mapping, record_applied


def add_mailbox(session: Session, address: str = "alice@example.com") -> int:
    """Insert a mailbox and return its id."""
    row = MailboxRow(address=address, source="exchange")
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def stored_rows(db: Database, table: str, *, apart_from: set[str]) -> list[dict[str, Any]]:
    """The table's rows as the database keeps them (SQLite: the text of timestamps and JSON), in the order written;
    without the columns `apart_from`."""
    with db.session() as session:
        result = session.connection().exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1")
        return [{k: v for k, v in row._mapping.items() if k not in apart_from} for row in result]


def outbox_row(mailbox_id: int, sequence: int, change_id: str | None = None) -> OutboxRow:
    return OutboxRow(
        change_id=change_id or str(uuid.uuid4()),
        mailbox_id=mailbox_id,
        sequence=sequence,
        change_type=ChangeType.CREATED,
        payload={"sequence": sequence},
    )


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def add_troubles(session: Session) -> None:
    """A deployment on a bad day, as of `NOW`: EWS unreachable, a paused and a disabled mailbox, a subscription
    about to expire and one asked to reauthorize, a workforce system refusing changes, and a mapping change held."""
    session.add(SourceRow(name="online", kind=SourceKind.GRAPH, updated_at=NOW - timedelta(days=1)))
    session.add(
        SourceRow(
            name="onprem",
            kind=SourceKind.EWS,
            status=SourceStatus.UNREACHABLE,
            status_reason="ConnectionRefusedError",
            status_since=NOW - timedelta(minutes=5),
            updated_at=NOW - timedelta(minutes=1),  # touched since (a hold renewed): not when the state began
        )
    )
    rows = {
        address: MailboxRow(address=address, source=source, status=status, status_reason=reason)
        for address, source, status, reason in (
            ("adele@contoso.com", "online", MailboxStatus.ACTIVE, None),
            ("grady@contoso.com", "online", MailboxStatus.PAUSED, "paused: one read would delete 9 of 9"),
            ("nestor@contoso.com", "onprem", MailboxStatus.DISABLED, "Exchange refused the mailbox"),
        )
    }
    rows["adele@contoso.com"].time_zone = "Europe/Berlin"  # grady's and nestor's not read yet
    session.add_all(rows.values())
    session.flush()
    adele, grady = rows["adele@contoso.com"].id, rows["grady@contoso.com"].id
    assert adele is not None
    assert grady is not None
    for subscription_id, mailbox_id, hours, reauthorize in (("s-late", grady, 48, False), ("s-soon", adele, 2, True)):
        session.add(
            SubscriptionRow(
                id=subscription_id,
                mailbox_id=mailbox_id,
                source="online",
                resource="/users/x/events",
                client_state="state",
                expires_at=NOW + timedelta(hours=hours),
                reauthorize_requested_at=NOW if reauthorize else None,
            )
        )
    failed = outbox_row(adele, 1)
    failed.created_at = NOW - timedelta(minutes=10)
    failed.attempts = 3
    failed.last_error = "answered 503 Service Unavailable"
    failed.next_attempt_at = NOW + timedelta(seconds=30)
    waiting = outbox_row(adele, 2)
    waiting.created_at = NOW - timedelta(minutes=1)
    delivered = outbox_row(grady, 1)
    delivered.created_at = NOW - timedelta(hours=5)
    delivered.delivered_at = NOW - timedelta(hours=4)
    session.add_all([failed, waiting, delivered])
    record_applied(session, "applied-digest", "show: {}", NOW - timedelta(days=2))
    hold_mapping(session, "held-digest", {"withdrawn": 7, "mailboxes": []}, NOW - timedelta(minutes=2))
