"""Commands from the workforce system, stored before they are sent to Exchange and finished after.

A command row is written (status `sending`) in its own transaction before the relay calls Exchange, so a crash
leaves a trace that `reclaim_interrupted` finds; `finish` records Exchange's answer together with the mirror
rows the write changed. The rows double as the sync engine's memory of the relay's writes (`relay_writes`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from bridge.domain import RelayWrites
from bridge.store.models import CommandKind, CommandRow, CommandStatus, MailboxRow, MailboxStatus

# How long the sync engine remembers the relay's writes: far longer than any read takes to come back.
ECHO_MEMORY = timedelta(hours=1)


_FINISH = sa.update(CommandRow).where(col(CommandRow.id) == sa.bindparam("command_id"))


@dataclass(slots=True)
class Draft:
    """A command to store: what `accept` writes of a new command row. A plain object: making a CommandRow costs about
    as much CPU as the insert, and it was made on the event loop for every command."""

    id: str
    scope: str
    kind: CommandKind
    payload: dict[str, Any]
    idempotency_key: str | None = None
    transaction_id: str | None = None
    mailbox_id: int | None = None
    item_id: str | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Accepted:
    """The stored command for a request: the draft, stored now, or the command an earlier request with the same key
    stored; `new` is False when that one is to be replayed, not carried out."""

    row: Draft | CommandRow
    new: bool


@dataclass(frozen=True, slots=True)
class Addressed:
    """The mailbox a command names, as the relay reads it for every command."""

    id: int
    address: str
    status: MailboxStatus
    status_reason: str | None
    source: str
    time_zone: str | None


def addressed(session: Session, address: str) -> Addressed | None:
    """The mailbox with this address, whatever its case."""
    # Plain columns from a statement built once, not an ORM object: this runs for every command.
    row = session.connection().execute(_ADDRESSED, {"address": address.lower()}).first()
    return None if row is None else Addressed(*row)


_MAILBOXES = MailboxRow.__table__  # type: ignore[attr-defined]
_ADDRESSED = sa.select(
    _MAILBOXES.c.id,
    _MAILBOXES.c.address,
    _MAILBOXES.c.status,
    _MAILBOXES.c.status_reason,
    _MAILBOXES.c.source,
    _MAILBOXES.c.time_zone,
).where(_MAILBOXES.c.address == sa.bindparam("address"))


class KeyReused(Exception):
    """The idempotency key was used before for a different request."""


def accept(session: Session, draft: Draft, owner: str, now: datetime) -> Accepted:
    """Store `draft` as `sending`, or return the command an earlier request with the same key stored.

    A failed command that may be retried (Exchange was throttling or away) is taken up again by the retry.
    """
    # A Core INSERT with the row as parameters: one cached statement, no ORM object (this runs per command). It
    # also finds out whether the key is new (the usual case: one statement); a concurrent request with the same key
    # waits for this transaction, finds the key taken and replays this command.
    connection = session.connection()
    values = {
        "id": draft.id,
        "mailbox_id": draft.mailbox_id,
        "scope": draft.scope,
        "kind": draft.kind,
        "idempotency_key": draft.idempotency_key,
        "payload": draft.payload,
        "status": CommandStatus.SENDING,
        "transaction_id": draft.transaction_id,
        "owner": owner,
        "item_id": draft.item_id,
        "attempts": draft.attempts,
        "created_at": now,
        "updated_at": now,
    }
    while connection.execute(_insert(connection.dialect.name), values).first() is None:
        earlier = session.exec(
            select(CommandRow)
            .where(CommandRow.scope == draft.scope, CommandRow.idempotency_key == draft.idempotency_key)
            .with_for_update()
        ).first()
        if earlier is None:
            continue  # pruned since the insert found it: the key is free again
        # The request as asked decides, not what the bridge derived from it (the zone then in force, the state's
        # planned times): a retry of the same request is the same command.
        if earlier.kind != draft.kind or _asked(earlier.payload) != _asked(draft.payload):
            raise KeyReused(draft.idempotency_key)
        if earlier.status == CommandStatus.FAILED and earlier.http_status == 503:
            _restart(earlier, owner, now)
            return Accepted(earlier, new=True)
        return Accepted(earlier, new=False)
    return Accepted(draft, new=True)


@functools.cache
def _insert(dialect: str) -> sa.Executable:
    """The insert of a command, skipped when its key is taken (commands without a key never conflict); it returns
    the id it stored, if any (the row count psycopg gives for it is -1)."""
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = insert(CommandRow).on_conflict_do_nothing(index_elements=["scope", "idempotency_key"])
    return statement.returning(col(CommandRow.id))


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
    needed_until: datetime | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "http_status": http_status,
        "result": result,
        "error": error,
        "finished_at": now,
        "updated_at": now,
        "needed_until": needed_until,
    }
    if item_id is not None:
        values["item_id"] = item_id
    if change_key is not None:
        values["change_key"] = change_key
    session.connection().execute(_FINISH, {**values, "command_id": command_id})


def needed_until(kind: CommandKind, payload: Mapping[str, Any]) -> datetime | None:
    """Until when a create or state command that went through names what it made: the appointment's end, or the
    day after its series' last day (None: any other command, which names nothing)."""
    if kind == CommandKind.STATE:
        made = payload["plan"]
    elif kind == CommandKind.CREATE:
        made = payload.get("resolved", payload["request"])  # a command stored before zones has only the request
    else:
        return None
    end = datetime.fromisoformat(made["end"])
    end = end.astimezone(UTC) if end.tzinfo else end.replace(tzinfo=UTC)  # the oldest requests were all UTC
    until = (made.get("recurrence") or {}).get("until")
    if until:
        end = max(end, datetime.combine(date.fromisoformat(until) + timedelta(days=1), time(), tzinfo=UTC))
    return end


