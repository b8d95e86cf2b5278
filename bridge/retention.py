"""The periodic pruning of changes and relay commands older than the retention period (bridge/store/retention.py
and `prune_commands` in bridge/store/commands.py say what goes).

Every instance may run it: each batch is one short transaction, and deleting what another instance deleted
first is deleting nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlmodel import Session

from bridge.outages import Outages
from bridge.store import Database
from bridge.store.commands import prune_commands
from bridge.store.retention import prune_changes
from bridge.waiting import first_of

log = logging.getLogger(__name__)


class Retention:
    def __init__(
        self,
        db: Database,
        keep: timedelta,
        *,
        delivered_only: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        every: timedelta = timedelta(minutes=10),
        batch: int = 5000,
    ) -> None:
        self._db = db
        self._keep = keep
        self._delivered_only = delivered_only
        self._clock = clock
        self._every = every
        self._batch = batch
        self._outages = Outages(log)

    async def prune(self) -> int:
        """Prune everything now due, a batch per transaction; returns how many changes went."""
        changes = await self._in_batches(
            lambda now: partial(
                prune_changes, before=now - self._keep, now=now, delivered_only=self._delivered_only, batch=self._batch
            )
        )
        commands = await self._in_batches(
            lambda now: partial(prune_commands, before=now - self._keep, batch=self._batch)
        )
        if changes or commands:
            log.info("retention: pruned %d changes and %d commands older than %s", changes, commands, self._keep)
        return changes

    async def _in_batches(self, batch: Callable[[datetime], Callable[[Session], int]]) -> int:
        """Run `batch(now)` in one transaction after another while each prunes a whole batch; how many went."""
        total = 0
        while True:
            pruned = await self._db.run(batch(self._clock()))
            total += pruned
            if pruned < self._batch:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.prune()
                self._outages.recovered("prune", "retention: pruning works again")
            except Exception as exc:  # the database may be away for a while; pruning waits for the next round
                self._outages.failed("prune", f"retention: pruning failed (retried): {exc!r}")
            await first_of(stop, within=self._every.total_seconds())
