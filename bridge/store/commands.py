"""Commands from the workforce system, stored before they are sent to Exchange and finished after.

A command row is written (status `sending`) in its own transaction before the relay calls Exchange, so a crash
leaves a trace that `reclaim_interrupted` finds; `finish` records Exchange's answer together with the mirror
rows the write changed. The rows double as the sync engine's memory of the relay's writes (`relay_writes`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.domain import RelayWrites
from bridge.store.models import CommandKind, CommandRow, CommandStatus

# How long the sync engine remembers the relay's writes: far longer than any read takes to come back.
ECHO_MEMORY = timedelta(hours=1)


_INSERT = sa.insert(CommandRow)
_FINISH = sa.update(CommandRow).where(col(CommandRow.id) == sa.bindparam("command_id"))


@dataclass(frozen=True, slots=True)
class Accepted:
    """The stored command for a request; `new` is False when an earlier request with the same key made it."""

    row: CommandRow
    new: bool


class KeyReused(Exception):
    """The idempotency key was used before for a different request."""


def accept(session: Session, draft: CommandRow, owner: str, now: datetime) -> Accepted:
    """Store `draft` as `sending`, or return the command an earlier request with the same key stored.

    A failed command that may be retried (Exchange was throttling or away) is taken up again by the retry.
    """
    if draft.idempotency_key is not None:
        earlier = session.exec(
            select(CommandRow)
            .where(CommandRow.scope == draft.scope, CommandRow.idempotency_key == draft.idempotency_key)
            .with_for_update()
        ).first()
        if earlier is not None:
            # The request as asked decides, not what the bridge derived from it (the zone then in force, the
            # state's planned times): a retry of the same request is the same command.
            if earlier.kind != draft.kind or _asked(earlier.payload) != _asked(draft.payload):
                raise KeyReused(draft.idempotency_key)
            if earlier.status == CommandStatus.FAILED and earlier.http_status == 503:
                _restart(earlier, owner, now)
                return Accepted(earlier, new=True)
            return Accepted(earlier, new=False)
    draft.status = CommandStatus.SENDING
    draft.owner = owner
    draft.attempts = 1
    draft.created_at = draft.updated_at = now
    # A Core INSERT with the row as parameters: one cached statement, no ORM object (this runs per command).
    session.connection().execute(_INSERT, draft.model_dump())
    return Accepted(draft, new=True)


def _asked(payload: dict[str, Any]) -> Any:
    return payload.get("request", payload)


def finish(
    session: Session,
    command_id: str,
    now: datetime,
    *,
    status: CommandStatus,
    http_status: int,
    result: dict[str, Any] | None,
    item_id: str | None = None,
    change_key: str | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "http_status": http_status,
        "result": result,
        "error": error,
        "finished_at": now,
        "updated_at": now,
    }
    if item_id is not None:
        values["item_id"] = item_id
    if change_key is not None:
        values["change_key"] = change_key
    session.connection().execute(_FINISH, {**values, "command_id": command_id})


def reclaim_interrupted(session: Session, owner: str, now: datetime, stale: timedelta) -> list[CommandRow]:
    """Commands `owner` left `sending` before `now` (it restarted), and any left for longer than `stale` (their
    instance died): taken over by `owner`.

    Bumping `updated_at` is the claim: another instance running the same query at once finds them fresh.
    """
    rows = session.exec(
        select(CommandRow)
        .where(
            CommandRow.status == CommandStatus.SENDING,
            sa.or_(
                sa.and_(col(CommandRow.owner) == owner, col(CommandRow.updated_at) < now),
                col(CommandRow.updated_at) < now - stale,
            ),
        )
        .order_by(col(CommandRow.created_at))
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        _restart(row, owner, now)
    return list(rows)


def find_command(session: Session, command_id: str) -> CommandRow | None:
    return session.get(CommandRow, command_id)


def created_item(session: Session, mailbox_id: int, bridge_id: str) -> str | None:
    """The Exchange id of the appointment a create or state command with this bridge id made."""
    row = session.get(CommandRow, bridge_id)
    if row is None or row.mailbox_id != mailbox_id or row.kind not in (CommandKind.CREATE, CommandKind.STATE):
        return None
    return row.item_id


def current_state_item(session: Session, mailbox_id: int) -> str | None:
    """The appointment the last finished current-state command made for the mailbox, if any."""
    row = session.exec(
        select(CommandRow)
        .where(
            CommandRow.mailbox_id == mailbox_id,
            CommandRow.kind == CommandKind.STATE,
            CommandRow.status == CommandStatus.DONE,
        )
        .order_by(col(CommandRow.finished_at).desc())
        .limit(1)
    ).first()
    return None if row is None else row.item_id


def relay_writes(session: Session, mailbox_id: int, read_started: datetime, now: datetime) -> RelayWrites:
    """What the sync engine must know of the relay's writes in a mailbox to plan a read begun at `read_started`."""
    # Plain rows of the columns needed, not ORM objects: this runs in every sync commit.
    rows = session.connection().execute(
        sa.select(
            col(CommandRow.id),
            col(CommandRow.kind),
            col(CommandRow.status),
            col(CommandRow.transaction_id),
            col(CommandRow.item_id),
            col(CommandRow.change_key),
            col(CommandRow.finished_at),
            col(CommandRow.payload),
        )
        .where(
            col(CommandRow.mailbox_id) == mailbox_id,
            col(CommandRow.updated_at) >= now - ECHO_MEMORY,
            col(CommandRow.status).in_([CommandStatus.SENDING, CommandStatus.DONE]),
        )
        .order_by(sa.nulls_first(col(CommandRow.finished_at).asc()))
    )
    written: dict[str, str] = {}
    refs: dict[str, str] = {}
    in_flight: set[str] = set()
    busy: set[str] = set()
    for row in rows:
        if row.transaction_id is not None and row.kind in (CommandKind.CREATE, CommandKind.STATE):
            refs[row.transaction_id] = row.id
        if row.status == CommandStatus.SENDING:
            if row.transaction_id is not None:
                in_flight.add(row.transaction_id)
            busy.update(_touched(row))
            continue
        if row.item_id is not None and row.change_key is not None:
            written[row.item_id] = row.change_key
        if row.finished_at is not None and row.finished_at >= read_started:
            busy.update(_touched(row))
    return RelayWrites(written=written, in_flight=frozenset(in_flight), refs=refs, busy=frozenset(busy))


def _touched(row: Any) -> Collection[str]:
    """Existing items a command changes or removes (a create's new item is recognised by its transaction id)."""
    touched = set(row.payload.get("touches", ()))
    if row.kind in (CommandKind.UPDATE, CommandKind.DELETE) and row.item_id is not None:
        touched.add(row.item_id)
    return touched


def _restart(row: CommandRow, owner: str, now: datetime) -> None:
    row.status = CommandStatus.SENDING
    row.owner = owner
    row.attempts += 1
    row.updated_at = now
    row.error = None