def extend_need(session: Session, command_id: str, until: datetime) -> None:
    """An update moved the appointment command `command_id` made (if it made one) to end at `until`: its id must
    name it that long."""
    session.execute(
        sa.update(CommandRow)
        .where(col(CommandRow.id) == command_id, col(CommandRow.needed_until) < until)
        .values(needed_until=until)
    )


def prune_commands(session: Session, before: datetime, *, batch: int) -> int:
    """Delete up to `batch` commands that finished before `before`, oldest first, in the caller's transaction; how
    many went.

    A command still `sending` stays (it is finished after a crash), and so do the rows something still asks for:
    a create or state command while the appointment it made is not over before `before` (its id names it), and
    the newest current-state command of each mailbox (the next one replaces its appointment). With the row go its
    idempotency key (a request repeating it is a new command) and its answer (`GET /api/v1/commands/{id}`: 404).
    Batches keep each transaction short, as for changes (bridge/store/retention.py).
    """
    later = sa.alias(CommandRow.__table__, "later")  # type: ignore[attr-defined]
    newer_state = (
        sa.select(later.c.id)
        .where(
            later.c.mailbox_id == col(CommandRow.mailbox_id),
            later.c.kind == CommandKind.STATE,
            later.c.status == CommandStatus.DONE,
            later.c.finished_at > col(CommandRow.finished_at),
        )
        .exists()
    )
    old = sa.and_(
        col(CommandRow.status) != CommandStatus.SENDING,
        col(CommandRow.finished_at) < before,
        sa.or_(col(CommandRow.needed_until).is_(None), col(CommandRow.needed_until) < before),
        sa.or_(col(CommandRow.kind) != CommandKind.STATE, col(CommandRow.status) != CommandStatus.DONE, newer_state),
    )
    ids = list(
        session.execute(
            sa.select(col(CommandRow.id)).where(old).order_by(col(CommandRow.finished_at)).limit(batch)
        ).scalars()
    )
    if ids:
        session.execute(sa.delete(CommandRow).where(col(CommandRow.id).in_(ids)))
    return len(ids)


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
    # Plain rows of the columns needed, from a statement built once: this runs in every sync commit.
    rows = session.connection().execute(_RELAY_WRITES, {"mailbox_id": mailbox_id, "since": now - ECHO_MEMORY})
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


_COMMANDS = CommandRow.__table__  # type: ignore[attr-defined]
_RELAY_WRITES = (
    sa.select(
        _COMMANDS.c.id,
        _COMMANDS.c.kind,
        _COMMANDS.c.status,
        _COMMANDS.c.transaction_id,
        _COMMANDS.c.item_id,
        _COMMANDS.c.change_key,
        _COMMANDS.c.finished_at,
        _COMMANDS.c.payload,
    )
    .where(
        _COMMANDS.c.mailbox_id == sa.bindparam("mailbox_id"),
        _COMMANDS.c.updated_at >= sa.bindparam("since"),
        _COMMANDS.c.status.in_([CommandStatus.SENDING, CommandStatus.DONE]),
    )
    .order_by(sa.nulls_first(_COMMANDS.c.finished_at.asc()))
)


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
