"""The periodic pruning: everything due goes, batch after batch; what is not due stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from bridge.retention import Retention
from bridge.store import Database, OutboxRow
from bridge.store.retention import pruned_through
from tests.store import add_mailbox, outbox_row

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _delivered(db: Database, days_ago: list[int]) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        for sequence, days in enumerate(days_ago, start=1):
            row = outbox_row(mailbox, sequence)
            row.created_at = row.delivered_at = NOW - timedelta(days=days)
            session.add(row)


async def test_every_change_due_is_pruned_in_batches(db: Database) -> None:
    _delivered(db, [9] * 7 + [1] * 2)
    retention = Retention(db, timedelta(days=7), delivered_only=True, clock=lambda: NOW, batch=3)

    assert await retention.prune() == 7

    with db.session() as session:
        left = session.execute(sa.select(col(OutboxRow.sequence)).order_by(col(OutboxRow.id))).scalars().all()
        assert left == [8, 9]
        assert pruned_through(session) > 0


async def test_a_longer_retention_keeps_them(db: Database) -> None:
    _delivered(db, [9, 9])
    retention = Retention(db, timedelta(days=10), delivered_only=True, clock=lambda: NOW)

    assert await retention.prune() == 0
