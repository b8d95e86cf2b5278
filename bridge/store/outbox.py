"""The outbox: changes for the workforce system, written in the sync engine's transaction and read by
delivery and the pull feed. The change object's shape is defined here only (docs/workforce-webhook.md).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.domain import ChangeType, PresenceEntry, iso_utc
from bridge.store.db import execute_rows, lock_outbox, settle_outbox
from bridge.store.models import OutboxRow, driver_values, now
from bridge.zones import UTC_ZONE, all_day_date


class OutboxMailbox(Protocol):
    """What `add_changes` needs of a mailbox: a `MailboxRow`, or the plain values the sync commit reads."""

    id: int | None
    address: str
    workforce_id: str | None
    time_zone: str | None
    next_sequence: int


@dataclass(frozen=True, slots=True)
class QueuedChange:
    """A change `add_changes` put in the outbox."""

    change_id: str
    sequence: int
    change_type: ChangeType
    payload: dict[str, Any]


def add_changes(
    session: Session,
    mailbox: OutboxMailbox,
    changes: Sequence[tuple[ChangeType, PresenceEntry]],
    occurred_at: datetime,
    modified_at: Mapping[str, datetime] | None = None,
) -> list[QueuedChange]:
    """Append `changes` for `mailbox`, numbered from its next sequence number, in the caller's transaction;
    `mailbox.next_sequence` moves past them (the caller writes it with the mailbox row).

    `modified_at` gives, by item id, when Exchange last changed the appointments the changes stem from.
    """
    return add_changes_many(session, [(mailbox, changes, modified_at or {})], occurred_at)[0]


# What `add_changes_many` appends for one mailbox: the mailbox, its changes, and `modified_at` (`add_changes`).
MailboxChanges = tuple[OutboxMailbox, Sequence[tuple[ChangeType, PresenceEntry]], Mapping[str, datetime]]


def add_changes_many(
    session: Session, appends: Sequence[MailboxChanges], occurred_at: datetime
) -> list[list[QueuedChange]]:
    """`add_changes` for several mailboxes (a group of sync commits), every row in one executemany; each mailbox's
    changes are numbered from its own next sequence number. Returns each mailbox's queued changes, in order."""
    count = sum(len(changes) for _, changes, _ in appends)
    if not count:
        return [[] for _ in appends]
    values = driver_values(session.get_bind().dialect)
    created = values.timestamp(now())
    occurred = iso_utc(occurred_at)  # once for all the changes
    ids = iter(change_ids(count))  # in one go: in time order across the group too
    queued: list[list[QueuedChange]] = []
    rows = []
    for mailbox, changes, modified in appends:
        mailbox_id = mailbox.id
        assert mailbox_id is not None
        sequence = mailbox.next_sequence
        mine = []
        for (change_type, entry), change_id in zip(changes, ids, strict=False):
            payload = change_payload(change_id, change_type, sequence, occurred, mailbox, entry)
            mine.append(QueuedChange(change_id, sequence, change_type, payload))
            source_modified = modified.get(entry.item_id)
            rows.append(
                {
                    "change_id": change_id,
                    "mailbox_id": mailbox_id,
                    "sequence": sequence,
                    "change_type": change_type.value,
                    "payload": values.json(payload),
                    "created_at": created,
                    "source_modified_at": None if source_modified is None else values.timestamp(source_modified),
                    "attempts": 0,
                    "next_attempt_at": created,
                }
            )
            sequence += 1
        queued.append(mine)
        mailbox.next_sequence = sequence
    # One INSERT executed with every row as parameters, handed to the driver as they are: ORM objects cost 69 % of
    # a sync commit's time to build and flush (issue 13's profile, docs/storage.md), SQLAlchemy's processing of
    # each row's values most of what was left.
    # Shared with every other writer (none waits for another); a feed reader waits for this transaction to end
    # (`changes_after`). Taken only now, with the rows built, so that a reader waits as little as it can.
    lock_outbox(session)
    execute_rows(session, _INSERT, rows)
    return queued


_INSERT = sa.insert(OutboxRow.__table__)  # type: ignore[attr-defined]


