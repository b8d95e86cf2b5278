"""How far the sync has got through the mailboxes waiting for it (a first sync, a window roll, a catch-up after a
start), read from the database alone, so that every instance, `presence-bridge status` and `/readyz` agree.

Pending: active mailboxes marked dirty and not yet synced. The backlog began when the longest-waiting of them was
marked; done: the active mailboxes synced since then. The rate is over the last minute (or since the backlog
began, if later), so a start after a long stop does not average in the time nothing ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from bridge.store.models import MailboxRow, MailboxStatus, UTCDateTime

RATE_OVER = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SyncProgress:
    at: datetime
    since: datetime  # when the longest-waiting pending mailbox was marked
    done: int
    pending: int
    recent: int  # mailboxes synced within `rate_span` before `at`
    rate_span: timedelta

    @property
    def total(self) -> int:
        return self.done + self.pending

    @property
    def rate(self) -> float:
        """Mailboxes synced per second lately."""
        seconds = self.rate_span.total_seconds()
        return self.recent / seconds if seconds > 0 else 0.0

    @property
    def eta(self) -> timedelta | None:
        """How long the pending mailboxes take at the recent rate; None while nothing has been synced lately."""
        return timedelta(seconds=self.pending / self.rate) if self.rate > 0 else None


def sync_progress(session: Session, now: datetime) -> SyncProgress | None:
    """The backlog of mailboxes waiting for a sync and how fast it goes down; None when no mailbox waits."""
    active = col(MailboxRow.status) == MailboxStatus.ACTIVE
    dirty = col(MailboxRow.dirty_generation) > col(MailboxRow.synced_generation)
    pending, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(col(MailboxRow.dirty_at))).where(active, dirty)
    ).one()
    since = UTCDateTime().process_result_value(oldest, session.get_bind().dialect)
    if not pending or since is None:
        return None
    rate_from = max(since, now - RATE_OVER)
    done, recent = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(sa.case((col(MailboxRow.last_synced_at) >= rate_from, 1))),
        ).where(active, sa.not_(dirty), col(MailboxRow.last_synced_at) >= since)
    ).one()
    return SyncProgress(now, since, int(done), int(pending), int(recent), now - rate_from)
