"""What the administrator has been told (the problems announced) and the messages still to send them.

Comparing and recording happen in one transaction under one lock, so that instances sharing a PostgreSQL
database announce each change once; a message is then claimed for a while before it is sent, so that only one
instance sends it, and another takes it over if that one dies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.store.db import serialise
from bridge.store.models import NoticeMessageRow, NoticeRow

_KEEP_SENT = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Announced:
    state: str
    text: str


@dataclass(frozen=True, slots=True)
class NoticeMessage:
    id: int
    subject: str
    text: str
    payload: dict[str, Any]
    pending: tuple[str, ...]
    attempts: int


def lock_announcements(session: Session) -> dict[str, Announced]:
    """The problems announced and not yet announced as over, with a lock held until the transaction ends."""
    serialise(session, "notice")
    return {row.key: Announced(row.state, row.text) for row in session.exec(select(NoticeRow)).all()}


def record_announcement(
    session: Session,
    announced: Mapping[str, Announced],
    message: tuple[str, str, dict[str, Any]],
    channels: Sequence[str],
    now: datetime,
) -> None:
    """`announced` is what the administrator knows from now on; `message` (subject, text, payload) tells them."""
    rows = {row.key: row for row in session.exec(select(NoticeRow)).all()}
    for key, gone in rows.items():
        if key not in announced:
            session.delete(gone)
    for key, notice in announced.items():
        row = rows.get(key)
        if row is None:
            session.add(NoticeRow(key=key, state=notice.state, text=notice.text, announced_at=now))
        elif (row.state, row.text) != (notice.state, notice.text):
            row.state, row.text, row.announced_at = notice.state, notice.text, now
    subject, text, payload = message
    session.add(
        NoticeMessageRow(
            subject=subject, text=text, payload=payload, pending=list(channels), created_at=now, next_attempt_at=now
        )
    )
    session.execute(
        sa.delete(NoticeMessageRow).where(
            col(NoticeMessageRow.sent_at).is_not(None), col(NoticeMessageRow.sent_at) < now - _KEEP_SENT
        )
    )


def claim_message(session: Session, now: datetime, lease: timedelta) -> NoticeMessage | None:
    """The oldest message due to be sent, held for `lease` so that no other instance sends it meanwhile."""
    query = (
        select(NoticeMessageRow)
        .where(col(NoticeMessageRow.sent_at).is_(None), col(NoticeMessageRow.next_attempt_at) <= now)
        .order_by(col(NoticeMessageRow.id))
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    row = session.exec(query).first()
    if row is None:
        return None
    assert row.id is not None
    row.next_attempt_at = now + lease
    row.attempts += 1
    return NoticeMessage(row.id, row.subject, row.text, dict(row.payload), tuple(row.pending), row.attempts)


def message_done(
    session: Session, message_id: int, pending: Sequence[str], now: datetime, retry_at: datetime, error: str | None
) -> None:
    """Record what is still `pending` of a message after an attempt; sent when nothing is."""
    row = session.get(NoticeMessageRow, message_id, with_for_update=True)
    if row is None:
        return
    row.pending = list(pending)
    row.last_error = error
    if pending:
        row.next_attempt_at = retry_at
    else:
        row.sent_at = now
