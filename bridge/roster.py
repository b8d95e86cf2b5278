"""Enrolling a whole roster at once: `presence-bridge mailboxes import FILE.csv` and its admin-API twin.

A roster is rows of (address, workforce id[, source]). It is checked whole before anything is written: every
problem is reported with its row, and a roster with problems changes nothing. Refused: an address that is not
a mail address, a missing workforce id, a source that is not configured (or left out while several are), the
same address or the same workforce id twice in the roster, and a workforce id that an active mailbox not in
the roster holds already (two mailboxes would report as one person).

A CSV roster only adds: listed mailboxes that are new are added, disabled or paused ones are re-enabled, active
ones get the workforce id and source the roster gives; mailboxes it does not list are left as they are (removing
is `mailboxes remove`). Applying it is one transaction with bulk statements: 10,000 rows take about two seconds
(docs/running.md has the measurement).

A source's Entra ID group is planned the same way (`plan_group`, driven by bridge/group_roster.py), with three
differences, because it is applied unattended every few minutes: a member with a problem is skipped with its
reason instead of refusing the whole group; a mailbox disabled or paused by anyone but the group stays so; and
the mailboxes the group enrolled (`MailboxRow.enrolled_by`) that it no longer lists are removed.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col

from bridge.domain import MAIL_ADDRESS
from bridge.errors import UserError
from bridge.sources.base import CalendarSource
from bridge.store import MailboxRow, MailboxStatus
from bridge.store.db import in_chunks, serialise

GROUP = "group"  # MailboxRow.enrolled_by of what a source's group enrolled
LEFT_GROUP = "no longer a member of the source's group"  # the status reason of what the group removed
MAX_ADDRESS = 320  # RFC 3696 errata: 64 before the @, 255 after
MAX_WORKFORCE_ID = 200
_PARALLEL = 16  # connection tests in flight at once: Graph allows 4 per mailbox, each test is one mailbox's
_TESTED_TOGETHER = 50  # addresses in one connection test
_HEADER = ("address", "workforce_id")


@dataclass(frozen=True, slots=True)
class RosterRow:
    """One person of a roster; `where` names the row in what the user gave ("line 4", "mailboxes[3]")."""

    where: str
    address: str
    workforce_id: str
    source: str | None = None
    surplus: bool = False  # more cells than address, workforce id and source


@dataclass(frozen=True, slots=True)
class Enrolment:
    address: str
    workforce_id: str
    source: str
    where: str = field(default="", compare=False)


@dataclass(slots=True)
class RosterPlan:
    """What importing the roster does: mailboxes to add, to enable again, to update; how many stay as they are.

    A group's plan (`group` set) also removes (`removed`) and lists the members it leaves as they are, each with
    its reason (`skipped`).
    """

    added: list[Enrolment] = field(default_factory=list)
    reenabled: list[Enrolment] = field(default_factory=list)
    updated: list[Enrolment] = field(default_factory=list)
    unchanged: int = 0
    group: bool = False
    removed: list[Enrolment] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class RosterRefused(UserError):
    """The roster has problems; `problems` lists each with its row. Nothing was written."""


def read_csv(text: str) -> list[RosterRow]:
    """Rows of a CSV file: address, workforce id[, source]; an optional header row; blank lines skipped."""
    rows = []
    for number, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in cells]
        if not any(cells):
            continue
        if number == 1 and tuple(cell.lower().replace(" ", "_") for cell in cells[:2]) == _HEADER:
            continue
        padded = [*cells, "", ""]
        rows.append(RosterRow(f"line {number}", padded[0], padded[1], padded[2] or None, len(cells) > 3))
    return rows


def plan(
    session: Session, rows: Sequence[RosterRow], sources: Sequence[str], *, default_source: str | None = None
) -> RosterPlan:
    """Check the roster against itself, the configured sources and the database; `RosterRefused` lists every
    problem, else what applying it would do. Rows without a source take `default_source`, or the only source."""
    if default_source is None and len(sources) == 1:
        default_source = sources[0]
    result, problems = _planned(session, rows, sources, default_source, group=False)
    if problems:
        ordered = [text for _, text in sorted(problems, key=lambda problem: problem[0])]
        raise RosterRefused(f"the roster has {len(ordered)} problem(s); nothing was changed", ordered)
    return result


def plan_group(
    session: Session, source: str, rows: Sequence[RosterRow], refused: Mapping[str, str] | None = None
) -> RosterPlan:
    """What following the group of `source` does, its members being `rows`: the members with a problem, and those
    `refused` names (address → why, what Exchange refused), are skipped with their reason; the mailboxes the group
    enrolled that it does not list any more are removed."""
    refused = refused or {}
    unrefused = [row for row in rows if row.address.lower() not in refused]
    result, problems = _planned(session, unrefused, [source], source, group=True)
    result.skipped[:0] = [text for _, text in sorted(problems, key=lambda problem: problem[0])]
    result.skipped += refused.values()
    listed = {row.address.lower() for row in rows}
    gone = session.execute(
        sa.select(col(MailboxRow.address), col(MailboxRow.workforce_id)).where(
            col(MailboxRow.source) == source,
            col(MailboxRow.enrolled_by) == GROUP,
            col(MailboxRow.status) != MailboxStatus.DISABLED,
        )
    ).all()
    result.removed = [
        Enrolment(address, workforce_id or "", source) for address, workforce_id in gone if address not in listed
    ]
    return result


def _planned(
    session: Session, rows: Sequence[RosterRow], sources: Sequence[str], default_source: str | None, *, group: bool
) -> tuple[RosterPlan, list[tuple[int, str]]]:
    # Rosters planned at once (two instances following a group, an import beside them) are planned one after the
    # other: each then sees what the one before wrote, instead of both inserting the same new mailboxes.
    serialise(session, "roster")
    problems, enrolments = _checked(rows, sources, default_source)
    columns = (
        MailboxRow.address,
        MailboxRow.workforce_id,
        MailboxRow.source,
        MailboxRow.status,
        MailboxRow.status_reason,
        MailboxRow.enrolled_by,
    )
    known = {row[0]: row for row in session.execute(sa.select(*(col(c) for c in columns))).all()}
    holders = {row[1]: row[0] for row in known.values() if row[3] == MailboxStatus.ACTIVE}
    listed = {enrolment.address for _, _, enrolment in enrolments}
    enrolled_by = GROUP if group else None
    result = RosterPlan(group=group)
    for position, where, enrolment in enrolments:
        holder = holders.get(enrolment.workforce_id)
        if holder is not None and holder != enrolment.address and holder not in listed:
            problems.append(
                (
                    position,
                    f"{where}: workforce id {enrolment.workforce_id!r} belongs to the active mailbox {holder}; "
                    "disable or remove that one first",
                )
            )
            continue
        row = known.get(enrolment.address)
        if row is None:
            result.added.append(enrolment)
        elif row[3] != MailboxStatus.ACTIVE and group and row[4] != LEFT_GROUP:
            # Unattended, the group does not undo what an administrator or the mass-delete guard decided.
            result.skipped.append(f"{where}: {enrolment.address} is {row[3].value} ({row[4]}); left as it is")
        elif row[3] != MailboxStatus.ACTIVE:
            result.reenabled.append(enrolment)
        elif (row[1], row[2], row[5]) != (enrolment.workforce_id, enrolment.source, enrolled_by):
            result.updated.append(enrolment)
        else:
            result.unchanged += 1
    return result, problems


def apply(session: Session, roster: RosterPlan, now: datetime) -> None:
    """Write the plan's enrolments in bulk (one INSERT for the new rows, one executemany UPDATE for the others);
    added and re-enabled mailboxes are marked dirty in the same statements, as `mark_dirty` would, for their first
    sync. Removals need the mapping: `bridge.group_roster` makes them."""
    enrolled_by = GROUP if roster.group else None
    # Core statements on the session's connection: the ORM's bulk paths want primary keys and build objects.
    connection = session.connection()
    if roster.added:
        connection.execute(
            sa.insert(MailboxRow),
            [
                {
                    "address": e.address,
                    "workforce_id": e.workforce_id,
                    "source": e.source,
                    "dirty_generation": 1,
                    "dirty_at": now,
                    "enrolled_by": enrolled_by,
                }
                for e in roster.added
            ],
        )
    changed = [(e, True) for e in roster.reenabled] + [(e, False) for e in roster.updated]
    if changed:
        connection.execute(
            sa.update(MailboxRow)
            .where(col(MailboxRow.address) == sa.bindparam("row_address"))
            .values(
                workforce_id=sa.bindparam("row_workforce_id"),
                source=sa.bindparam("row_source"),
                status=MailboxStatus.ACTIVE,
                status_reason=None,
                dirty_generation=MailboxRow.dirty_generation + sa.bindparam("row_dirty"),
                dirty_at=sa.func.coalesce(MailboxRow.dirty_at, now),
                enrolled_by=enrolled_by,
            ),
            [
                {
                    "row_address": e.address,
                    "row_workforce_id": e.workforce_id,
                    "row_source": e.source,
                    "row_dirty": int(start),
                }
                for e, start in changed
            ],
        )


def _checked(
    rows: Iterable[RosterRow], sources: Sequence[str], default_source: str | None
) -> tuple[list[tuple[int, str]], list[tuple[int, str, Enrolment]]]:
    """Each row's problems, and the rows without any, each with its position in the roster."""
    problems: list[tuple[int, str]] = []
    enrolments: list[tuple[int, str, Enrolment]] = []
    addresses: dict[str, str] = {}
    workforce_ids: dict[str, str] = {}
    for position, row in enumerate(rows):
        row = row if row.source else replace(row, source=default_source)
        found = _row_problems(row, sources)
        address = row.address.lower()
        if address in addresses:
            found.append(f"address {row.address} is listed already ({addresses[address]})")
        if row.workforce_id and row.workforce_id in workforce_ids:
            found.append(f"workforce id {row.workforce_id!r} is listed already ({workforce_ids[row.workforce_id]})")
        addresses.setdefault(address, row.where)
        if row.workforce_id:
            workforce_ids.setdefault(row.workforce_id, row.where)
        if found:
            problems += [(position, f"{row.where}: {problem}") for problem in found]
            continue
        assert row.source is not None  # _row_problems reports a missing one
        enrolments.append((position, row.where, Enrolment(address, row.workforce_id, row.source, row.where)))
    return problems, enrolments


