"""The template mapping the mirror reflects, and a change of it held until an administrator confirms it.

The running bridge and `presence-bridge templates apply` are different processes: the confirmation reaches the
bridge through this row (the digest it approves), so it works from any host that reaches the database.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from bridge.store.models import MappingHistoryRow, MappingStateRow

_ROW = 1
# Who applied a mapping when nobody is known: the watched file was edited (or replaced through the REST API).
FILE_EDIT = "the mapping file"


@dataclass(frozen=True, slots=True)
class HeldMapping:
    """A change of mapping waiting for confirmation: its file's digest, since when, what it would do."""

    digest: str
    since: datetime
    preview: dict[str, Any]
    approved: bool
    approved_by: str | None = None


def applied_mapping(session: Session) -> tuple[str, str] | None:
    """The digest and text of the mapping the mirror reflects; None before the first start recorded one."""
    row = session.get(MappingStateRow, _ROW)
    return None if row is None else (row.applied_digest, row.applied_text)


def record_applied(
    session: Session, digest: str, text: str, now: datetime, by: str = FILE_EDIT, emitted: int | None = None
) -> None:
    """The mirror now reflects this mapping; a hold is over (it was applied, or replaced by another edit).

    A mapping other than the one applied before joins the history, with `by` (who applied it) and `emitted`
    (the changes its re-map sent).
    """
    row = session.get(MappingStateRow, _ROW, with_for_update=True)
    if row is None:
        # Instances starting together on a new database each find no row to lock: the first insert wins and the
        # others' do nothing (a plain insert failed them on the key), then go on with the row as it stands.
        values = {"id": _ROW, "applied_digest": digest, "applied_text": text, "applied_at": now}
        inserted = session.execute(_insert_first(session.get_bind().dialect.name).values(values)).first()
        if inserted is not None:
            session.add(_history(digest, text, now, by, emitted))
            return
        row = session.get(MappingStateRow, _ROW, with_for_update=True, populate_existing=True)
        assert row is not None, "the insert that won stands: the row is never deleted"
    if row.applied_digest != digest:
        session.add(_history(digest, text, now, by, emitted))
        row.applied_digest, row.applied_text, row.applied_at = digest, text, now
    row.held_digest = row.held_at = row.held_preview = None
    row.approved_digest = row.approved_by = row.approved_at = None


def _history(digest: str, text: str, now: datetime, by: str, emitted: int | None) -> MappingHistoryRow:
    return MappingHistoryRow(digest=digest, text=text, applied_at=now, applied_by=by[:200], emitted=emitted)


@functools.cache
def _insert_first(dialect: str) -> sa.Insert:
    """The row's first insert, skipped when another transaction made it; returns the id it stored, if any (the
    row count psycopg gives for it is -1)."""
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = insert(MappingStateRow).on_conflict_do_nothing(index_elements=["id"])
    return statement.returning(col(MappingStateRow.id))


def hold_mapping(session: Session, digest: str, preview: dict[str, Any], now: datetime) -> bool:
    """Hold the change to the mapping with this digest; True when it was not held already."""
    row = session.get(MappingStateRow, _ROW, with_for_update=True)
    assert row is not None, "the applied mapping is recorded at start, before any change can be held"
    if row.held_digest == digest:
        return False
    row.held_digest, row.held_at, row.held_preview = digest, now, preview
    return True


def held_mapping(session: Session) -> HeldMapping | None:
    row = session.get(MappingStateRow, _ROW)
    if row is None or row.held_digest is None or row.held_at is None:
        return None
    approved = row.approved_digest == row.held_digest
    return HeldMapping(
        row.held_digest, row.held_at, row.held_preview or {}, approved, row.approved_by if approved else None
    )


def approve_held(session: Session, digest: str, by: str, now: datetime) -> HeldMapping | None:
    """Confirm the held change if it is the one with `digest`; None when that change is not what is held."""
    row = session.get(MappingStateRow, _ROW, with_for_update=True)
    if row is None or row.held_digest != digest:
        return None
    row.approved_digest, row.approved_by, row.approved_at = digest, by, now
    return held_mapping(session)


@dataclass(frozen=True, slots=True)
class AppliedMapping:
    """One entry of the history of applied mappings."""

    id: int
    digest: str
    text: str
    applied_at: datetime
    applied_by: str
    emitted: int | None


def mapping_history(session: Session, limit: int) -> list[AppliedMapping]:
    """The `limit` most recently applied mappings, newest first."""
    query = select(MappingHistoryRow).order_by(col(MappingHistoryRow.id).desc()).limit(limit)
    return [
        AppliedMapping(row.id or 0, row.digest, row.text, row.applied_at, row.applied_by, row.emitted)
        for row in session.exec(query)
    ]
