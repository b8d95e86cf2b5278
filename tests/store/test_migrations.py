from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import sql
from sqlmodel import SQLModel, select

from bridge.store import Database, MailboxRow
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
