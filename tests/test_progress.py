"""The sync progress log: a line now and then while a large backlog moves, one when it is worked off."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from bridge.progress import ProgressLog, progress_line
from bridge.store import Database, MailboxRow
from bridge.store.progress import SyncProgress

NOW = datetime(2026, 11, 30, 0, 1, tzinfo=UTC)


def _backlog(db: Database, count: int) -> None:
    with db.session() as session:
        session.add_all(
            MailboxRow(
                address=f"m{n}@example.com", source="online", dirty_generation=1, dirty_at=NOW - timedelta(seconds=60)
            )
            for n in range(count)
        )


def _sync(db: Database, count: int) -> None:
    """Mark `count` more mailboxes synced, 10 s ago."""
    with db.session() as session:
        waiting = (
            sa.select(col(MailboxRow.id)).where(col(MailboxRow.synced_generation) == 0).limit(count).scalar_subquery()
        )
        session.execute(
            sa.update(MailboxRow)
            .where(col(MailboxRow.id).in_(waiting))
            .values(synced_generation=1, last_synced_at=NOW - timedelta(seconds=10), dirty_at=None)
        )


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "bridge.progress"]


async def test_a_large_backlog_is_logged_while_it_moves_and_when_it_is_done(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.progress")
    progress = ProgressLog(db, clock=lambda: NOW, large=100)
    _backlog(db, 150)

    await progress.look()
    await progress.look()  # nothing moved: no second line
    _sync(db, 60)
    await progress.look()
    _sync(db, 90)
    await progress.look()

    assert _lines(caplog) == [
        "sync progress: 0/150 mailboxes synced (0 %), 0/s, eta unknown",
        "sync progress: 60/150 mailboxes synced (40 %), 1/s, eta 1 min 30 s",
        "sync caught up: 150 mailboxes synced",
    ]


async def test_a_small_backlog_is_not_logged(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.progress")
    progress = ProgressLog(db, clock=lambda: NOW, large=100)
    _backlog(db, 20)

    await progress.look()
    _sync(db, 20)
    await progress.look()

    assert _lines(caplog) == []


def test_a_long_eta_reads_in_hours() -> None:
    progress = SyncProgress(NOW, NOW, done=60, pending=100_000, recent=60, rate_span=timedelta(minutes=1))
    assert progress_line(progress) == "60/100,060 mailboxes synced (0 %), 1/s, eta 27 h 46 min"
