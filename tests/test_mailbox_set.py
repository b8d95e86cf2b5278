"""Noticing changes to the set of active mailboxes through the database alone (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge import admin
from bridge.mailbox_set import MailboxSetWatch
from bridge.store import Database, SourceKind, SourceRow

NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)


def _with_sources(db: Database) -> None:
    with db.session() as session:
        session.add(SourceRow(name="online", kind=SourceKind.GRAPH))
        session.add(SourceRow(name="onprem", kind=SourceKind.EWS))


async def test_the_first_reading_is_the_baseline(db: Database) -> None:
    _with_sources(db)
    with db.session() as session:
        admin.add_mailbox(session, "adele@contoso.com", "E1", "online", NOW)
    heard: list[str] = []

    assert await MailboxSetWatch(db, heard.append).check() == []
    assert heard == []


async def test_adding_disabling_and_enabling_name_the_source_each_time(db: Database) -> None:
    _with_sources(db)
    heard: list[str] = []
    watch = MailboxSetWatch(db, heard.append)
    await watch.check()

    with db.session() as session:
        admin.add_mailbox(session, "nestor@contoso.com", "E2", "onprem", NOW)
    added = await watch.check()
    unchanged = await watch.check()
    with db.session() as session:
        admin.disable(session, "nestor@contoso.com", "on leave")
    disabled = await watch.check()
    with db.session() as session:
        admin.enable(session, "nestor@contoso.com", NOW)
    enabled = await watch.check()

    assert (added, unchanged, disabled, enabled) == (["onprem"], [], ["onprem"], ["onprem"])
    assert heard == ["onprem"] * 3


async def test_one_mailbox_swapped_for_another_is_a_change(db: Database) -> None:
    _with_sources(db)
    with db.session() as session:
        admin.add_mailbox(session, "adele@contoso.com", "E1", "online", NOW)
    watch = MailboxSetWatch(db, lambda source: None)
    await watch.check()

    with db.session() as session:
        admin.disable(session, "adele@contoso.com", "left")
        admin.add_mailbox(session, "bob@contoso.com", "E2", "online", NOW)

    assert await watch.check() == ["online"]
