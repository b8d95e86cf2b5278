"""The mapping the mirror reflects, and the history of applied mappings (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from bridge.store import Database
from bridge.store.db import MIGRATIONS
from bridge.store.mapping_state import FILE_EDIT, applied_mapping, mapping_history, record_applied
from tests.conftest import DatabaseUrl
from tests.store import NOW


def test_each_new_applied_mapping_joins_the_history_newest_first(db: Database) -> None:
    with db.session() as session:
        record_applied(session, "a" * 64, "first", NOW, "the bridge's first start")
        record_applied(session, "b" * 64, "second", NOW + timedelta(minutes=1), "admin (admin page)", 3)
        record_applied(session, "b" * 64, "second", NOW + timedelta(minutes=2))  # the same again: no entry

    with db.session() as session:
        history = mapping_history(session, 10)
        assert applied_mapping(session) == ("b" * 64, "second")

    assert [(e.text, e.applied_by, e.emitted, e.applied_at) for e in history] == [
        ("second", "admin (admin page)", 3, NOW + timedelta(minutes=1)),
        ("first", "the bridge's first start", None, NOW),
    ]
    assert history[0].id > history[1].id


def test_who_applied_an_edit_of_the_file_is_not_known(db: Database) -> None:
    with db.session() as session:
        record_applied(session, "a" * 64, "first", NOW)
        assert mapping_history(session, 1)[0].applied_by == FILE_EDIT


def test_the_history_is_cut_at_the_limit(db: Database) -> None:
    with db.session() as session:
        for n in range(5):
            record_applied(session, f"{n:064d}", f"text {n}", NOW + timedelta(minutes=n))
        assert [entry.text for entry in mapping_history(session, 2)] == ["text 4", "text 3"]


def test_the_mapping_applied_before_the_upgrade_starts_the_history(database_url: DatabaseUrl) -> None:
    database = Database(database_url.url, schema=database_url.schema)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0005_observe")
            connection.execute(
                sa.text(
                    "INSERT INTO mapping_state (id, applied_digest, applied_text, applied_at) VALUES (1, :d, :t, :at)"
                ),
                {"d": "c" * 64, "t": "show: {}", "at": NOW},
            )
        database.upgrade()

        with database.session() as session:
            [entry] = mapping_history(session, 10)
        assert (entry.digest, entry.text) == ("c" * 64, "show: {}")
        assert entry.applied_by == "applied before the history was kept"
    finally:
        database.close()


def test_instances_recording_the_first_mapping_together_both_succeed(db: Database) -> None:
    # PostgreSQL: the second transaction finds no row to lock, and its insert waits for the first's, then finds
    # the key taken; it must go on with the row as the first left it (it failed on the key, stopping an instance).
    second: list[BaseException | None] = []

    def record_second() -> None:
        try:
            with db.session() as session:
                record_applied(session, "a" * 64, "first", NOW + timedelta(seconds=1), "the bridge's first start")
        except BaseException as exc:
            second.append(exc)
        else:
            second.append(None)

    with db.session() as session:
        record_applied(session, "a" * 64, "first", NOW, "the bridge's first start")
        other = threading.Thread(target=record_second)
        other.start()
        other.join(0.5)  # the other transaction is now waiting on this one (PostgreSQL) or for the write lock
    other.join(10)

    assert second == [None]
    with db.session() as session:
        assert applied_mapping(session) == ("a" * 64, "first")
        assert [(entry.text, entry.applied_at) for entry in mapping_history(session, 10)] == [("first", NOW)]
