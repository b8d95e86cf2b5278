"""Dirty marks, group-committed: many notifications, one transaction.

Graph expects a 2xx within 3 s and drops an endpoint that is slow too often (DESIGN §1), and a notification may
be acknowledged only once its mark is committed (nothing accepted is ever lost). Committing each request on its
own would cap the receiver at the database's commit rate; instead, marks that arrive while a commit is running
wait and go together in the next one, and every request is answered as soon as the commit holding its marks
is done. These marks are Exchange saying a mailbox changed: they go in the sync's first lane (bridge/store/work.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from functools import partial

from bridge.store import Database
from bridge.store.work import mark_dirty

log = logging.getLogger(__name__)


class DirtyMarks:
    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._on_commit = on_commit
        self._clock = clock
        self._pending: set[int] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def mark(self, mailbox_ids: Collection[int]) -> None:
        """Return once the marks are committed; raise if the commit failed (the caller must not acknowledge)."""
        if not mailbox_ids:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.update(mailbox_ids)
        self._waiters.append(waiter)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await waiter

    async def _flush(self) -> None:
        try:
            while self._waiters:
                ids, waiters = self._pending, self._waiters
                self._pending, self._waiters = set(), []
                now = self._clock()
                try:
                    await self._db.run(partial(mark_dirty, mailbox_ids=ids, now=now, notified=True))
                except Exception as exc:  # every waiter must hear of it; the next batch tries again
                    log.warning("could not record %d dirty mailboxes: %s", len(ids), exc)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                self._on_commit()
        finally:
            self._flusher = None
