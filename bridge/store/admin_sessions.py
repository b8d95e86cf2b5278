"""The admin page's sessions in the database, so that every instance behind a load balancer knows them.

A session is found by the SHA-256 of its cookie's secret; it ends when signed out or when it was not used for
the idle timeout. Expired rows are deleted whenever someone signs in, so the table stays as small as the number
of administrators.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from bridge.store.models import AdminSessionRow


def session_id(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def open_session(session: Session, secret: str, token_name: str, now: datetime, idle: timedelta) -> None:
    session.execute(sa.delete(AdminSessionRow).where(col(AdminSessionRow.seen_at) < now - idle))
    session.add(AdminSessionRow(id=session_id(secret), token_name=token_name, created_at=now, seen_at=now))


@dataclass(frozen=True, slots=True)
class AdminSession:
    token_name: str
    notice: str | None  # what the last form did, taken out of the session to be shown once


def resume_session(
    session: Session, secret: str, now: datetime, idle: timedelta, *, take_notice: bool
) -> AdminSession | None:
    """The session the secret opened, seen now; None when there is none or it was idle too long (then it is gone)."""
    row = session.get(AdminSessionRow, session_id(secret))
    if row is None:
        return None
    if row.seen_at < now - idle:
        session.delete(row)
        return None
    row.seen_at = now
    notice = row.notice if take_notice else None
    if take_notice:
        row.notice = None
    return AdminSession(row.token_name, notice)


def close_session(session: Session, secret: str) -> None:
    session.execute(sa.delete(AdminSessionRow).where(col(AdminSessionRow.id) == session_id(secret)))


def set_notice(session: Session, secret: str, text: str) -> None:
    session.execute(sa.update(AdminSessionRow).where(col(AdminSessionRow.id) == session_id(secret)).values(notice=text))