def _row_problems(row: RosterRow, sources: Sequence[str]) -> list[str]:
    found = []
    if not MAIL_ADDRESS.fullmatch(row.address) or len(row.address) > MAX_ADDRESS:
        found.append(f"{row.address!r} is not a mail address")
    if not row.workforce_id:
        found.append("the workforce id is missing")
    elif len(row.workforce_id) > MAX_WORKFORCE_ID:
        found.append(f"the workforce id is longer than {MAX_WORKFORCE_ID} characters")
    if row.surplus:
        found.append("more than three columns (address, workforce id, source)")
    elif row.source is None and len(sources) != 1:
        found.append(f"the source is missing; configured: {', '.join(sources)}")
    elif row.source is not None and row.source not in sources:
        found.append(f"{row.source!r} is not a configured source ({', '.join(sources)})")
    return found


async def unknown_to_exchange(sources: Mapping[str, CalendarSource], roster: RosterPlan) -> list[str]:
    """The mailboxes the roster would start syncing that Exchange refuses, each with its row and Exchange's reason."""
    return list((await exchange_refusals(sources, roster)).values())


async def exchange_refusals(sources: Mapping[str, CalendarSource], roster: RosterPlan) -> dict[str, str]:
    """`unknown_to_exchange`, by address.

    Each source's connection test reads one minute of each calendar: the mailbox, the permission and the
    credentials in one request. Chunks of addresses are tested side by side, `_PARALLEL` at a time, so that a
    roster of thousands takes minutes, not hours; that is why the check is asked for, not done by default.
    """
    starting = [*roster.added, *roster.reenabled]
    gate = asyncio.Semaphore(_PARALLEL)

    async def test(source: CalendarSource, chunk: Sequence[Enrolment]) -> dict[str, str]:
        async with gate:
            report = await source.test_connection(tuple(e.address for e in chunk))
        refused = [e for e in chunk if e.address not in report.opened]
        reasons = "; ".join((*report.problems, *report.unreachable)) or "not tested"
        return {
            e.address: f"{e.where}: Exchange refuses {e.address}: {_reason_for(e.address, report.problems, reasons)}"
            for e in refused
        }

    names = sorted({e.source for e in starting})
    found = {
        e.address: f"{e.where}: the bridge holds no connection to source {e.source}"
        for e in starting
        if e.source not in sources
    }
    tests = [
        test(sources[name], chunk)
        for name in names
        if name in sources
        for chunk in in_chunks([e for e in starting if e.source == name], _TESTED_TOGETHER)
    ]
    for refusals in await asyncio.gather(*tests):
        found.update(refusals)
    return found


def _reason_for(address: str, problems: Sequence[str], fallback: str) -> str:
    return next((problem for problem in problems if address in problem), fallback)


def describe(roster: RosterPlan, *, dry_run: bool) -> list[str]:
    """One line per mailbox the roster changes (`add`, `enable`, `update`, and for a group `remove`), one per
    member skipped, then a summary line."""
    actions = (("add", roster.added), ("enable", roster.reenabled), ("update", roster.updated))
    lines = [
        f"{action:<7}{e.address}  {e.workforce_id}  {e.source}"
        for action, enrolments in (*actions, ("remove", roster.removed))
        for e in enrolments
    ]
    lines += [f"skip   {reason}" for reason in roster.skipped]
    verb = "would be" if dry_run else "were"
    summary = f"{len(roster.added)} {verb} added, {len(roster.reenabled)} re-enabled, {len(roster.updated)} updated"
    if roster.group:
        summary += f", {len(roster.removed)} removed; {len(roster.skipped)} skipped"
    lines.append(f"{summary}; {roster.unchanged} unchanged")
    return lines
