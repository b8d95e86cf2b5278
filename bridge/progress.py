"""Sync progress for people: a log line while many mailboxes wait for a sync (a first sync, a window roll), and the
same figures for `presence-bridge status` and `/readyz` (bridge/store/progress.py reads them).

The log gets a line every `every` (not per mailbox, which at 10,000 mailboxes would bury everything else), only
while the backlog is large and moving (a mailbox stuck in its back-off does not repeat the line forever), and one
line when it is worked off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.domain import iso_utc
from bridge.outages import Outages
from bridge.store import Database
from bridge.store.progress import SyncProgress, sync_progress
from bridge.waiting import first_of

log = logging.getLogger(__name__)


def progress_json(progress: SyncProgress | None) -> dict[str, Any] | None:
    if progress is None:
        return None
    eta = progress.eta
    return {
        "done": progress.done,
        "total": progress.total,
        "pending": progress.pending,
        "since": iso_utc(progress.since),
        "rate_per_s": round(progress.rate, 2),
        "eta_s": None if eta is None else round(eta.total_seconds()),
    }


def progress_line(progress: SyncProgress) -> str:
    """`4,200/10,000 mailboxes synced (42 %), 160/s, eta 36 s`."""
    eta = progress.eta
    share = 100 * progress.done // progress.total if progress.total else 0
    return (
        f"{progress.done:,}/{progress.total:,} mailboxes synced ({share} %), {progress.rate:.0f}/s, "
        f"eta {'unknown' if eta is None else _span(eta)}"
    )


def _span(span: timedelta) -> str:
    seconds = round(span.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


class ProgressLog:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        every: timedelta = timedelta(seconds=10),
        large: int = 100,
    ) -> None:
        self._db = db
        self._clock = clock
        self._every = every
        self._large = large
        self._outages = Outages(log)
        self._logged_done: int | None = None  # done at the last line; None: no large backlog under way
        self._largest = 0

    async def look(self) -> None:
        """Log the progress now if it is worth a line."""
        now = self._clock()
        progress = await self._db.run(lambda session: sync_progress(session, now))
        if progress is None:
            if self._logged_done is not None:
                log.info("sync caught up: %d mailboxes synced", self._largest)
            self._logged_done = None
            self._largest = 0
            return
        self._largest = max(self._largest, progress.total)
        if progress.total >= self._large and progress.done != self._logged_done:
            log.info("sync progress: %s", progress_line(progress))
            self._logged_done = progress.done

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.look()
                self._outages.recovered("look", "sync progress: reading it works again")
            except Exception as exc:  # the database may be away for a while
                self._outages.failed("look", f"sync progress: reading it failed (retried): {exc!r}")
            await first_of(stop, within=self._every.total_seconds())
