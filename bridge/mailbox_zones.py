"""Every mailbox's time zone, read from Exchange and kept in the database, refreshed daily.

The zone decides how the REST API reads a time without an offset or a date, where an all-day appointment's
midnights are, when a current state's day ends, and the local dates the feed shows for all-day items. Exchange is
asked once a day per mailbox (people move, and set their zone in Outlook); a mailbox Exchange keeps no zone for, or
one that cannot be read now, is given its source's default (`sources.NAME.time_zone`, UTC unless set) and asked
again on the next round. A failure is logged once when it starts and once when it ends (bridge/outages.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Session

from bridge.outages import Outages
from bridge.sources.base import CalendarSource, SourceError
from bridge.store import Database, MailboxRow, MailboxStatus
from bridge.store.db import in_chunks
from bridge.waiting import first_of
from bridge.zones import UTC_ZONE

log = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(days=1)
# How often the database is asked which mailboxes are due: a mailbox added at runtime has its zone within this.
_LOOK_EVERY_S = 30.0
_BATCH = 200
# Zones are read and stored this many at a time: one transaction, and one Graph `$batch` request (its limit).
_STORED_TOGETHER = 20


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
    zone: str | None


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
        for mailboxes in in_chunks(due, _STORED_TOGETHER):
            zones = await self._read(mailboxes)
            for mailbox in mailboxes:
                if zones[mailbox.id] != mailbox.zone:
                    log.info("mailbox %s is in time zone %s", mailbox.address, zones[mailbox.id])
            await self._db.run(partial(_store, read=zones, now=now))
        return len(due)

    async def _read(self, mailboxes: Sequence[_Due]) -> dict[int, str]:
        """Each mailbox's zone, by id: its sources asked for all of theirs at once (Graph reads 20 to a request)."""
        zones: dict[int, str] = {}
        for name, of_source in itertools.groupby(sorted(mailboxes, key=_source_of), key=_source_of):
            listed = list(of_source)
            default = self._defaults.get(name, UTC_ZONE)
            source = self._sources.get(name)
            read: Mapping[str, str | SourceError | None]
            if source is None:
                read = {}
            else:
                try:
                    read = await source.read_time_zones([mailbox.address for mailbox in listed])
                except SourceError as exc:  # the whole read failed (the source unreachable, its credentials...)
                    read = dict.fromkeys((mailbox.address for mailbox in listed), exc)
            for mailbox in listed:
                zone = read.get(mailbox.address)
                if isinstance(zone, SourceError):
                    self._outages.failed(
                        f"zone {name}",
                        f"the time zones of {name}'s mailboxes cannot be read ({zone}); using {default}",
                    )
                    zone = None
                elif source is not None:
                    self._outages.recovered(f"zone {name}", f"the time zones of {name}'s mailboxes are read again")
                zones[mailbox.id] = zone or default
        return zones


def _source_of(mailbox: _Due) -> str:
    return mailbox.source


def _due(session: Session, read_before: datetime) -> list[_Due]:
    # Core selects of the columns needed, not ORM objects (docs/storage.md).
    rows = session.execute(
        sa.select(_MAILBOX.c.id, _MAILBOX.c.address, _MAILBOX.c.source, _MAILBOX.c.time_zone)
        .where(
            _MAILBOX.c.status == MailboxStatus.ACTIVE,
            sa.or_(_MAILBOX.c.time_zone_read_at.is_(None), _MAILBOX.c.time_zone_read_at < read_before),
        )
        .order_by(_MAILBOX.c.time_zone_read_at.is_not(None), _MAILBOX.c.id)
        .limit(_BATCH)
    ).all()
    return [_Due(*row) for row in rows]


def _store(session: Session, *, read: dict[int, str], now: datetime) -> None:
    # One UPDATE executed with every mailbox's values, in id order (instances storing together lock rows alike).
    session.connection().execute(
        _SET_ZONE, [{"mailbox_id": mailbox_id, "zone": read[mailbox_id], "now": now} for mailbox_id in sorted(read)]
    )


_MAILBOX = MailboxRow.__table__  # type: ignore[attr-defined]
_SET_ZONE = (
    sa.update(_MAILBOX)
    .where(_MAILBOX.c.id == sa.bindparam("mailbox_id"))
    .values(
        time_zone=sa.bindparam("zone"),
        time_zone_read_at=sa.bindparam("now", type_=_MAILBOX.c.time_zone_read_at.type),
    )
)
