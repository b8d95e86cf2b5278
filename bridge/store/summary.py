"""How the bridge stands, read from the database: what `presence-bridge status`, the admin status route, the
scrape-time gauges of `/metrics` and `/readyz` all show, so the four never disagree.

Every query is bounded whatever the history: counts are grouped by a handful of values (sources, statuses),
the backlog reads only undelivered changes (indexed), and the detail lists are capped at `details` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.store.mapping_state import HeldMapping, held_mapping
from bridge.store.models import (
    MailboxRow,
    MailboxStatus,
    OutboxRow,
    SourceRow,
    SourceStatus,
    SubscriptionRow,
    UTCDateTime,
)
from bridge.store.progress import SyncProgress, sync_progress


@dataclass(frozen=True, slots=True)
class SourceState:
    name: str
    kind: str
    status: str
    # What Exchange or the network said: for administrators only (it may name hosts and accounts).
    reason: str | None
    changed_at: datetime | None  # when the current status began; None until the first change of status
    updated_at: datetime

    @property
    def since(self) -> datetime:
        """Since when the source is in its state, as far as known: rows from before `changed_at` was kept (and
        sources that never changed state) have only `updated_at`."""
        return self.changed_at or self.updated_at


@dataclass(frozen=True, slots=True)
class MailboxIssue:
    """A mailbox that does not sync (disabled, paused) or syncs with something to say (an active one's note)."""

    address: str
    source: str
    status: str
    reason: str | None
    since: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionDue:
    mailbox: str
    source: str
    expires_at: datetime
    reauthorize_requested: bool


@dataclass(frozen=True, slots=True)
class DeliveryError:
    mailbox: str
    attempts: int
    error: str
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Backlog:
    undelivered: int
    oldest: datetime | None
    failing: int  # undelivered changes whose last attempt failed

    def oldest_age_s(self, now: datetime) -> float:
        return 0.0 if self.oldest is None else max((now - self.oldest).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class Summary:
    at: datetime
    sources: tuple[SourceState, ...]
    mailboxes: dict[tuple[str, str], int]  # (source, status) → count
    subscriptions: dict[tuple[str, str], int]  # (source, state) → count; states in `subscription_state`
    soonest_expiry: dict[str, datetime]  # source → the earliest expiry among its subscriptions
    backlog: Backlog
    progress: SyncProgress | None  # mailboxes waiting for a sync (a first sync, a window roll), or None
    attention: tuple[MailboxIssue, ...] = ()
    expiring: tuple[SubscriptionDue, ...] = ()
    delivery_errors: tuple[DeliveryError, ...] = ()
    held_mapping: HeldMapping | None = None  # a template mapping change waiting for confirmation
    # Instance name → (mailboxes it holds a sync lease on, mailboxes it holds a delivery lease on), leases not expired.
    instances: dict[str, tuple[int, int]] = field(default_factory=dict)
    # (source, IANA zone or None: not read yet) → mailboxes; as many keys as zones people are in.
    time_zones: dict[tuple[str, str | None], int] = field(default_factory=dict)

    @property
    def working(self) -> bool:
        """Whether the bridge can do its job at all: at least one source works."""
        return any(source.status == SourceStatus.OK for source in self.sources)

    @property
    def degraded(self) -> bool:
        counted = self.mailboxes_by_status()
        failing = not all(source.status == SourceStatus.OK for source in self.sources)
        return failing or bool(counted[MailboxStatus.DISABLED] or counted[MailboxStatus.PAUSED])

    def mailboxes_by_status(self) -> dict[str, int]:
        """Every status, with its mailboxes of all sources."""
        counted = dict.fromkeys((status.value for status in MailboxStatus), 0)
        for (_, status), count in self.mailboxes.items():
            counted[status] += count
        return counted


SUBSCRIPTION_STATES = ("active", "reauthorize_requested", "expired")


def summarise(session: Session, now: datetime, *, details: int = 0) -> Summary:
    """The counts, and with `details` > 0 up to that many rows of each list an administrator reads."""
    sources = tuple(
        SourceState(row.name, row.kind.value, row.status.value, row.status_reason, row.status_since, row.updated_at)
        for row in session.exec(select(SourceRow).order_by(col(SourceRow.name))).all()
    )
    mailboxes = {
        (source, MailboxStatus(status).value): count
        for source, status, count in session.execute(
            sa.select(col(MailboxRow.source), col(MailboxRow.status), sa.func.count()).group_by(
                col(MailboxRow.source), col(MailboxRow.status)
            )
        ).all()
    }
    state = sa.case(
        (col(SubscriptionRow.expires_at) <= now, "expired"),
        (col(SubscriptionRow.reauthorize_requested_at).is_not(None), "reauthorize_requested"),
        else_="active",
    )
    subscriptions: dict[tuple[str, str], int] = {}
    soonest: dict[str, datetime] = {}
    for source, name, count, earliest in session.execute(
        sa.select(
            col(SubscriptionRow.source), state, sa.func.count(), sa.func.min(col(SubscriptionRow.expires_at))
        ).group_by(col(SubscriptionRow.source), state)
    ).all():
        subscriptions[(source, name)] = count
        at = _aware(session, earliest)
        if at is not None:
            soonest[source] = min(soonest.get(source, at), at)
    undelivered = col(OutboxRow.delivered_at).is_(None)
    count, oldest, failing = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.min(col(OutboxRow.created_at)),
            sa.func.count(col(OutboxRow.last_error)),
        ).where(undelivered)
    ).one()
    backlog = Backlog(count, _aware(session, oldest), failing)
    progress = sync_progress(session, now)
    summary = Summary(now, sources, mailboxes, subscriptions, soonest, backlog, progress)
    if details <= 0:
        return summary
    return Summary(
        now,
        sources,
        mailboxes,
        subscriptions,
        soonest,
        backlog,
        progress,
        attention=_attention(session, details),
        expiring=_expiring(session, details),
        delivery_errors=_delivery_errors(session, details),
        held_mapping=held_mapping(session),
        instances=_instances(session, now),
        time_zones=_time_zones(session),
    )


