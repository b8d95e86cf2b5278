"""The template mapping the mirror reflects, and a change of it held until an administrator confirms it.

The running bridge and `presence-bridge templates apply` are different processes: the confirmation reaches the
bridge through this row (the digest it approves), so it works from any host that reaches the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    if row is None or row.applied_digest != digest:
        session.add(MappingHistoryRow(digest=digest, text=text, applied_at=now, applied_by=by[:200], emitted=emitted))
    if row is None:
        row = MappingStateRow(id=_ROW, applied_digest=digest, applied_text=text, applied_at=now)
        session.add(row)
    elif row.applied_digest != digest:
        row.applied_digest, row.applied_text, row.applied_at = digest, text, now
    row.held_digest = row.held_at = row.held_preview = None
    row.approved_digest = row.approved_by = row.approved_at = None


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
