"""Every mailbox's time zone, read from Exchange and kept in the database, refreshed daily.

The zone decides how the REST API reads a time without an offset or a date, where an all-day appointment's
midnights are, when a current state's day ends, and the local dates the feed shows for all-day items. Exchange is
asked once a day per mailbox (people move, and set their zone in Outlook); a mailbox Exchange keeps no zone for, or
one that cannot be read now, is given its source's default (`sources.NAME.time_zone`, UTC unless set) and asked
again on the next round. A failure is logged once when it starts and once when it ends (bridge/outages.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

from sqlmodel import Session, col, or_, select

from bridge.outages import Outages
from bridge.sources.base import CalendarSource, SourceError
from bridge.store import Database, MailboxRow, MailboxStatus
from bridge.waiting import first_of
from bridge.zones import UTC_ZONE

log = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(days=1)
# How often the database is asked which mailboxes are due: a mailbox added at runtime has its zone within this.
_LOOK_EVERY_S = 30.0
_BATCH = 200


class Placed(Protocol):
    """A mailbox as far as its zone goes (a MailboxRow, or the relay's plain row of one)."""

    @property
    def time_zone(self) -> str | None: ...

    @property
    def source(self) -> str: ...


def zone_of(mailbox: Placed, defaults: Mapping[str, str]) -> str:
    """The zone a mailbox's local times are read in: as last read, else its source's default, else UTC."""
    return mailbox.time_zone or defaults.get(mailbox.source, UTC_ZONE)


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    address: str
    source: str


class MailboxZones:
    """Reads each active mailbox's zone from its source when it has none or it is a day old, in batches."""

    def __init__(
        self,
        db: Database,
        sources: Mapping[str, CalendarSource],
        defaults: Mapping[str, str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._sources = sources
        self._defaults = defaults  # source name → IANA zone for mailboxes Exchange keeps none for
        self._clock = clock
        self._outages = Outages(log)

    async def run(self, stop: asyncio.Event, *, every: float = _LOOK_EVERY_S) -> None:
        while not stop.is_set():
            try:
                while await self.refresh() == _BATCH and not stop.is_set():
                    pass
            except Exception:  # the database may be away for a while; the loop must outlive it
                log.exception("refreshing mailbox time zones failed; retrying")
            await first_of(stop, within=every)

    async def refresh(self) -> int:
        """Read the zone of up to one batch of active mailboxes not read for a day; returns how many were due."""
        now = self._clock()
        due = await self._db.run(lambda session: _due(session, now - REFRESH_EVERY))
        for mailbox in due:
            zone = await self._read(mailbox)
            await self._db.run(partial(_store, mailbox_id=mailbox.id, zone=zone, now=now))
        return len(due)

    async def _read(self, mailbox: _Due) -> str:
        default = self._defaults.get(mailbox.source, UTC_ZONE)
        source = self._sources.get(mailbox.source)
        if source is None:
            return default
        try:
            zone = await source.read_time_zone(mailbox.address)
        except SourceError as exc:
            self._outages.failed(
                f"zone {mailbox.source}",
                f"the time zones of {mailbox.source}'s mailboxes cannot be read ({exc}); using {default}",
            )
            return default
        self._outages.recovered(
            f"zone {mailbox.source}", f"the time zones of {mailbox.source}'s mailboxes are read again"
        )
        return zone or default


def _due(session: Session, read_before: datetime) -> list[_Due]:
    rows = session.exec(
        select(MailboxRow)
        .where(
            col(MailboxRow.status) == MailboxStatus.ACTIVE,
            or_(col(MailboxRow.time_zone_read_at).is_(None), col(MailboxRow.time_zone_read_at) < read_before),
        )
        .order_by(col(MailboxRow.time_zone_read_at).is_not(None), col(MailboxRow.id))
        .limit(_BATCH)
    ).all()
    return [_Due(row.id, row.address, row.source) for row in rows if row.id is not None]


def _store(session: Session, *, mailbox_id: int, zone: str, now: datetime) -> None:
    row = session.get(MailboxRow, mailbox_id)
    if row is None:
        return
    if row.time_zone != zone:
        log.info("mailbox %s is in time zone %s", row.address, zone)
    row.time_zone, row.time_zone_read_at = zone, now
