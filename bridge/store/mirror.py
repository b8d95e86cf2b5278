"""The appointment mirror and the delta state of a mailbox, read and written as domain values."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from bridge.domain import Appointment, MirrorItem, Window
from bridge.store.models import DeltaStateRow, MirrorRow, now


def load_mirror(session: Session, mailbox_id: int, item_ids: Collection[str] | None = None) -> dict[str, MirrorItem]:
    """The mailbox's mirror, or only the rows of `item_ids` (what one delta read touches)."""
    # Plain rows, not ORM objects: a sync reads the mirror on every commit.
    query = sa.select(*_COLUMNS).where(col(MirrorRow.mailbox_id) == mailbox_id)
    if item_ids is None:
        return {row.item_id: _item(row) for row in session.connection().execute(query)}
    wanted = sorted(set(item_ids))
    found: dict[str, MirrorItem] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = query.where(col(MirrorRow.item_id).in_(wanted[start : start + _CHUNK]))
        found.update((row.item_id, _item(row)) for row in session.connection().execute(chunk))
    return found


def count_mirror(session: Session, mailbox_id: int) -> int:
    query = sa.select(sa.func.count()).select_from(MirrorRow).where(col(MirrorRow.mailbox_id) == mailbox_id)
    return int(session.connection().execute(query).scalar_one())


_COLUMNS = list(MirrorRow.__table__.columns)  # type: ignore[attr-defined]
_CHUNK = 500


def write_mirror(session: Session, mailbox_id: int, put: Iterable[MirrorItem], drop: Iterable[str]) -> None:
    dropped = sorted(set(drop))
    if dropped:
        session.execute(
            sa.delete(MirrorRow).where(col(MirrorRow.mailbox_id) == mailbox_id, col(MirrorRow.item_id).in_(dropped))
        )
    rows = [_row(mailbox_id, item) for item in put]
    if rows:
        # One statement, built once and cached by SQLAlchemy, with the rows as parameters: session.merge would
        # SELECT and write per row, and values baked into the statement defeat the statement cache.
        session.connection().execute(_upsert(session.get_bind().dialect.name), rows)


_KEY = ("mailbox_id", "item_id")


@functools.cache
def _upsert(dialect: str) -> sa.Executable:
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = insert(MirrorRow)
    changed = {column.name: statement.excluded[column.name] for column in _COLUMNS if column.name not in _KEY}
    return statement.on_conflict_do_update(index_elements=list(_KEY), set_=changed)


def load_delta_state(session: Session, mailbox_id: int) -> tuple[Window, str | None] | None:
    query = sa.select(col(DeltaStateRow.window_start), col(DeltaStateRow.window_end), col(DeltaStateRow.token)).where(
        col(DeltaStateRow.mailbox_id) == mailbox_id
    )
    row = session.connection().execute(query).first()
    if row is None:
        return None
    return Window(row.window_start, row.window_end), row.token


def save_delta_state(
    session: Session, mailbox_id: int, window: Window, token: str | None, *, new_round: bool, now: datetime
) -> None:
    # One upsert, not an ORM object: it runs in every sync commit.
    values = {
        "mailbox_id": mailbox_id,
        "window_start": window.start,
        "window_end": window.end,
        "token": token,
        "round_started_at": now,
        "updated_at": now,
    }
    session.connection().execute(_delta_upsert(session.get_bind().dialect.name, new_round=new_round), values)


@functools.cache
def _delta_upsert(dialect: str, *, new_round: bool) -> sa.Executable:
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = insert(DeltaStateRow)
    kept = {"mailbox_id"} if new_round else {"mailbox_id", "round_started_at"}
    changed = {name: statement.excluded[name] for name in _DELTA_COLUMNS if name not in kept}
    return statement.on_conflict_do_update(index_elements=["mailbox_id"], set_=changed)


_DELTA_COLUMNS = [column.name for column in DeltaStateRow.__table__.columns]  # type: ignore[attr-defined]


def _item(row: Any) -> MirrorItem:
    appointment = Appointment(
        item_id=row.item_id,
        change_key=row.change_key,
        start=row.start,
        end=row.end,
        free_busy=row.free_busy,
        subject=row.subject,
        all_day=row.all_day,
        private=row.private,
        is_organizer=row.is_organizer,
        kind=row.kind,
        series_id=row.series_id,
        bridge_ref=row.bridge_ref,
    )
    return MirrorItem(appointment, row.template, row.content_hash)


def _row(mailbox_id: int, item: MirrorItem) -> dict[str, Any]:
    appointment = item.appointment
    return {
        "mailbox_id": mailbox_id,
        "item_id": appointment.item_id,
        "change_key": appointment.change_key,
        "series_id": appointment.series_id,
        "kind": appointment.kind,
        "start": appointment.start,
        "end": appointment.end,
        "all_day": appointment.all_day,
        "free_busy": appointment.free_busy,
        "subject": appointment.subject,
        "private": appointment.private,
        "is_organizer": appointment.is_organizer,
        "bridge_ref": appointment.bridge_ref,
        "content_hash": item.shown_hash,
        "template": item.template,
        "updated_at": now(),
    }


def load_item(session: Session, mailbox_id: int, item_id: str) -> MirrorItem | None:
    row = session.get(MirrorRow, (mailbox_id, item_id))
    return None if row is None else _item(row)


def series_members(session: Session, mailbox_id: int, series_id: str) -> list[str]:
    """The mirrored instances of a series (its occurrences and exceptions)."""
    rows = session.exec(
        select(MirrorRow.item_id).where(MirrorRow.mailbox_id == mailbox_id, MirrorRow.series_id == series_id)
    ).all()
    return list(rows)
