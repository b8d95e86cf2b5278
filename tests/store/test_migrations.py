from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from psycopg import sql
from sqlmodel import Session, SQLModel, col, select

from bridge.delivery import claim_due
from bridge.store import CommandRow, Database, MailboxRow, OutboxRow
from bridge.store.db import MIGRATIONS
from bridge.store.work import claim_dirty, mark_dirty
from tests.conftest import POSTGRES_URL, DatabaseUrl
from tests.store import add_mailbox


def test_fresh_database_has_no_revision(database_url: DatabaseUrl) -> None:
    database = Database(database_url.url, schema=database_url.schema)
    try:
        assert database.current_revision() is None
    finally:
        database.close()


def test_upgrade_reaches_the_newest_revision(db: Database) -> None:
    assert db.current_revision() == db.head_revision() is not None


def test_migrated_schema_matches_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_upgrade_creates_a_missing_schema(database_url: DatabaseUrl) -> None:
    assert database_url.schema is not None
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(database_url.schema)))
    database = Database(database_url.url, schema=database_url.schema)
    try:
        database.upgrade()
        assert database.current_revision() == database.head_revision()
    finally:
        database.close()


def test_upgrading_twice_changes_nothing(db: Database) -> None:
    with db.session() as session:
        add_mailbox(session)

    db.upgrade()

    assert db.current_revision() == db.head_revision()
    with db.session() as session:
        assert [row.address for row in session.exec(select(MailboxRow))] == ["alice@example.com"]


def test_check_constraints_allow_every_enum_value(db: Database) -> None:
    # Alembic's comparison ignores CHECK constraints, so a value added to a model's enum needs this guard.
    with db.engine.connect() as connection:
        inspector = sa.inspect(connection)
        for table in SQLModel.metadata.sorted_tables:
            checks = {check["name"]: check["sqltext"] for check in inspector.get_check_constraints(table.name)}
            for column in table.columns:
                if isinstance(column.type, sa.Enum) and column.type.create_constraint:
                    sqltext = checks[f"ck_{table.name}_{column.name}"]
                    assert all(f"'{value}'" in sqltext for value in column.type.enums), (table.name, column.name)


def test_commands_finished_before_0011_keep_the_appointment_they_made(database_url: DatabaseUrl) -> None:
    """0011 fills `needed_until` in for finished commands: a create's end, moved later by an update of its id."""
    database = Database(database_url.url, schema=database_url.schema)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    insert = sa.text(
        "INSERT INTO command (id, scope, kind, payload, status, attempts, created_at, updated_at, finished_at)"
        " VALUES (:id, 'adele@contoso.com', :kind, :payload, 'done', 1, :at, :at, :at)"
    )
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    create = {"request": {"start": "2026-12-01T09:00:00+00:00", "end": "2026-12-01T10:00:00+00:00"}}
    moved = {"request": {"target": "c1", "start": "2026-12-03T09:00:00+00:00", "end": "2026-12-03T10:00:00+00:00"}}
    series = {
        "request": {"start": "2026-12-01T09:00:00", "end": "2026-12-01T10:00:00", "recurrence": {"until": "2027-01-31"}}
    }
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0010_tz")
            for command_id, kind, payload in [
                ("c1", "create", create),
                ("u1", "update", moved),
                ("c2", "create", series),
            ]:
                connection.execute(insert, {"id": command_id, "kind": kind, "payload": json.dumps(payload), "at": at})
        database.upgrade()

        with database.session() as session:
            found = {
                row[0]: row[1] for row in session.execute(sa.select(col(CommandRow.id), col(CommandRow.needed_until)))
            }
        assert found == {
            "c1": datetime(2026, 12, 3, 10, tzinfo=UTC),
            "u1": None,
            "c2": datetime(2027, 2, 1, tzinfo=UTC),
        }
    finally:
        database.close()


