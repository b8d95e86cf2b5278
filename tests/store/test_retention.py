"""Retention in the store: which changes are pruned, which stay, and the horizon the feed answers from."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge import admin
from bridge.domain import Appointment, ChangeType, FreeBusy, Window
from bridge.store import (
    CommandKind,
    CommandRow,
    CommandStatus,
    Database,
    DeltaStateRow,
    MailboxRow,
    MirrorRow,
    OutboxRow,
)
from bridge.store.commands import needed_until, prune_commands
from bridge.store.mirror import save_delta_state, write_mirror
from bridge.store.outbox import add_changes
from bridge.store.retention import latest_cursor, prune_changes, pruned_through
from bridge.templates import default_mapping_path, load_mapping
from tests.store import NOW, add_mailbox, outbox_row
from tests.web import entry

WEEK = timedelta(days=7)
MAPPING = load_mapping(default_mapping_path())


def _changes(db: Database, *delivered_days_ago: float | None) -> list[int]:
    """One change per argument, made a day before its delivery (None: not delivered); their ids."""
    with db.session() as session:
        mailbox = add_mailbox(session)
        rows = []
        for sequence, days in enumerate(delivered_days_ago, start=1):
            row = outbox_row(mailbox, sequence)
            ago = timedelta(days=days if days is not None else 30)
            row.created_at = NOW - ago - timedelta(days=1)
            row.delivered_at = None if days is None else NOW - ago
            rows.append(row)
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows if row.id is not None]


def _left(db: Database) -> list[int]:
    with db.session() as session:
        return [row for row in session.exec(select(OutboxRow.id).order_by(col(OutboxRow.id))).all() if row]


def test_changes_delivered_longer_ago_than_retention_are_pruned(db: Database) -> None:
    old, undelivered, recent = _changes(db, 8, None, 6)

    with db.session() as session:
        assert prune_changes(session, NOW - WEEK, NOW, delivered_only=True, batch=100) == 1

    assert _left(db) == [undelivered, recent]  # nothing accepted is lost: the undelivered one stays
    with db.session() as session:
        assert pruned_through(session) == old
        assert latest_cursor(session) == recent


def test_without_a_webhook_changes_are_pruned_by_age(db: Database) -> None:
    _, never_delivered, recent = _changes(db, 8, None, 6)

    with db.session() as session:
        assert prune_changes(session, NOW - WEEK, NOW, delivered_only=False, batch=100) == 2

    assert _left(db) == [recent]
    with db.session() as session:
        assert pruned_through(session) == never_delivered


def test_pruning_goes_a_batch_at_a_time_oldest_first(db: Database) -> None:
    ids = _changes(db, 10, 9, 8, 6)

    with db.session() as session:
        assert prune_changes(session, NOW - WEEK, NOW, delivered_only=True, batch=2) == 2
    with db.session() as session:
        assert pruned_through(session) == ids[1]
        assert prune_changes(session, NOW - WEEK, NOW, delivered_only=True, batch=2) == 1
    with db.session() as session:
        assert prune_changes(session, NOW - WEEK, NOW, delivered_only=True, batch=2) == 0
        assert pruned_through(session) == ids[2]

    assert _left(db) == [ids[3]]


def test_nothing_pruned_leaves_no_horizon(db: Database) -> None:
    _changes(db, 1)

    with db.session() as session:
        assert prune_changes(session, NOW - WEEK, NOW, delivered_only=True, batch=100) == 0
        assert pruned_through(session) == 0


def test_a_removed_mailbox_leaves_nothing_behind_once_its_deletions_are_delivered_and_retained(db: Database) -> None:
    with db.session() as session:
        mailbox = MailboxRow(address="adele@contoso.com", workforce_id="E1001", source="online")
        session.add(mailbox)
        session.flush()
        assert mailbox.id is not None
        mailbox_id = mailbox.id
        shown = [
            Appointment(f"item{n}", "ck", NOW + timedelta(hours=n), NOW + timedelta(hours=n + 1), FreeBusy.BUSY, "x")
            for n in range(3)
        ]
        write_mirror(session, mailbox_id, [MAPPING.mirror_item(item)[0] for item in shown], ())
        window = Window.days_ahead(NOW.date(), 90)
        save_delta_state(session, mailbox_id, window, "token", new_round=True, now=NOW - WEEK * 2)
        add_changes(session, mailbox, [(ChangeType.CREATED, entry(n)) for n in range(3)], NOW - WEEK * 2)
    with db.session() as session:
        assert admin.remove(session, "adele@contoso.com", MAPPING, NOW - WEEK * 2) == 3
        session.execute(sa.update(OutboxRow).values(delivered_at=NOW - WEEK - timedelta(hours=1)))

    with db.session() as session:
        assert prune_changes(session, NOW - WEEK, NOW, delivered_only=True, batch=100) == 6
    with db.session() as session:
        for table in (MirrorRow, DeltaStateRow, OutboxRow):
            assert session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0


def _command(session: Session, mailbox: int, kind: CommandKind, status: CommandStatus, days_ago: float) -> str:
    """A command finished `days_ago` (one still `sending`: started then); a create or state made its appointment
    for that day."""
    at = NOW - timedelta(days=days_ago)
    ends = {"end": at.isoformat()}
    payload = {"request": ends, "plan": ends} if kind is CommandKind.STATE else {"request": ends}
    row = CommandRow(id=str(uuid.uuid4()), mailbox_id=mailbox, scope="alice@example.com", kind=kind, payload=payload)
    session.connection().execute(
        sa.insert(CommandRow),
        row.model_dump()
        | {
            "status": status,
            "created_at": at,
            "updated_at": at,
            "finished_at": None if status is CommandStatus.SENDING else at,
            "needed_until": needed_until(kind, payload) if status is CommandStatus.DONE else None,
        },
    )
    return row.id


def test_finished_commands_older_than_retention_go_but_what_is_still_asked_for_stays(db: Database) -> None:
    done, failed, sending = CommandStatus.DONE, CommandStatus.FAILED, CommandStatus.SENDING
    with db.session() as session:
        mailbox = add_mailbox(session)
        old_update = _command(session, mailbox, CommandKind.UPDATE, done, 9)
        old_failed = _command(session, mailbox, CommandKind.CREATE, failed, 9)
        interrupted = _command(session, mailbox, CommandKind.CREATE, sending, 9)
        recent = _command(session, mailbox, CommandKind.DELETE, done, 6)
        made_long_ago = _command(session, mailbox, CommandKind.CREATE, done, 9)
        still_ahead = _command(session, mailbox, CommandKind.CREATE, done, 9)
        old_state = _command(session, mailbox, CommandKind.STATE, done, 10)
        newest_state = _command(session, mailbox, CommandKind.STATE, done, 9)
        # An update moved its appointment on by two weeks.
        session.execute(sa.update(CommandRow).where(col(CommandRow.id) == still_ahead).values(needed_until=NOW + WEEK))

    with db.session() as session:
        assert prune_commands(session, NOW - WEEK, batch=2) == 2
        assert prune_commands(session, NOW - WEEK, batch=100) == 2
        assert prune_commands(session, NOW - WEEK, batch=100) == 0
        left = set(session.execute(sa.select(col(CommandRow.id))).scalars())

    assert {old_update, old_failed, made_long_ago, old_state}.isdisjoint(left)
    assert left == {interrupted, recent, still_ahead, newest_state}
