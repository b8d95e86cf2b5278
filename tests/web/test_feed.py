"""The change feed once retention has pruned changes: a cursor from before them is told so (410), never skipped
silently past what it missed."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import col

from bridge.store import Database, OutboxRow
from bridge.store.retention import prune_changes
from tests.web import T0, WORKFORCE_TOKEN, Client, add_feed, bearer

LATER = T0 + timedelta(days=30)


def _prune_first(db: Database, count: int) -> None:
    """Deliver the first `count` changes long ago and prune them."""
    with db.session() as session:
        first = sa.select(col(OutboxRow.id)).order_by(col(OutboxRow.id)).limit(count).scalar_subquery()
        session.execute(sa.update(OutboxRow).where(col(OutboxRow.id).in_(first)).values(delivered_at=T0))
    with db.session() as session:
        assert prune_changes(session, LATER - timedelta(days=7), LATER, delivered_only=True, batch=100) == count


async def test_a_cursor_older_than_retention_gets_410_saying_what_to_do(app_client: Client, db: Database) -> None:
    add_feed(db, 5)
    _prune_first(db, 3)

    response = await app_client.get("/api/v1/changes?after=1", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 410
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["pruned_through"] == 3
    assert problem["resume_after"] == 5  # the newest change: read the state now, then go on from here
    assert "kept P7D after delivery" in problem["detail"]
    assert "GET /api/v1/mailboxes/{mailbox}/appointments" in problem["detail"]


async def test_a_new_reader_from_zero_is_told_too(app_client: Client, db: Database) -> None:
    add_feed(db, 2)
    _prune_first(db, 1)

    response = await app_client.get("/api/v1/changes", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 410


async def test_a_cursor_at_the_horizon_reads_on(app_client: Client, db: Database) -> None:
    add_feed(db, 5)
    _prune_first(db, 3)

    response = await app_client.get("/api/v1/changes?after=3", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 200
    page = await response.json()
    assert [change["sequence"] for change in page["changes"]] == [4, 5]
    assert page["next_after"] == 5
