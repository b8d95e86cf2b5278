"""The outbox's rows as `add_changes` writes them, on both backends."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import col, select

from bridge.domain import ChangeType, FreeBusy, PresenceEntry
from bridge.store import Database, MailboxRow, OutboxRow
from bridge.store.outbox import add_changes, add_changes_many, change_ids
from tests.store import add_mailbox, stored_rows

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_change_ids_are_uuids_in_the_order_they_were_made() -> None:
    first = change_ids(3)
    time.sleep(0.002)  # the next millisecond
    later = change_ids(2)

    ids = first + later
    assert len(set(ids)) == 5
    assert all(uuid.UUID(value).version == 7 and uuid.UUID(value).variant == uuid.RFC_4122 for value in ids)
    assert all(str(uuid.UUID(value)) == value for value in ids)  # the canonical form, as before
    assert max(first) < min(later)


def test_changes_are_stored_as_sqlalchemys_types_store_them(db: Database) -> None:
    entries = [
        PresenceEntry("item-1", "meeting", FreeBusy.BUSY, T0, T0 + timedelta(hours=1), all_day=False, subject="Visit"),
        PresenceEntry("item-2", "absence", FreeBusy.OOF, T0, T0 + timedelta(days=1), all_day=True, subject=None),
    ]
    modified = {"item-1": datetime(2026, 11, 23, 8, 30, 5, 250000, tzinfo=ZoneInfo("Europe/Amsterdam"))}
    with db.session() as session:
        mailbox = session.get_one(MailboxRow, add_mailbox(session))
        mailbox.workforce_id = "E1"
        queued = add_changes(session, mailbox, [(ChangeType.CREATED, entry) for entry in entries], T0, modified)
    with db.session() as session:
        written = session.exec(select(OutboxRow).order_by(col(OutboxRow.id))).all()
        # The same values once more, through SQLAlchemy's own processing of each column's type.
        again = [
            row.model_dump(exclude={"id"}) | {"change_id": f"again-{row.sequence}", "sequence": row.sequence + 10}
            for row in written
        ]
        session.connection().execute(sa.insert(OutboxRow), again)

    stored = stored_rows(db, "outbox", apart_from={"id", "change_id", "sequence"})
    assert [row.payload for row in written] == [change.payload for change in queued]
    assert [row.source_modified_at for row in written] == [modified["item-1"], None]
    assert stored[:2] == stored[2:]


def test_changes_of_several_mailboxes_are_numbered_each_from_its_own_sequence(db: Database) -> None:
    entry = PresenceEntry("item-1", "meeting", FreeBusy.BUSY, T0, T0 + timedelta(hours=1), all_day=False, subject=None)
    with db.session() as session:
        first, second = (session.get_one(MailboxRow, add_mailbox(session, f"{n}@example.com")) for n in "ab")
        second.next_sequence = 7
        session.flush()
        queued = add_changes_many(
            session,
            [
                (first, [(ChangeType.CREATED, entry), (ChangeType.UPDATED, entry)], {}),
                (second, [], {}),
                (second, [(ChangeType.DELETED, entry)], {"item-1": T0}),
            ],
            T0,
        )
        moved_on = (first.next_sequence, second.next_sequence)
    with db.session() as session:
        written = session.exec(select(OutboxRow).order_by(col(OutboxRow.id))).all()

    assert [[change.sequence for change in changes] for changes in queued] == [[1, 2], [], [7]]
    assert moved_on == (3, 8)
    assert [(row.mailbox_id, row.sequence, row.payload["mailbox"]) for row in written] == [
        (first.id, 1, "a@example.com"),
        (first.id, 2, "a@example.com"),
        (second.id, 7, "b@example.com"),
    ]
    assert [row.source_modified_at for row in written] == [None, None, T0]
    assert len({row.change_id for row in written}) == 3
