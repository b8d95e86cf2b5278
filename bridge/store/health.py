"""What administrators see about sources and mailboxes: their status, the reason for it, and since when.

A source's status is shared by every instance through its row: a failing source is held (`held_until`) so that
none of its mailboxes is read before the hold ends, and the first success anywhere clears it. What every health
view reports is read in one place, `bridge/store/summary.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from bridge.store.models import MailboxRow, MailboxStatus, SourceRow, SourceStatus, UTCDateTime, now


def set_source_status(session: Session, name: str, status: SourceStatus, reason: str | None) -> None:
    # One UPDATE that matches nothing when the status stands (every subscription made calls this), no ORM load.
    session.connection().execute(_SET_STATUS, {"source": name, "new_status": status, "reason": reason, "now": now()})


# Statements run for every mailbox are built once, with their values as parameters: building one costs about ten
# times executing it.
_SOURCE = SourceRow.__table__  # type: ignore[attr-defined]
_STATUS = sa.bindparam("new_status", type_=_SOURCE.c.status.type)
_SET_STATUS = (
    sa.update(_SOURCE)
    .where(
        _SOURCE.c.name == sa.bindparam("source"),
        sa.or_(_SOURCE.c.status != _STATUS, _SOURCE.c.status_reason.is_distinct_from(sa.bindparam("reason"))),
    )
    .values(
        status=_STATUS,
        status_reason=sa.bindparam("reason"),
        status_since=sa.case(
            (_SOURCE.c.status != _STATUS, sa.bindparam("now", type_=UTCDateTime())), else_=_SOURCE.c.status_since
        ),
    )
)


def source_failed(
    session: Session,
    name: str,
    status: SourceStatus,
    reason: str,
    at: datetime,
    wait: Callable[[int], timedelta],
) -> datetime | None:
    """Record that the source failed and hold it for `wait(failures in a row)`; returns the end of the hold.

    Failures that arrive while the source is already held in the same status (reads of several mailboxes were
    under way together, or another instance got there first) do not lengthen the hold.
    """
    row = session.get(SourceRow, name, with_for_update=True)
    if row is None:
        return None
    if row.status == status and row.held_until is not None and row.held_until > at:
        return row.held_until
    row.failures += 1
    if row.status != status:
        row.status_since = at
    row.status = status
    row.status_reason = reason
    row.held_until = at + wait(row.failures)
    return row.held_until


def source_works(session: Session, name: str, at: datetime) -> bool:
    """Clear a failing source's status and hold after a success; True when it was failing."""
    # One UPDATE that matches nothing while the source is well, not an ORM load.
    return bool(session.connection().execute(_WORKS, {"source": name, "at": at}).rowcount)


# What a success clears: the source failed, or is held, or counts failures.
_FAILING = sa.or_(_SOURCE.c.status != SourceStatus.OK, _SOURCE.c.held_until.is_not(None), _SOURCE.c.failures != 0)


def source_failing(name: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """Whether the source `name` names has something for `source_works` to clear, as an expression a statement
    reads along with what it reads anyway (a sync commit's lock of its mailbox)."""
    return sa.exists().where(_SOURCE.c.name == name, _FAILING)


_WORKS = (
    sa.update(_SOURCE)
    .where(_SOURCE.c.name == sa.bindparam("source"), _FAILING)
    .values(
        status=SourceStatus.OK,
        status_reason=None,
        held_until=None,
        failures=0,
        status_since=sa.case(
            (_SOURCE.c.status != SourceStatus.OK, sa.bindparam("at", type_=UTCDateTime())),
            else_=_SOURCE.c.status_since,
        ),
    )
)


@dataclass(frozen=True, slots=True)
class SourceHold:
    status: SourceStatus
    held_until: datetime | None


def source_hold(session: Session, name: str) -> SourceHold | None:
    row = session.connection().execute(_HOLD, {"source": name}).first()
    return None if row is None else SourceHold(row.status, row.held_until)


_HOLD = sa.select(_SOURCE.c.status, _SOURCE.c.held_until).where(_SOURCE.c.name == sa.bindparam("source"))


def set_mailbox_status(session: Session, mailbox_id: int, status: MailboxStatus, reason: str | None) -> None:
    row = session.get(MailboxRow, mailbox_id)
    if row is not None and (row.status, row.status_reason) != (status, reason):
        row.status = status
        row.status_reason = reason


def note_mailbox(session: Session, mailbox_id: int, reason: str | None) -> None:
    """A reason shown beside an active mailbox (it still syncs, something is degraded), or None to clear it."""
    session.connection().execute(_NOTE, {"mailbox_id": mailbox_id, "reason": reason})


_MAILBOX = MailboxRow.__table__  # type: ignore[attr-defined]
_NOTE = (
    sa.update(_MAILBOX)
    .where(
        _MAILBOX.c.id == sa.bindparam("mailbox_id"),
        _MAILBOX.c.status == MailboxStatus.ACTIVE,
        _MAILBOX.c.status_reason.is_distinct_from(sa.bindparam("reason")),
    )
    .values(status_reason=sa.bindparam("reason"))
)
