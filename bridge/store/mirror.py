"""The appointment mirror and the delta state of a mailbox, read and written as domain values."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from bridge.domain import Appointment, MirrorItem, Window
from bridge.store.db import execute_rows, in_chunks
from bridge.store.models import DeltaStateRow, DriverValues, MirrorRow, driver_values, now


def load_mirror(session: Session, mailbox_id: int, item_ids: Collection[str] | None = None) -> dict[str, MirrorItem]:
    """The mailbox's mirror, or only the rows of `item_ids` (what one delta read touches)."""
    # Plain rows of statements built once, not ORM objects: a sync reads the mirror on every commit.
    if item_ids is None:
        return load_mirrors(session, [mailbox_id])[mailbox_id]
    connection = session.connection()
    found: dict[str, MirrorItem] = {}
    for chunk in in_chunks(sorted(set(item_ids)), _CHUNK):
        rows = connection.execute(_MIRROR_ITEMS, {"mailbox_id": mailbox_id, "item_ids": chunk})
        found.update((row.item_id, _item(row)) for row in rows)
    return found


def load_mirrors(session: Session, mailbox_ids: Collection[int]) -> dict[int, dict[str, MirrorItem]]:
    """The whole mirrors of these mailboxes, by mailbox id, in one statement (a group of sync commits)."""
    found: dict[int, dict[str, MirrorItem]] = {mailbox_id: {} for mailbox_id in mailbox_ids}
    if found:
        for row in session.connection().execute(_MIRRORS, {"mailbox_ids": sorted(found)}):
            found[row.mailbox_id][row.item_id] = _item(row)
    return found


def count_mirror(session: Session, mailbox_id: int) -> int:
    return int(session.connection().execute(_COUNT, {"mailbox_id": mailbox_id}).scalar_one())


_TABLE = MirrorRow.__table__  # type: ignore[attr-defined]
_COLUMNS = list(_TABLE.columns)
_CHUNK = 500
# Built once, with the values as parameters: building a statement costs about ten times executing it.
_MIRROR = sa.select(*_COLUMNS).where(_TABLE.c.mailbox_id == sa.bindparam("mailbox_id"))
_MIRRORS = sa.select(*_COLUMNS).where(_TABLE.c.mailbox_id.in_(sa.bindparam("mailbox_ids", expanding=True)))
_MIRROR_ITEMS = _MIRROR.where(_TABLE.c.item_id.in_(sa.bindparam("item_ids", expanding=True)))
_COUNT = sa.select(sa.func.count()).select_from(_TABLE).where(_TABLE.c.mailbox_id == sa.bindparam("mailbox_id"))
_DROP = sa.delete(_TABLE).where(
    _TABLE.c.mailbox_id == sa.bindparam("mailbox_id"), _TABLE.c.item_id.in_(sa.bindparam("item_ids", expanding=True))
)


def write_mirror(session: Session, mailbox_id: int, put: Iterable[MirrorItem], drop: Iterable[str]) -> None:
    write_mirrors(session, [(mailbox_id, put, drop)])


def write_mirrors(session: Session, writes: Iterable[tuple[int, Iterable[MirrorItem], Iterable[str]]]) -> None:
    """`write_mirror` for several mailboxes, given as (mailbox id, put, drop): every row put in one executemany."""
    dialect = session.get_bind().dialect
    values = driver_values(dialect)
    written = values.timestamp(now())
    rows: list[dict[str, Any]] = []
    for mailbox_id, put, drop in writes:
        dropped = sorted(set(drop))
        if dropped:
            session.connection().execute(_DROP, {"mailbox_id": mailbox_id, "item_ids": dropped})
        rows.extend(_row(mailbox_id, item, written, values) for item in put)
    # One statement, built once, with the rows as parameters in the driver's form (`execute_rows`): session.merge
    # would SELECT and write per row, and values baked into the statement defeat the statement cache.
    execute_rows(session, _upsert(dialect.name), rows)


