"""Dirty marks, group-committed: many notifications, one transaction.

Graph expects a 2xx within 3 s and drops an endpoint that is slow too often (DESIGN §1), and a notification may
be acknowledged only once its mark is committed (nothing accepted is ever lost). Committing each request on its
own would cap the receiver at the database's commit rate; instead, marks that arrive while a commit is running
wait and go together in the next one, and every request is answered as soon as the commit holding its marks
is done. These marks are Exchange saying a mailbox changed: they go in the sync's first lane (bridge/store/work.py).

A notification that names an item at a change key the mirror already holds is the echo of the bridge's own write
(the relay stores what Graph answered): a mailbox all of whose notifications in a flush are such echoes is not
marked, which spares the delta read that would find nothing new. Nothing is lost by it: the delta token stays
where it was, so the next read returns the item again and the sync recognises it (docs/sync.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from functools import partial

import sqlalchemy as sa
from sqlmodel import Session, col

from bridge.store import Database, MirrorRow
from bridge.store.work import mark_dirty

# An item named by (mailbox id, item id, change key).
Held = tuple[int, str, str]

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
        self._maybe_echoes: dict[int, set[tuple[str, str]]] = {}
        self.echoes = 0  # mailboxes left unmarked because every notification was an echo (on /metrics)
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def mark(self, mailbox_ids: Collection[int], echoes: Mapping[int, Collection[tuple[str, str]]] = {}) -> None:
        """Return once the marks are committed; raise if the commit failed (the caller must not acknowledge).

        `echoes`: mailboxes whose notifications each named an item (id, change key); such a mailbox is marked
        unless the mirror holds every one of them at exactly that key. A mailbox in both is simply marked.
        """
        if not mailbox_ids and not echoes:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.update(mailbox_ids)
        for mailbox_id, items in echoes.items():
            self._maybe_echoes.setdefault(mailbox_id, set()).update(items)
        self._waiters.append(waiter)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await waiter

    async def _flush(self) -> None:
        try:
            while self._waiters:
                ids, maybe, waiters = self._pending, self._maybe_echoes, self._waiters
                self._pending, self._maybe_echoes, self._waiters = set(), {}, []
                maybe = {m: items for m, items in maybe.items() if m not in ids}
                now = self._clock()
                try:
                    self.echoes += await self._db.run(partial(_commit, ids=ids, maybe=maybe, now=now))
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


def _commit(session: Session, *, ids: set[int], maybe: dict[int, set[tuple[str, str]]], now: datetime) -> int:
    """Mark `ids`, and each mailbox of `maybe` unless the mirror holds all its items at those change keys; returns
    how many of `maybe` were echoes only. One indexed query for all named items (the mirror's primary key)."""
    if maybe:
        wanted = [(m, item, key) for m, items in maybe.items() for item, key in items]
        named = sa.tuple_(col(MirrorRow.mailbox_id), col(MirrorRow.item_id))
        rows = session.execute(
            sa.select(col(MirrorRow.mailbox_id), col(MirrorRow.item_id), col(MirrorRow.change_key)).where(
                named.in_([(m, item) for m, item, _ in wanted])
            )
        )
        held: set[Held] = {(m, item, key) for m, item, key in rows}
        echoes = {m for m, items in maybe.items() if all((m, item, key) in held for item, key in items)}
    else:
        echoes = set()
    marked = ids | (maybe.keys() - echoes)
    if marked:
        mark_dirty(session, marked, now, notified=True)
    return len(echoes)