def _instances(session: Session, now: datetime) -> dict[str, tuple[int, int]]:
    """Which instances hold work now (docs/running.md "Several instances"), and how much."""
    found: dict[str, tuple[int, int]] = {}
    for owner, until, column in (
        (MailboxRow.lease_owner, MailboxRow.lease_expires_at, 0),
        (MailboxRow.delivery_owner, MailboxRow.delivery_lease_until, 1),
    ):
        rows = session.execute(
            sa.select(col(owner), sa.func.count()).where(col(until) > now).group_by(col(owner))
        ).all()
        for name, count in rows:
            held = list(found.get(name, (0, 0)))
            held[column] = count
            found[name] = (held[0], held[1])
    return dict(sorted(found.items()))


def _time_zones(session: Session) -> dict[tuple[str, str | None], int]:
    columns = (col(MailboxRow.source), col(MailboxRow.time_zone))
    return {
        (source, zone): count
        for source, zone, count in session.execute(sa.select(*columns, sa.func.count()).group_by(*columns)).all()
    }


def _aware(session: Session, value: datetime | None) -> datetime | None:
    """An aggregate's timestamp as aware UTC: aggregates bypass the column type that does this for rows."""
    return UTCDateTime().process_result_value(value, session.get_bind().dialect)


def _attention(session: Session, limit: int) -> tuple[MailboxIssue, ...]:
    rows = session.exec(
        select(MailboxRow)
        .where(sa.or_(col(MailboxRow.status) != MailboxStatus.ACTIVE, col(MailboxRow.status_reason).is_not(None)))
        .order_by(col(MailboxRow.updated_at).desc())
        .limit(limit)
    ).all()
    return tuple(MailboxIssue(r.address, r.source, r.status.value, r.status_reason, r.updated_at) for r in rows)


def _expiring(session: Session, limit: int) -> tuple[SubscriptionDue, ...]:
    rows = session.execute(
        sa.select(SubscriptionRow, col(MailboxRow.address))
        .join(MailboxRow, col(MailboxRow.id) == col(SubscriptionRow.mailbox_id))
        .order_by(col(SubscriptionRow.expires_at))
        .limit(limit)
    ).all()
    return tuple(
        SubscriptionDue(address, row.source, row.expires_at, row.reauthorize_requested_at is not None)
        for row, address in rows
    )


def _delivery_errors(session: Session, limit: int) -> tuple[DeliveryError, ...]:
    rows = session.execute(
        sa.select(OutboxRow, col(MailboxRow.address))
        .join(MailboxRow, col(MailboxRow.id) == col(OutboxRow.mailbox_id))
        .where(col(OutboxRow.delivered_at).is_(None), col(OutboxRow.last_error).is_not(None))
        # Latest failure first. Not by id: PostgreSQL then walks the primary key through the whole delivered
        # history looking for ten failures (70 ms at 100,000 changes, bench/scrape.py) instead of the index of
        # the undelivered ones.
        .order_by(col(OutboxRow.next_attempt_at).desc(), col(OutboxRow.id))
        .limit(limit)
    ).all()
    return tuple(
        DeliveryError(address, row.attempts, row.last_error or "", row.next_attempt_at) for row, address in rows
    )