def old_mailbox(connection: sa.Connection, address: str = "alice@example.com", next_sequence: int = 1) -> int:
    """A mailbox inserted as an older revision's schema has it (the models describe the newest)."""
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    mailbox = sa.Table("mailbox", sa.MetaData(), autoload_with=connection)
    return int(
        connection.execute(
            sa.insert(mailbox).returning(mailbox.c.id),
            {
                "address": address,
                "source": "exchange",
                "status": "active",
                "created_at": at,
                "updated_at": at,
                "dirty_generation": 0,
                "synced_generation": 0,
                "next_sequence": next_sequence,
            },
        ).scalar_one()
    )


def old_outbox(
    connection: sa.Connection,
    mailbox_id: int,
    sequence: int,
    change_id: str,
    next_attempt_at: datetime,
    delivered_at: datetime | None = None,
) -> None:
    """An outbox row inserted as an older revision's schema has it."""
    outbox = sa.Table("outbox", sa.MetaData(), autoload_with=connection)
    connection.execute(
        sa.insert(outbox),
        {
            "change_id": change_id,
            "mailbox_id": mailbox_id,
            "sequence": sequence,
            "change_type": "appointment.created",
            "payload": {"sequence": sequence},
            "created_at": next_attempt_at,
            "delivered_at": delivered_at,
            "attempts": 0,
            "next_attempt_at": next_attempt_at,
        },
    )


def test_upgrading_a_database_in_use_to_0013_keeps_its_work_and_marks_it(database_url: DatabaseUrl) -> None:
    database = Database(database_url.url, schema=database_url.schema)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0012_cpu")
            with Session(connection) as session:
                dirty, clean = old_mailbox(connection), old_mailbox(connection, "bob@example.com")
                mark_dirty(session, [dirty], now)
                old_outbox(connection, clean, 1, "kept", now)
                session.commit()
        database.upgrade()

        with database.session() as session:
            # A mailbox dirty before the upgrade is still dirty; an undelivered change is still in the outbox.
            claim = claim_dirty(session, "a", now, lease=timedelta(seconds=30))
            assert claim is not None
            assert (claim.mailbox_id, claim.generation) == (dirty, 1)
            assert [row.change_id for row in session.exec(select(OutboxRow))] == ["kept"]
            assert mark_dirty(session, [clean], now, notified=True) == 1
        with database.session() as session:
            again = claim_dirty(session, "a", now, lease=timedelta(seconds=30), notified_only=True)
            assert again is not None
            assert again.mailbox_id == clean
    finally:
        database.close()


def test_upgrading_to_0014_keeps_undelivered_changes_due_and_back_offs_held(database_url: DatabaseUrl) -> None:
    database = Database(database_url.url, schema=database_url.schema)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    later = now + timedelta(minutes=5)
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0013_locks")
            waiting = old_mailbox(connection, "adele@example.com", next_sequence=4)
            old_outbox(connection, waiting, 1, "w1", now, delivered_at=now)
            old_outbox(connection, waiting, 2, "w2", now)
            old_outbox(connection, waiting, 3, "w3", now)
            done = old_mailbox(connection, "bob@example.com", next_sequence=2)
            old_outbox(connection, done, 1, "d1", now, delivered_at=now)
            backing_off = old_mailbox(connection, "carol@example.com", next_sequence=2)
            old_outbox(connection, backing_off, 1, "b1", later)
        database.upgrade()

        def claim(owner: str, at: datetime) -> list[tuple[int, list[int]]]:
            with database.session() as session:
                claimed = claim_due(
                    session, owner=owner, now=at, until=at + timedelta(hours=1), limit=8, exclude=set(), batch_size=20
                )
            return [
                (mailbox_id, [json.loads(change)["sequence"] for change in batch.changes])
                for mailbox_id, batch in claimed
            ]

        assert claim("a", now + timedelta(seconds=1)) == [(waiting, [2, 3])]
        assert claim("b", later + timedelta(seconds=1)) == [(backing_off, [1])]
    finally:
        database.close()
