"""Notices when the set of active mailboxes changes, whoever changed it, so new mailboxes are live at once.

`presence-bridge mailboxes add` runs in another process and the admin API may run in another instance: the only
place they meet the running service is the database. Every `interval` the service reads a fingerprint of each
source's active mailboxes (one aggregate query: a count and a sum of ids per source, a few milliseconds for
thousands of mailboxes) and, for each source whose set changed, calls `on_change(source)`: the service then
wakes the subscription upkeep (a Graph subscription for the new mailbox) and the source's EWS watcher (stream
membership). The first sync needs no help: adding marks the mailbox dirty and the sync worker polls for those.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.store import Database
from bridge.store.work import active_sets
from bridge.waiting import first_of

log = logging.getLogger(__name__)


class MailboxSetWatch:
    def __init__(self, db: Database, on_change: Callable[[str], None], *, interval_s: float = 1.0) -> None:
        self._db = db
        self._on_change = on_change
        self._interval_s = interval_s
        self._known: dict[str, tuple[int, int]] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception:  # the database may be away for a while; the watch must outlive it
                log.exception("reading the set of mailboxes failed; trying again")
            await first_of(stop, within=self._interval_s)

    async def check(self) -> list[str]:
        """Compare with the last reading; the sources whose set changed (none on the first reading)."""
        current = await self._db.run(active_sets)
        known, self._known = self._known, current
        if known is None:
            return []
        changed = sorted(name for name in current.keys() | known.keys() if current.get(name) != known.get(name))
        for name in changed:
            log.info("the mailboxes of source %s changed; watching them now", name)
            self._on_change(name)
        return changed
