"""Enrolling a whole roster at once: `presence-bridge mailboxes import FILE.csv` and its admin-API twin.

A roster is rows of (address, workforce id[, source]). It is checked whole before anything is written: every
problem is reported with its row, and a roster with problems changes nothing. Refused: an address that is not
a mail address, a missing workforce id, a source that is not configured (or left out while several are), the
same address or the same workforce id twice in the roster, and a workforce id that an active mailbox not in
the roster holds already (two mailboxes would report as one person).

A roster only adds: listed mailboxes that are new are added, disabled or paused ones are re-enabled, active ones
get the workforce id and source the roster gives; mailboxes it does not list are left as they are (removing is
`mailboxes remove`). Applying it is one transaction with bulk statements: thousands of rows take well under a
second on SQLite (docs/running.md has the measurement).
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

MAX_ADDRESS = 320  # RFC 3696 errata: 64 before the @, 255 after
MAX_WORKFORCE_ID = 200
_PARALLEL = 16  # connection tests in flight at once: Graph allows 4 per mailbox, each test is one mailbox's
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
    """What importing the roster does: mailboxes to add, to enable again, to update; how many stay as they are."""

    added: list[Enrolment] = field(default_factory=list)
    reenabled: list[Enrolment] = field(default_factory=list)
    updated: list[Enrolment] = field(default_factory=list)
    unchanged: int = 0


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
    problems, enrolments = _checked(rows, sources, default_source)
    columns = (MailboxRow.address, MailboxRow.workforce_id, MailboxRow.source, MailboxRow.status)
    known = {row[0]: row for row in session.execute(sa.select(*(col(c) for c in columns))).all()}
    holders = {
        workforce_id: address for address, workforce_id, _, status in known.values() if status == MailboxStatus.ACTIVE
    }
    listed = {enrolment.address for _, _, enrolment in enrolments}
    result = RosterPlan()
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
        elif row[3] != MailboxStatus.ACTIVE:
            result.reenabled.append(enrolment)
        elif (row[1], row[2]) != (enrolment.workforce_id, enrolment.source):
            result.updated.append(enrolment)
        else:
            result.unchanged += 1
    if problems:
        ordered = [text for _, text in sorted(problems, key=lambda problem: problem[0])]
        raise RosterRefused(f"the roster has {len(ordered)} problem(s); nothing was changed", ordered)
    return result


def apply(session: Session, roster: RosterPlan, now: datetime) -> None:
    """Write the plan in bulk (one INSERT for the new rows, one executemany UPDATE for the others); added and
    re-enabled mailboxes are marked dirty in the same statements, as `mark_dirty` would, for their first sync."""
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
    """The mailboxes the roster would start syncing that Exchange refuses, each with its row and Exchange's reason.

    Each source's connection test reads one minute of each calendar: the mailbox, the permission and the
    credentials in one request. Chunks of addresses are tested side by side, `_PARALLEL` at a time, so that a
    roster of thousands takes minutes, not hours; that is why the check is asked for, not done by default.
    """
    starting = [*roster.added, *roster.reenabled]
    gate = asyncio.Semaphore(_PARALLEL)

    async def test(source: CalendarSource, chunk: Sequence[Enrolment]) -> list[str]:
        async with gate:
            report = await source.test_connection(tuple(e.address for e in chunk))
        refused = [e for e in chunk if e.address not in report.opened]
        reasons = "; ".join((*report.problems, *report.unreachable)) or "not tested"
        return [
            f"{e.where}: Exchange refuses {e.address}: {_reason_for(e.address, report.problems, reasons)}"
            for e in refused
        ]

    names = sorted({e.source for e in starting})
    unreachable = [
        f"{e.where}: the bridge holds no connection to source {e.source}" for e in starting if e.source not in sources
    ]
    tests = [
        test(sources[name], chunk)
        for name in names
        if name in sources
        for chunk in _chunks([e for e in starting if e.source == name])
    ]
    return unreachable + [problem for found in await asyncio.gather(*tests) for problem in found]


def _reason_for(address: str, problems: Sequence[str], fallback: str) -> str:
    return next((problem for problem in problems if address in problem), fallback)


def _chunks(items: Sequence[Enrolment], size: int = 50) -> Iterable[Sequence[Enrolment]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def describe(roster: RosterPlan, *, dry_run: bool) -> list[str]:
    """One line per mailbox the roster changes (`add`, `enable`, `update`), then a summary line."""
    lines = [
        f"{action:<7}{e.address}  {e.workforce_id}  {e.source}"
        for action, enrolments in (("add", roster.added), ("enable", roster.reenabled), ("update", roster.updated))
        for e in enrolments
    ]
    verb = "would be" if dry_run else "were"
    lines.append(
        f"{len(roster.added)} {verb} added, {len(roster.reenabled)} re-enabled, {len(roster.updated)} updated; "
        f"{roster.unchanged} unchanged"
    )
    return lines
