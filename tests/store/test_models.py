from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import select

from bridge.store import (
    CommandKind,
    CommandRow,
    Database,
    MailboxRow,
    MailboxStatus,
    MirrorRow,
    OutboxRow,
)
from bridge.store.models import UTCDateTime, sqlite_timestamp
from tests.store import add_mailbox, outbox_row


def command(mailbox_id: int, command_id: str, idempotency_key: str | None) -> CommandRow:
    return CommandRow(
        id=command_id,
        mailbox_id=mailbox_id,
        scope="alice@example.com",
        kind=CommandKind.CREATE,
        idempotency_key=idempotency_key,
    )


def test_times_read_back_as_aware_utc(db: Database) -> None:
    local = datetime(2026, 3, 29, 3, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Amsterdam"))
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        session.get_one(MailboxRow, mailbox_id).dirty_at = local

    with db.session() as session:
        dirty_at = session.get_one(MailboxRow, mailbox_id).dirty_at

    assert dirty_at == local
    assert dirty_at is not None
    assert dirty_at.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 29, 3, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Amsterdam")),
        datetime(2026, 11, 30, 9, 0, tzinfo=UTC),  # no microseconds: still written
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    ],
)
def test_sqlite_keeps_times_as_sqlalchemys_datetime_writes_them(value: datetime) -> None:
    dialect = sqlite.dialect()
    sqlalchemys = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert sqlalchemys is not None
    assert ours is not None

    expected = sqlalchemys(value.astimezone(UTC).replace(tzinfo=None))
    assert sqlite_timestamp(value) == expected
    assert ours(value) == expected
    assert ours(None) is None


def test_naive_times_are_refused(db: Database) -> None:
    with db.session() as session:
        add_mailbox(session)

    with db.session() as session, pytest.raises(StatementError, match="naive datetime"):
        session.connection().execute(sa.update(MailboxRow).values(dirty_at=datetime(2026, 1, 1, 9, 0)))


def test_mailbox_address_is_stored_lower_case(db: Database) -> None:
    with db.session() as session:
        add_mailbox(session, "Alice.Smith@Example.COM")

    with db.session() as session:
        stored = session.connection().execute(sa.text("SELECT address FROM mailbox")).scalar_one()

    assert stored == "alice.smith@example.com"


def test_mailbox_address_is_unique_ignoring_case(db: Database) -> None:
    with db.session() as session:
        add_mailbox(session, "alice@example.com")

    with pytest.raises(IntegrityError), db.session() as session:
        add_mailbox(session, "ALICE@example.com")


def test_mailbox_lookup_by_address_ignores_case(db: Database) -> None:
    with db.session() as session:
        mailbox_id = add_mailbox(session, "alice@example.com")

    with db.session() as session:
        found = session.exec(select(MailboxRow).where(MailboxRow.address == "Alice@Example.com")).one()

    assert found.id == mailbox_id


def test_outbox_change_id_is_unique(db: Database) -> None:
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        session.add(outbox_row(mailbox_id, 1, change_id="change-1"))

    with pytest.raises(IntegrityError), db.session() as session:
        session.add(outbox_row(mailbox_id, 2, change_id="change-1"))


def test_outbox_sequence_is_unique_per_mailbox(db: Database) -> None:
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        session.add(outbox_row(mailbox_id, 1))

    with pytest.raises(IntegrityError), db.session() as session:
        session.add(outbox_row(mailbox_id, 1))


def test_outbox_sequences_are_independent_between_mailboxes(db: Database) -> None:
    with db.session() as session:
        first, second = add_mailbox(session, "alice@example.com"), add_mailbox(session, "bob@example.com")
        session.add_all([outbox_row(first, 1), outbox_row(second, 1)])

    with db.session() as session:
        assert len(session.exec(select(OutboxRow)).all()) == 2


def test_command_idempotency_key_is_unique_per_scope(db: Database) -> None:
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        session.add(command(mailbox_id, "command-1", "key-1"))

    with pytest.raises(IntegrityError), db.session() as session:
        session.add(command(mailbox_id, "command-2", "key-1"))


def test_commands_without_idempotency_key_do_not_clash(db: Database) -> None:
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        session.add_all([command(mailbox_id, "command-1", None), command(mailbox_id, "command-2", None)])

    with db.session() as session:
        assert len(session.exec(select(CommandRow)).all()) == 2


def test_outbox_ids_increase_in_insert_order(db: Database) -> None:
    ids = []
    with db.session() as session:
        mailbox_id = add_mailbox(session)
    for sequence in range(1, 6):
        with db.session() as session:
            row = outbox_row(mailbox_id, sequence)
            session.add(row)
            session.flush()
            ids.append(row.id)

    assert ids == sorted(set(ids))


def test_outbox_ids_are_never_reused(db: Database) -> None:
    # The pull feed's cursor is the last id a client saw: reusing a deleted id would hide the new row.
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        newest = outbox_row(mailbox_id, 1)
        session.add(newest)
    with db.session() as session:
        session.delete(session.get_one(OutboxRow, newest.id))

    with db.session() as session:
        after = outbox_row(mailbox_id, 2)
        session.add(after)
        session.flush()

    assert after.id is not None
    assert newest.id is not None
    assert after.id > newest.id


def test_json_payload_round_trips(db: Database) -> None:
    payload = {"template": "meeting", "start": "2026-01-05T09:00:00Z", "all_day": False, "tags": ["a", "b"]}
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        row = outbox_row(mailbox_id, 1)
        row.payload = payload
        session.add(row)

    with db.session() as session:
        assert session.exec(select(OutboxRow.payload)).one() == payload


def test_status_reads_back_as_its_enum(db: Database) -> None:
    with db.session() as session:
        mailbox_id = add_mailbox(session)

    with db.session() as session:
        status = session.get_one(MailboxRow, mailbox_id).status

    assert status is MailboxStatus.ACTIVE


def test_database_refuses_an_unknown_status(db: Database) -> None:
    with db.session() as session:
        add_mailbox(session)

    with pytest.raises(IntegrityError), db.session() as session:
        session.connection().execute(sa.text("UPDATE mailbox SET status = 'sleeping'"))


def test_deleting_a_mailbox_deletes_its_rows(db: Database) -> None:
    with db.session() as session:
        mailbox_id = add_mailbox(session)
        session.add(outbox_row(mailbox_id, 1))
        session.add(command(mailbox_id, "command-1", None))
    with db.session() as session:
        session.delete(session.get_one(MailboxRow, mailbox_id))

    with db.session() as session:
        assert session.exec(select(OutboxRow)).all() == []
        assert session.exec(select(CommandRow)).all() == []
        assert session.exec(select(MirrorRow)).all() == []