_KEY = ("mailbox_id", "item_id")


@functools.cache
def _upsert(dialect: str) -> sa.Insert:
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = insert(MirrorRow)
    changed = {column.name: statement.excluded[column.name] for column in _COLUMNS if column.name not in _KEY}
    return statement.on_conflict_do_update(index_elements=list(_KEY), set_=changed)


# A mailbox's current delta round: its window and the token to continue from.
DeltaState = tuple[Window, str | None]


def delta_states(session: Session, mailbox_ids: Collection[int]) -> dict[int, DeltaState]:
    """The current delta round (its window and token) of each of these mailboxes that has one."""
    if not mailbox_ids:
        return {}
    rows = session.connection().execute(_DELTA_STATES, {"mailbox_ids": sorted(mailbox_ids)})
    return {row.mailbox_id: (Window(row.window_start, row.window_end), row.token) for row in rows}


_DELTA_TABLE = DeltaStateRow.__table__  # type: ignore[attr-defined]
_DELTA_STATES = sa.select(
    _DELTA_TABLE.c.mailbox_id, _DELTA_TABLE.c.window_start, _DELTA_TABLE.c.window_end, _DELTA_TABLE.c.token
).where(_DELTA_TABLE.c.mailbox_id.in_(sa.bindparam("mailbox_ids", expanding=True)))


def save_delta_state(
    session: Session, mailbox_id: int, window: Window, token: str | None, *, new_round: bool, now: datetime
) -> None:
    save_delta_states(session, [(mailbox_id, window, token, new_round)], now)


# What `save_delta_states` saves of a mailbox: its id, the round's window and token, and whether the round is new.
DeltaSave = tuple[int, Window, str | None, bool]


def save_delta_states(session: Session, saves: Iterable[DeltaSave], now: datetime) -> None:
    """Each mailbox's delta state, as of `now`: an upsert (not an ORM object, it runs in every sync commit) with
    the rows of the new rounds in one executemany and those of the rounds going on in another."""
    dialect = session.get_bind().dialect
    values = driver_values(dialect)
    at = values.timestamp(now)
    rows: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for mailbox_id, window, token, new_round in saves:
        rows[new_round].append(
            {
                "mailbox_id": mailbox_id,
                "window_start": values.timestamp(window.start),
                "window_end": values.timestamp(window.end),
                "token": token,
                "round_started_at": at,
                "updated_at": at,
            }
        )
    for new_round, some in rows.items():
        execute_rows(session, _delta_upsert(dialect.name, new_round=new_round), some)


@functools.cache
def _delta_upsert(dialect: str, *, new_round: bool) -> sa.Insert:
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = insert(DeltaStateRow)
    kept = {"mailbox_id"} if new_round else {"mailbox_id", "round_started_at"}
    changed = {name: statement.excluded[name] for name in _DELTA_COLUMNS if name not in kept}
    return statement.on_conflict_do_update(index_elements=["mailbox_id"], set_=changed)


_DELTA_COLUMNS = [column.name for column in _DELTA_TABLE.columns]


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


def _row(mailbox_id: int, item: MirrorItem, written: object, values: DriverValues) -> dict[str, Any]:
    """The mirror row of `item`, in the driver's form; `written` is the time of writing in it already."""
    appointment = item.appointment
    return {
        "mailbox_id": mailbox_id,
        "item_id": appointment.item_id,
        "change_key": appointment.change_key,
        "series_id": appointment.series_id,
        "kind": appointment.kind.value,
        "start": values.timestamp(appointment.start),
        "end": values.timestamp(appointment.end),
        "all_day": appointment.all_day,
        "free_busy": appointment.free_busy.value,
        "subject": appointment.subject,
        "private": appointment.private,
        "is_organizer": appointment.is_organizer,
        "bridge_ref": appointment.bridge_ref,
        "content_hash": item.shown_hash,
        "template": item.template,
        "updated_at": written,
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