def change_ids(count: int) -> list[str]:
    """`count` new change ids: UUIDs of version 7 (RFC 9562), whose first 48 bits are the time in milliseconds.

    Time-ordered rather than random (version 4): each id then goes at the end of the outbox's unique index instead
    of into a random page of it, and a random page each was half of what a sync commit wrote to SQLite's WAL.
    """
    milliseconds = time.time_ns() // 1_000_000
    random = os.urandom(10 * count)
    ids = []
    for start in range(0, 10 * count, 10):
        bits = int.from_bytes(random[start : start + 10])  # 12 bits for rand_a, 62 of the rest for rand_b
        value = milliseconds << 80 | 7 << 76 | (bits >> 68) << 64 | 2 << 62 | bits & (1 << 62) - 1
        ids.append(str(uuid.UUID(int=value)))
    return ids


def change_payload(
    change_id: str,
    change_type: ChangeType,
    sequence: int,
    occurred_at: str,
    mailbox: OutboxMailbox,
    entry: PresenceEntry,
) -> dict[str, Any]:
    """The change object (docs/workforce-webhook.md); `occurred_at` as `iso_utc` writes it."""
    return {
        "id": change_id,
        "type": change_type.value,
        "sequence": sequence,
        "occurred_at": occurred_at,
        "mailbox": mailbox.address,
        "workforce_id": mailbox.workforce_id,
        # The person's zone (null until the bridge has read it, within a minute of adding the mailbox).
        "time_zone": mailbox.time_zone,
        "appointment": appointment_json(entry, mailbox.time_zone or UTC_ZONE),
    }


def appointment_json(entry: PresenceEntry, zone: str) -> dict[str, Any]:
    """An appointment as the workforce system sees it, in the webhook, the feed and the REST API alike.

    Instants stay UTC; an all-day appointment also carries the person's days it covers (`zone`), end exclusive.
    """
    shown: dict[str, Any] = {
        "id": entry.item_id,
        "template": entry.template,
        "free_busy": entry.free_busy.value,
        "start": iso_utc(entry.start),
        "end": iso_utc(entry.end),
        "all_day": entry.all_day,
    }
    if entry.all_day:
        shown["start_date"] = all_day_date(entry.start, zone).isoformat()
        shown["end_date"] = all_day_date(entry.end, zone).isoformat()
    if entry.subject is not None:
        shown["subject"] = entry.subject
    return shown


def changes_after(session: Session, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Changes with a feed cursor above `after`, oldest first, and the cursor to ask from next.

    Every change with a cursor below the highest returned is committed by then (`settle_outbox`), so a reader that
    moves on to `next_after` misses none; a mailbox's changes are in its sequence order, since its commits queue on
    its row and each takes its ids after the one before committed.
    """
    settle_outbox(session)
    # Plain rows of the two columns sent: writers wait for this transaction, so it builds no ORM objects.
    rows = (
        session.connection()
        .execute(
            sa.select(col(OutboxRow.id), col(OutboxRow.payload))
            .where(col(OutboxRow.id) > after)
            .order_by(col(OutboxRow.id))
            .limit(limit)
        )
        .all()
    )
    cursor = int(rows[-1].id) if rows else after
    return [row.payload for row in rows], cursor


@dataclass(frozen=True, slots=True)
class SentChange:
    """A change the workforce system was sent (or is still to be sent) for one appointment."""

    sequence: int
    change_type: ChangeType
    created_at: datetime
    delivered_at: datetime | None
    attempts: int
    last_error: str | None
    appointment: dict[str, Any]  # as the webhook and the feed carry it


def changes_for_item(session: Session, mailbox_id: int, item_id: str, limit: int) -> list[SentChange]:
    """The newest `limit` changes emitted for one appointment of a mailbox, oldest first."""
    table = OutboxRow.__table__  # type: ignore[attr-defined]
    # The item id lives only in the payload; a mailbox's changes are few enough to filter by it (JSON on both
    # backends: json_extract on SQLite, ->> on PostgreSQL).
    query = (
        select(OutboxRow)
        .where(col(OutboxRow.mailbox_id) == mailbox_id, table.c.payload["appointment"]["id"].as_string() == item_id)
        .order_by(col(OutboxRow.sequence).desc())
        .limit(limit)
    )
    rows = session.exec(query).all()
    return [
        SentChange(
            row.sequence,
            row.change_type,
            row.created_at,
            row.delivered_at,
            row.attempts,
            row.last_error,
            dict(row.payload.get("appointment", {})),
        )
        for row in reversed(rows)
    ]
