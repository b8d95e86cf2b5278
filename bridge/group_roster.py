"""Following a source's Entra ID group (`sources.NAME.group`): its members are the source's roster.

The group is read whole (`GroupDirectory.group_members`: nested groups included, every page) at start and every
`group.refresh`, then planned and applied as a CSV roster is (bridge/roster.py: one planner, one writer):
members with a mailbox are enrolled with the workforce id from `group.workforce_id`, the mailboxes the group
enrolled and no longer lists are removed (their shown appointments withdrawn, as `mailboxes remove` does).
New members are only enrolled once Exchange opens their calendar (one small read each): the rest are skipped,
with Exchange's reason, and asked again at the next refresh. `presence-bridge mailboxes sync-group SOURCE` and
the admin API run the same refresh on demand, or only show it (`dry_run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from sqlmodel import Session

from bridge import roster
from bridge.admin import remove
from bridge.config import GroupConfig
from bridge.domain import DirectoryMember
from bridge.logs import about
from bridge.outages import Outages
from bridge.roster import RosterPlan, RosterRow
from bridge.sources.base import CalendarSource, GroupDirectory, SourceError
from bridge.store import Database
from bridge.templates import TemplateMapping

log = logging.getLogger(__name__)


class NoGroup(LookupError):
    """The source named has no group in the configuration."""


def member_rows(members: Iterable[DirectoryMember], attribute: str) -> tuple[list[RosterRow], list[str]]:
    """The roster rows of the members with a mail address, in address order (so that, of two members with one
    workforce id, the same one is skipped at every refresh), and a line for each member without one."""
    rows, without = [], []
    for member in members:
        if member.mail is None:
            name = member.attributes.get("userPrincipalName") or member.object_id
            without.append(f"member {name}: no mail address, so no mailbox; left out")
            continue
        rows.append(RosterRow(f"member {member.mail}", member.mail, member.attributes.get(attribute) or ""))
    return sorted(rows, key=lambda row: row.address), sorted(without)


async def sync_group(
    db: Database,
    source: str,
    directory: GroupDirectory,
    calendars: CalendarSource,
    group: GroupConfig,
    mapping: TemplateMapping,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RosterPlan:
    """Read the group, check its new members with Exchange, then plan and (unless `dry_run`) apply it in one
    transaction. `SourceError` when the group cannot be read: then nothing changes."""
    rows, without = member_rows(await directory.group_members(group.id), group.workforce_id)
    # Exchange is asked outside any transaction (it may take a while); the group is planned again after.
    first = await db.run(lambda session: roster.plan_group(session, source, rows))
    refused = await roster.exchange_refusals({source: calendars}, first)
    moment = now or datetime.now(UTC)

    def commit(session: Session) -> RosterPlan:
        planned = roster.plan_group(session, source, rows, refused)
        planned.skipped += without
        if not dry_run:
            roster.apply(session, planned, moment)
            for enrolment in planned.removed:
                remove(session, enrolment.address, mapping, moment, reason=roster.LEFT_GROUP)
        return planned

    return await db.run(commit)


class GroupFollower:
    """Keeps every source's roster in step with its group: at start, then every `refresh` of each group."""

    def __init__(
        self,
        db: Database,
        sources: Mapping[str, CalendarSource],
        directories: Mapping[str, GroupDirectory],
        groups: Mapping[str, GroupConfig],
        mapping: Callable[[], TemplateMapping],
        *,
        on_change: Callable[[str], None] = lambda source: None,
    ) -> None:
        self._db = db
        self._sources = sources
        self._directories = directories
        self._groups = {name: group for name, group in groups.items() if name in directories}
        self._mapping = mapping
        self._on_change = on_change
        self._outages = Outages(log)
        self._skipped: dict[str, list[str]] = {}
        # One refresh of a group at a time: the periodic one and one asked for through the API or a restart.
        self._locks = {name: asyncio.Lock() for name in self._groups}

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._follow(name, stop) for name in self._groups))

    async def sync(self, source: str, *, dry_run: bool = False) -> RosterPlan:
        """One refresh of `source`'s group now; `NoGroup` if it has none, `SourceError` if the group cannot be
        read."""
        group = self._groups.get(source)
        if group is None:
            raise NoGroup(source)
        async with self._locks[source]:
            planned = await sync_group(
                self._db,
                source,
                self._directories[source],
                self._sources[source],
                group,
                self._mapping(),
                dry_run=dry_run,
            )
        if not dry_run and (planned.added or planned.reenabled or planned.removed):
            self._on_change(source)
        return planned

    async def _follow(self, source: str, stop: asyncio.Event) -> None:
        every = self._groups[source].refresh.total_seconds()
        with about(source=source):
            while not stop.is_set():
                await self._refresh(source)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)

    async def _refresh(self, source: str) -> None:
        key = f"group {source}"
        try:
            planned = await self.sync(source)
        except SourceError as exc:
            self._outages.failed(key, f"the group of source {source} could not be read: {exc}; nothing changed")
            return
        except Exception as exc:  # a bug or an answer nobody foresaw: logged, tried again at the next refresh
            self._outages.unexpected(key, f"following the group of source {source} failed: {exc!r}", exc)
            return
        self._outages.recovered(key, f"the group of source {source} is read again")
        if planned.added or planned.reenabled or planned.updated or planned.removed:
            log.info("group of source %s followed: %s", source, roster.describe(planned, dry_run=False)[-1])
        if planned.skipped != self._skipped.get(source):
            # Said when it changes, not at every refresh: a member without an employee id stays so for a while.
            for line in planned.skipped:
                log.warning("group of source %s: %s", source, line)
        self._skipped[source] = planned.skipped
