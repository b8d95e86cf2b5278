"""Which mailbox needs a sync, and which instance is doing it: dirty generations and leases.

A notification only says "mailbox X changed" (DESIGN §1): marking bumps the mailbox's dirty generation. A
worker claims a dirty mailbox with a lease, reads it, and on commit records the generation it covered; a
notification that arrives meanwhile bumps the generation again, so the mailbox stays dirty and nothing is lost.
Several instances may share a PostgreSQL database: claims skip rows another transaction holds
(`FOR UPDATE SKIP LOCKED`) and leases expire, so a dead instance's mailboxes are taken over.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.store.db import IN_LIST_MOST, execute_rows, in_chunks
from bridge.store.health import source_failing
from bridge.store.models import (
    CommandRow,
    CommandStatus,
    MailboxMarkRow,
    MailboxRow,
    MailboxStatus,
    SubscriptionRow,
    UTCDateTime,
    driver_values,
)
from bridge.store.models import now as models_now

# How a mailbox row is locked to lease or commit it: FOR NO KEY UPDATE, not FOR UPDATE. Inserting a row that
# references the mailbox (a relay command, a mirror row) takes FOR KEY SHARE on it, which FOR UPDATE blocks and
# FOR NO KEY UPDATE does not: with FOR UPDATE a workforce command waited for whole sync commits (docs/storage.md).
ROW_LOCK = {"key_share": True}


@dataclass(frozen=True, slots=True)
class Claim:
    """A mailbox this instance may sync until `lease_expires_at`, and the dirty generation it covers."""

    mailbox_id: int
    address: str
    source: str
    generation: int
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class KnownSubscription:
    mailbox_id: int
    client_state: str


def mark_dirty(session: Session, mailbox_ids: Collection[int], now: datetime, *, notified: bool = False) -> int:
    """Record that these mailboxes changed; returns how many were marked.

    `notified`: the mark comes from Exchange saying the mailbox changed (a notification, a stream event, a
    lifecycle resync), so a person is waiting for it; such mailboxes are claimed before maintenance.

    On PostgreSQL a mark never waits for a row another transaction holds (a sync commit holds its mailbox's from
    plan to commit, and the webhook's answer waited for it): such a mailbox's mark goes beside it (`MailboxMarkRow`),
    which the next claim folds in. The mailbox then counts as dirty a little later, never as clean too early: the
    commit holding the row cannot have covered a change notified after it locked the row.
    """
    if not mailbox_ids:
        return 0
    ids = sorted(mailbox_ids)
    if len(ids) > IN_LIST_MOST:  # a window roll of 100,000 mailboxes marked them all in one and failed
        return sum(mark_dirty(session, chunk, now, notified=notified) for chunk in in_chunks(ids))
    if session.get_bind().dialect.name != "postgresql":
        return _bump(session, ids, now, notified=notified)
    marked = set(session.connection().execute(_FREE_ROWS, {"ids": ids}).scalars())
    held = [mailbox_id for mailbox_id in ids if mailbox_id not in marked]
    if marked:
        _bump(session, sorted(marked), now, notified=notified)
    if held:
        # Only mailboxes that exist (a removed one has nothing to mark); reading them waits for no row lock.
        beside = session.connection().execute(_MARK_BESIDE, {"ids": held, "notified": notified, "now": now})
        return len(marked) + len(beside.all())
    return len(marked)


def _bump(session: Session, ids: list[int], now: datetime, *, notified: bool) -> int:
    result = session.connection().execute(_mark_statement(notified), {"ids": ids, "now": now})
    return int(result.rowcount)


# The statements every mailbox's sync runs are built once, with their values as parameters: building one costs
# ten times what executing it does (about 200 against 20 µs on SQLite), which was most of a sync commit's CPU.
_MAILBOX = MailboxRow.__table__  # type: ignore[attr-defined]
_MARK = MailboxMarkRow.__table__  # type: ignore[attr-defined]
_NOW = sa.bindparam("now", type_=UTCDateTime())
_IDS: sa.BindParameter[list[int]] = sa.bindparam("ids", expanding=True)
# Rows another transaction holds are passed over; the ones taken are held as a commit holds them (ROW_LOCK).
_FREE_ROWS = sa.select(_MAILBOX.c.id).where(_MAILBOX.c.id.in_(_IDS)).with_for_update(skip_locked=True, key_share=True)
_MARK_BESIDE = (
    sa.insert(_MARK)
    .from_select(
        ["mailbox_id", "notified", "marked_at"],
        sa.select(_MAILBOX.c.id, sa.bindparam("notified", type_=sa.Boolean()), _NOW).where(_MAILBOX.c.id.in_(_IDS)),
    )
    .returning(_MARK.c.id)
)


@functools.cache
def _mark_statement(notified: bool) -> sa.Update:
    values: dict[str, object] = {
        "dirty_generation": _MAILBOX.c.dirty_generation + 1,
        "dirty_at": sa.func.coalesce(_MAILBOX.c.dirty_at, _NOW),
    }
    if notified:
        values["notified_at"] = sa.func.coalesce(_MAILBOX.c.notified_at, _NOW)
    return sa.update(_MAILBOX).where(_MAILBOX.c.id.in_(sa.bindparam("ids", expanding=True))).values(**values)


_PENDING_MARKS = (
    sa.select(_MARK.c.id, _MARK.c.mailbox_id, _MARK.c.notified, _MARK.c.marked_at)
    .join(_MAILBOX, _MAILBOX.c.id == _MARK.c.mailbox_id)
    .with_for_update(of=_MAILBOX, skip_locked=True, key_share=True)
)


def fold_marks(session: Session) -> None:
    """Fold the marks kept beside their mailboxes (`mark_dirty`) into those whose rows are free now; the rest wait
    for a later claim. PostgreSQL only: elsewhere a mark never waits, so none is kept beside."""
    if session.get_bind().dialect.name != "postgresql":
        return
    rows = session.connection().execute(_PENDING_MARKS).all()
    if not rows:
        return
    firsts: dict[int, datetime] = {}
    notified: dict[int, datetime] = {}
    for row in rows:
        firsts[row.mailbox_id] = min(row.marked_at, firsts.get(row.mailbox_id, row.marked_at))
        if row.notified:
            notified[row.mailbox_id] = min(row.marked_at, notified.get(row.mailbox_id, row.marked_at))
    for mailbox_id, first in firsts.items():
        values: dict[str, object] = {
            "dirty_generation": MailboxRow.dirty_generation + 1,
            "dirty_at": sa.func.coalesce(MailboxRow.dirty_at, first),
        }
        if mailbox_id in notified:
            values["notified_at"] = sa.func.coalesce(MailboxRow.notified_at, notified[mailbox_id])
        session.execute(sa.update(MailboxRow).where(col(MailboxRow.id) == mailbox_id).values(**values))
    session.execute(sa.delete(MailboxMarkRow).where(col(MailboxMarkRow.id).in_([row.id for row in rows])))


def reconcile_due(mailbox_id: int, synced_at: datetime, interval: timedelta) -> datetime:
    """When the periodic reconcile reads this mailbox again: between half the interval and the whole of it.

    Mailboxes synced together (a first start, a window roll) would otherwise all be due together one interval
    later, a burst of reads every interval. The fraction is fixed per mailbox (Fibonacci hashing of its id:
    consecutive ids land evenly over the span), so each mailbox keeps its own period and the reads spread out.
    """
    fraction = ((mailbox_id * 0x9E3779B97F4A7C15) % 2**64) / 2**64
    return synced_at + interval * (0.5 + 0.5 * fraction)


def find_mailbox(session: Session, address: str, *, locked: bool = False) -> MailboxRow | None:
    """The mailbox with this address, whatever its case; `locked`: its row locked as `lock_mailbox` locks it."""
    query = select(MailboxRow).where(MailboxRow.address == address.lower())
    if locked:
        query = query.with_for_update(key_share=True).execution_options(populate_existing=True)
    return session.exec(query).first()


def mark_active_dirty(session: Session, now: datetime) -> int:
    """Mark every active mailbox: on start, since notifications sent while no instance listened are lost."""
    ids = session.exec(select(MailboxRow.id).where(MailboxRow.status == MailboxStatus.ACTIVE)).all()
    return mark_dirty(session, [mailbox_id for mailbox_id in ids if mailbox_id is not None], now)


def active_addresses(session: Session, source: str) -> list[str]:
    """The addresses of the active mailboxes a source serves (what its change watcher should watch)."""
    rows = session.exec(
        select(MailboxRow.address).where(MailboxRow.source == source, MailboxRow.status == MailboxStatus.ACTIVE)
    ).all()
    return sorted(rows)


def mailbox_ids(session: Session, addresses: Collection[str]) -> list[int]:
    rows = session.exec(
        select(MailboxRow.id).where(col(MailboxRow.address).in_(sorted({a.lower() for a in addresses})))
    ).all()
    return [mailbox_id for mailbox_id in rows if mailbox_id is not None]


def subscriptions(session: Session, ids: Collection[str]) -> dict[str, KnownSubscription]:
    """The subscriptions among `ids` that the bridge holds, with their mailbox and clientState."""
    rows = session.exec(select(SubscriptionRow).where(col(SubscriptionRow.id).in_(sorted(ids)))).all()
    return {row.id: KnownSubscription(row.mailbox_id, row.client_state) for row in rows}


def claim_dirty(
    session: Session,
    owner: str,
    now: datetime,
    *,
    lease: timedelta,
    settle: timedelta = timedelta(0),
    source: str | None = None,
    exclude: Collection[int] = (),
    notified_only: bool = False,
) -> Claim | None:
    """Lease the dirty mailbox to work next, or None when there is nothing to do (`claim_dirty_many`)."""
    claims = claim_dirty_many(
        session,
        owner,
        now,
        lease=lease,
        settle=settle,
        source=source,
        exclude=exclude,
        notified_only=notified_only,
        limit=1,
    )
    return claims[0] if claims else None


def claim_dirty_many(
    session: Session,
    owner: str,
    now: datetime,
    *,
    lease: timedelta,
    limit: int,
    settle: timedelta = timedelta(0),
    source: str | None = None,
    exclude: Collection[int] = (),
    notified_only: bool = False,
) -> list[Claim]:
    """Lease up to `limit` dirty mailboxes, those to work next first.

    Two lanes: mailboxes Exchange notified about come first, longest-notified first; then maintenance (window
    rolls, reconciles, first syncs, catching up after a start), longest-waiting first. With `notified_only` only
    the first lane is claimed (the sync keeps a slot for it, so a person's change never waits behind a roll).

    `settle` debounces bursts: a mailbox first marked less than `settle` ago is left alone for now, so a burst of
    notifications costs one read. `source` limits the claim to that source's mailboxes (each source is worked
    apart, so a failing one cannot hold up the others); `exclude` names mailboxes this instance is working on.
    One transaction claims them all: a claim each would cost a commit each on the sync's busiest path.
    """
    fold_marks(session)
    parameters = {
        "now": now,
        "settled": now - settle,
        "owner": owner,
        "source": source,
        "exclude": sorted(exclude),
        "limit": limit,
    }
    connection = session.connection()
    rows = list(connection.execute(_claim_query(by_source=source is not None, notified=True), parameters))
    if len(rows) < limit and not notified_only:
        parameters |= {"exclude": sorted({*exclude, *(row.id for row in rows)}), "limit": limit - len(rows)}
        rows += connection.execute(_claim_query(by_source=source is not None, notified=False), parameters)
    return _lease(session, rows, owner, now + lease)


@functools.cache
def _claim_query(*, by_source: bool, notified: bool) -> sa.Select[Any]:
    """One lane's claim. Each lane is its own statement, ordered as `ix_mailbox_dirty` is (notified_at, dirty_at,
    id, in each backend's own order of nulls: a dirty mailbox always has a `dirty_at`), so it reads the first
    rows of the index instead of sorting every dirty mailbox: one statement ordering notified first and
    nulls first sorted them all on each claim (105 ms with 100,000 dirty on PostgreSQL, a claim every few
    mailboxes: bench/scale_out.py)."""
    table = _MAILBOX
    return (
        sa.select(table.c.id, table.c.address, table.c.source, table.c.dirty_generation)
        .where(
            table.c.status == MailboxStatus.ACTIVE,
            table.c.source == sa.bindparam("source") if by_source else sa.true(),
            table.c.id.not_in(sa.bindparam("exclude", expanding=True)),
            table.c.notified_at.is_not(None) if notified else table.c.notified_at.is_(None),
            table.c.dirty_generation > table.c.synced_generation,
            sa.or_(table.c.dirty_at.is_(None), table.c.dirty_at <= sa.bindparam("settled")),
            _free(table),
        )
        .order_by(table.c.notified_at, table.c.dirty_at, table.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
        .with_for_update(skip_locked=True, key_share=True)
    )


def _free(table: sa.Table) -> sa.ColumnElement[bool]:
    """The mailbox's lease is free for `owner` at `now`."""
    return sa.or_(
        table.c.lease_expires_at.is_(None),
        table.c.lease_expires_at < _NOW,
        # The same instance restarted: what it held before it died is its own to take back at once.
        table.c.lease_owner == sa.bindparam("owner"),
    )


def claim_mailbox(session: Session, mailbox_id: int, owner: str, now: datetime, *, lease: timedelta) -> Claim | None:
    """Lease one mailbox whatever its dirty state (reconcile, window roll, remap); None if another holds it."""
    rows = session.connection().execute(_CLAIM_ONE, {"id": mailbox_id, "now": now, "owner": owner}).all()
    claims = _lease(session, rows, owner, now + lease)
    return claims[0] if claims else None


_CLAIM_ONE = (
    sa.select(_MAILBOX.c.id, _MAILBOX.c.address, _MAILBOX.c.source, _MAILBOX.c.dirty_generation)
    .where(_MAILBOX.c.id == sa.bindparam("id"), _MAILBOX.c.status == MailboxStatus.ACTIVE, _free(_MAILBOX))
    .with_for_update(skip_locked=True, key_share=True)
)


def _lease(session: Session, rows: Sequence[Any], owner: str, until: datetime) -> list[Claim]:
    if rows:
        session.connection().execute(_LEASE, {"ids": [row.id for row in rows], "owner": owner, "until": until})
    return [Claim(row.id, row.address, row.source, row.dirty_generation, until) for row in rows]


_LEASE = (
    sa.update(_MAILBOX)
    .where(_MAILBOX.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(lease_owner=sa.bindparam("owner"), lease_expires_at=sa.bindparam("until", type_=UTCDateTime()))
)


@dataclass(slots=True)
class LockedMailbox:
    """A mailbox row locked for a commit (`lock_mailbox`): what the commit checks, and what `add_changes` needs."""

    id: int | None
    address: str
    workforce_id: str | None
    time_zone: str | None
    next_sequence: int
    lease_owner: str | None
    mass_delete_approved: bool
    # Its source has a failure or hold that a success clears (`health.source_works`): read here, a statement of
    # its own only then, instead of an UPDATE in every commit that matches nothing while the source is well.
    source_failing: bool


def lock_mailbox(session: Session, mailbox_id: int) -> LockedMailbox | None:
    """Lock the mailbox's row for this transaction (FOR NO KEY UPDATE) and read what a commit needs of it."""
    return lock_mailboxes(session, [mailbox_id]).get(mailbox_id)


def lock_mailboxes(session: Session, mailbox_ids: Collection[int]) -> dict[int, LockedMailbox]:
    """`lock_mailbox` for several mailboxes in one statement, by id, of those that exist.

    The rows are locked in id order: two transactions locking overlapping groups (two instances' group commits)
    then never wait for each other crosswise, so they cannot deadlock.
    """
    rows = session.connection().execute(_LOCK, {"ids": sorted(mailbox_ids)})
    return {row.id: LockedMailbox(*row) for row in rows}


_LOCK = (
    sa.select(
        _MAILBOX.c.id,
        _MAILBOX.c.address,
        _MAILBOX.c.workforce_id,
        _MAILBOX.c.time_zone,
        _MAILBOX.c.next_sequence,
        _MAILBOX.c.lease_owner,
        _MAILBOX.c.mass_delete_approved,
        source_failing(_MAILBOX.c.source),
    )
    .where(_MAILBOX.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(_MAILBOX.c.id)
    .with_for_update(key_share=True)
)


def finish(
    session: Session,
    claim: Claim,
    owner: str,
    now: datetime,
    *,
    synced: bool,
    reconcile_interval: timedelta | None = None,
    next_sequence: int | None = None,
) -> bool:
    """Release the lease; with `synced`, record that the claim's generation is covered (and, given the
    `reconcile_interval`, when the mailbox is next due for a reconcile), and that a mass deletion an
    administrator approved has been applied. `next_sequence` is the mailbox's next outbox sequence number, when
    the caller is about to add changes (`add_changes`).

    One UPDATE, whose values are computed from the row as it stands (a mark arriving meanwhile is kept).
    Returns False when the lease was lost meanwhile (another instance took the mailbox over): the caller's
    transaction must then be rolled back, since its reading may be older than the new holder's.
    """
    if synced:
        finished = finish_synced(session, [(claim, next_sequence)], owner, now, reconcile_interval=reconcile_interval)
        return finished == 1
    values = {"mailbox_id": claim.mailbox_id, "owner": owner, "sequence": next_sequence}
    return bool(session.connection().execute(_RELEASE, values).rowcount)


def finish_synced(
    session: Session,
    claims: Sequence[tuple[Claim, int | None]],
    owner: str,
    now: datetime,
    *,
    reconcile_interval: timedelta | None,
) -> int:
    """`finish(synced=True)` for several claims, each with its `next_sequence`, in one executemany; returns how
    many of them were still this owner's (all of them, unless a lease was lost)."""
    values = driver_values(session.get_bind().dialect)
    at = values.timestamp(now)
    written = values.timestamp(models_now())
    rows = [
        {
            "mailbox_id": claim.mailbox_id,
            "owner": owner,
            "now": at,
            "generation": claim.generation,
            "due": None
            if reconcile_interval is None
            else values.timestamp(reconcile_due(claim.mailbox_id, now, reconcile_interval)),
            "sequence": sequence,
            "written": written,
        }
        for claim, sequence in claims
    ]
    return execute_rows(session, _FINISH_SYNCED, rows)


_GENERATION = sa.bindparam("generation", type_=sa.Integer())
# Constants as SQL, not parameters: `finish_synced` gives the driver only the rows' values (`execute_rows`).
_RELEASED = {
    "lease_owner": sa.null(),
    "lease_expires_at": sa.null(),
    "next_sequence": sa.func.coalesce(sa.bindparam("sequence", type_=sa.Integer()), _MAILBOX.c.next_sequence),
}
_MINE = sa.and_(_MAILBOX.c.id == sa.bindparam("mailbox_id"), _MAILBOX.c.lease_owner == sa.bindparam("owner"))
_RELEASE = sa.update(_MAILBOX).where(_MINE).values(**_RELEASED)
_COVERED = _MAILBOX.c.dirty_generation <= _GENERATION  # no mark came after the claim
_FINISH_SYNCED = (
    sa.update(_MAILBOX)
    .where(_MINE)
    .values(
        **_RELEASED,
        synced_generation=sa.case(
            (_MAILBOX.c.synced_generation > _GENERATION, _MAILBOX.c.synced_generation), else_=_GENERATION
        ),
        last_synced_at=_NOW,
        reconcile_due_at=sa.func.coalesce(sa.bindparam("due", type_=UTCDateTime()), _MAILBOX.c.reconcile_due_at),
        dirty_at=sa.case((_COVERED, sa.null()), else_=_MAILBOX.c.dirty_at),
        notified_at=sa.case((_COVERED, sa.null()), else_=_MAILBOX.c.notified_at),
        mass_delete_approved=sa.false(),
        # Given with the rows (`execute_rows` computes no default in Python), as the column's onupdate would.
        updated_at=sa.bindparam("written", type_=UTCDateTime()),
    )
)


def lease_holders(session: Session) -> set[str]:
    """The instances holding a sync or delivery lease, or a command they were sending when last seen."""
    held: sa.CompoundSelect[tuple[str]] = sa.union(
        sa.select(col(MailboxRow.lease_owner).label("owner")).where(col(MailboxRow.lease_owner).is_not(None)),
        sa.select(col(MailboxRow.delivery_owner)).where(col(MailboxRow.delivery_owner).is_not(None)),
        sa.select(col(CommandRow.owner)).where(
            col(CommandRow.status) == CommandStatus.SENDING, col(CommandRow.owner).is_not(None)
        ),
    )
    return {str(owner) for owner in session.execute(held).scalars()}


def release_gone(session: Session, gone: Collection[str], heir: str) -> None:
    """The work of instances known to be gone is free at once, not when their leases expire: their mailboxes
    may be claimed by any instance, and `heir` takes up the commands they were sending (`Relay.recover`)."""
    if not gone:
        return
    names = sorted(gone)
    session.execute(
        sa.update(MailboxRow)
        .where(col(MailboxRow.lease_owner).in_(names))
        .values(lease_owner=None, lease_expires_at=None)
    )
    session.execute(
        sa.update(MailboxRow)
        .where(col(MailboxRow.delivery_owner).in_(names))
        .values(delivery_owner=None, delivery_lease_until=None)
    )
    session.execute(
        sa.update(CommandRow)
        .where(col(CommandRow.status) == CommandStatus.SENDING, col(CommandRow.owner).in_(names))
        .values(owner=heir)
    )


class LifecycleEvent(enum.StrEnum):
    """Graph's lifecycle notifications (lifecycleEvent), and what each asks of the bridge."""

    REAUTHORIZATION_REQUIRED = "reauthorizationRequired"  # renew the subscription
    SUBSCRIPTION_REMOVED = "subscriptionRemoved"  # create it again, then resync
    MISSED = "missed"  # notifications were lost: resync


def record_lifecycle(session: Session, events: Collection[tuple[str, int, LifecycleEvent]], now: datetime) -> None:
    """Record what lifecycle notifications ask for; the subscription manager and sync workers act on it."""
    resync: set[int] = set()
    for subscription_id, mailbox_id, event in events:
        if event is LifecycleEvent.REAUTHORIZATION_REQUIRED:
            row = session.get(SubscriptionRow, subscription_id)
            if row is not None:
                row.reauthorize_requested_at = now
        elif event is LifecycleEvent.SUBSCRIPTION_REMOVED:
            # With the row gone the manager sees a mailbox without a subscription and creates one.
            session.execute(sa.delete(SubscriptionRow).where(col(SubscriptionRow.id) == subscription_id))
            resync.add(mailbox_id)
        else:
            resync.add(mailbox_id)
    # Notifications were lost or will be: the mailbox may hold a person's change, so it goes in the first lane.
    mark_dirty(session, resync, now, notified=True)


def active_sets(session: Session) -> dict[str, tuple[int, int]]:
    """Per source, a fingerprint of its active mailboxes (how many, and the sum of their ids): it changes when a
    mailbox is added, enabled, disabled, removed or moved to another source, by whichever process."""
    rows = session.execute(
        sa.select(col(MailboxRow.source), sa.func.count(), sa.func.coalesce(sa.func.sum(col(MailboxRow.id)), 0))
        .where(col(MailboxRow.status) == MailboxStatus.ACTIVE)
        .group_by(col(MailboxRow.source))
    ).all()
    return {str(source): (int(count), int(total)) for source, count, total in rows}
