"""Retention: changes the workforce system has had long enough leave the database, so that it stays proportional
to the live calendars rather than to the bridge's history.

A change is pruned once it was delivered (or, without a webhook, once the pull feed has offered it) longer ago
than the retention period; undelivered changes stay. The highest id pruned is kept (`feed_horizon`), so that a
feed cursor from before it is told that changes are gone instead of silently skipping them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col

from bridge.store.db import settle_outbox
from bridge.store.models import FeedHorizonRow, OutboxRow


def prune_changes(session: Session, before: datetime, now: datetime, *, delivered_only: bool, batch: int) -> int:
    """Delete up to `batch` changes older than `before`, oldest first, in the caller's transaction; how many went.

    `delivered_only`: a webhook is configured, so a change goes only once delivered before `before`; without one
    the feed is the only reader, and a change goes once created before `before`. Batches keep each transaction
    short (SQLite has one writer): the caller repeats while a whole batch went.
    """
    old = (
        sa.and_(col(OutboxRow.delivered_at).is_not(None), col(OutboxRow.delivered_at) < before)
        if delivered_only
        else col(OutboxRow.created_at) < before
    )
    ids = list(
        session.execute(sa.select(col(OutboxRow.id)).where(old).order_by(col(OutboxRow.id)).limit(batch)).scalars()
    )
    if not ids:
        return 0
    session.execute(sa.delete(OutboxRow).where(col(OutboxRow.id).in_(ids)))
    # One statement: instances pruning at once never move the horizon back (the migration made the row).
    session.execute(
        sa.update(FeedHorizonRow)
        .where(col(FeedHorizonRow.id) == 1, col(FeedHorizonRow.pruned_through) < max(ids))
        .values(pruned_through=max(ids), pruned_at=now)
    )
    return len(ids)


def pruned_through(session: Session) -> int:
    """The highest change id retention has removed (0: none): a feed cursor below it has missed changes."""
    horizon = session.get(FeedHorizonRow, 1)
    return 0 if horizon is None else horizon.pruned_through


def latest_cursor(session: Session) -> int:
    """The feed cursor of the newest change (0 when there is none); every change below it is committed."""
    settle_outbox(session)
    return int(session.execute(sa.select(sa.func.coalesce(sa.func.max(col(OutboxRow.id)), 0))).scalar_one())
