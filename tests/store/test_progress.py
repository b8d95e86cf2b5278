"""Sync progress from the database: how many mailboxes wait, how many were synced since they began to, how fast."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from bridge.store import Database, MailboxRow, MailboxStatus
from bridge.store.progress import sync_progress
from tests.store import NOW

BEGAN = NOW - timedelta(minutes=5)


def _mailboxes(session: Session, *, pending: int, synced_ago: list[timedelta], name: str = "m") -> None:
    for n in range(pending):
        session.add(
            MailboxRow(address=f"{name}-pending{n}@example.com", source="online", dirty_generation=1, dirty_at=BEGAN)
        )
    for n, ago in enumerate(synced_ago):
        session.add(
            MailboxRow(
                address=f"{name}-done{n}@example.com",
                source="online",
                dirty_generation=1,
                synced_generation=1,
                last_synced_at=NOW - ago,
            )
        )


def test_nothing_waiting_is_no_progress(db: Database) -> None:
    with db.session() as session:
        _mailboxes(session, pending=0, synced_ago=[timedelta(seconds=5)])
    with db.session() as session:
        assert sync_progress(session, NOW) is None


def test_progress_counts_done_and_pending_and_the_rate_of_the_last_minute(db: Database) -> None:
    with db.session() as session:
        recent, earlier, before_it_began = timedelta(seconds=20), timedelta(minutes=3), timedelta(hours=1)
        _mailboxes(session, pending=6, synced_ago=[recent, recent, earlier, earlier, before_it_began])
        session.add(
            MailboxRow(
                address="off@example.com",
                source="online",
                status=MailboxStatus.DISABLED,
                dirty_generation=1,
                dirty_at=BEGAN,
            )
        )

    with db.session() as session:
        progress = sync_progress(session, NOW)

    assert progress is not None
    assert (progress.done, progress.pending, progress.total) == (4, 6, 10)  # the disabled one waits for nothing
    assert progress.since == BEGAN
    assert progress.rate == 2 / 60
    assert progress.eta == timedelta(minutes=3)


def test_the_rate_of_a_backlog_younger_than_a_minute_is_over_its_age(db: Database) -> None:
    with db.session() as session:
        session.add(
            MailboxRow(
                address="w@example.com", source="online", dirty_generation=1, dirty_at=NOW - timedelta(seconds=10)
            )
        )
        _mailboxes(session, pending=0, synced_ago=[timedelta(seconds=5)] * 5)

    with db.session() as session:
        progress = sync_progress(session, NOW)

    assert progress is not None
    assert progress.rate == 0.5
    assert progress.eta == timedelta(seconds=2)


def test_no_eta_while_nothing_was_synced_lately(db: Database) -> None:
    with db.session() as session:
        _mailboxes(session, pending=3, synced_ago=[])
    with db.session() as session:
        progress = sync_progress(session, NOW)
    assert progress is not None
    assert progress.eta is None
