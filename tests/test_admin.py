"""Mailbox administration racing the sync engine (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlmodel import col, select

from bridge import admin
from bridge.domain import Appointment, ChangeType, FreeBusy
from bridge.store import Database, MailboxRow, OutboxRow
from bridge.store.mirror import write_mirror
from bridge.store.outbox import add_changes
from bridge.store.work import lock_mailbox
from bridge.templates import default_mapping_path, load_mapping
from tests.store import NOW
from tests.web import entry

MAPPING = load_mapping(default_mapping_path())
ADDRESS = "adele@contoso.com"


def _mailbox_showing(db: Database, appointments: int) -> int:
    with db.session() as session:
        mailbox = MailboxRow(address=ADDRESS, workforce_id="E1001", source="online", lease_owner="instance-a")
        session.add(mailbox)
        session.flush()
        assert mailbox.id is not None
        shown = [
            Appointment(f"item{n}", "ck", NOW + timedelta(hours=n), NOW + timedelta(hours=n + 1), FreeBusy.BUSY, "x")
            for n in range(appointments)
        ]
        write_mirror(session, mailbox.id, [MAPPING.mirror_item(item)[0] for item in shown], ())
        add_changes(session, mailbox, [(ChangeType.CREATED, entry(n)) for n in range(appointments)], NOW)
        return mailbox.id


def test_removing_waits_for_a_sync_commit_and_numbers_its_deletions_after_it(db: Database) -> None:
    mailbox_id = _mailbox_showing(db, 2)
    removed: list[int] = []
    errors: list[BaseException] = []

    def remove() -> None:
        try:
            with db.session() as session:
                removed.append(admin.remove(session, ADDRESS, MAPPING, NOW))
        except BaseException as exc:  # reported by the assertion below, not lost in the thread
            errors.append(exc)

    with db.session() as session:
        syncing = lock_mailbox(session, mailbox_id)  # a sync commit under way holds the row
        assert syncing is not None
        add_changes(session, syncing, [(ChangeType.UPDATED, entry(0))], NOW)
        session.connection().execute(
            MailboxRow.__table__.update()  # type: ignore[attr-defined]
            .where(col(MailboxRow.id) == mailbox_id)
            .values(next_sequence=syncing.next_sequence)
        )
        remover = threading.Thread(target=remove)
        remover.start()
        time.sleep(0.5)  # long enough for the removal to reach the row if nothing holds it back
    remover.join(30)

    assert errors == []
    assert removed == [2]
    with db.session() as session:
        sequences = session.exec(
            select(OutboxRow.sequence, OutboxRow.change_type).order_by(col(OutboxRow.sequence))
        ).all()
    assert [change for _, change in sequences] == [ChangeType.CREATED] * 2 + [ChangeType.UPDATED] + [
        ChangeType.DELETED
    ] * 2
    assert [sequence for sequence, _ in sequences] == list(range(1, 6))


def test_removing_takes_the_lease_from_a_sync_under_way(db: Database) -> None:
    mailbox_id = _mailbox_showing(db, 1)

    with db.session() as session:
        admin.remove(session, ADDRESS, MAPPING, NOW)

    with db.session() as session:
        locked = lock_mailbox(session, mailbox_id)
    # The sync's commit checks the lease it read with: it is gone, so its reading is dropped (LeaseLost).
    assert locked is not None
    assert locked.lease_owner is None
