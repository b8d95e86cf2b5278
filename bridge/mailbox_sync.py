"""Syncs mailboxes: claim a dirty one, read its delta, plan, and commit everything in one transaction.

The commit holds the mirror rows, the outbox changes and the new delta token together (DESIGN §3.3): a crash
before it replays the same delta from the old token and plans the same changes; after it, nothing is repeated.
Each source is worked in its own lane (a few of its mailboxes at a time), so a source that is slow, down or
refusing the bridge's credentials holds up only its own mailboxes. A failure of one mailbox holds that mailbox's
lease until it is worth trying again (its own back-off, or Exchange's Retry-After), so it waits without
blocking the others and without being picked up by another instance in the meantime. A failure of the whole
source (nothing answers, credentials refused) holds the source in the database instead: none of its mailboxes
is read until the hold ends, then one mailbox probes it, and the first success clears it (docs/running.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as monotonic_time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bridge.backoff import backoff
from bridge.config import SyncConfig
from bridge.domain import DeltaResult, MirrorItem, Window
from bridge.logs import about
from bridge.metrics import Metrics
from bridge.outages import Outages
from bridge.sources.base import AuthFailed, CalendarSource, MailboxNotFound, SourceError, Throttled, Unreachable
from bridge.store import Database, DeltaStateRow, MailboxRow, MailboxStatus, SourceStatus
from bridge.store.commands import relay_writes
from bridge.store.db import GroupCommit
from bridge.store.health import set_mailbox_status, source_failed, source_hold, source_works
from bridge.store.mirror import (
    DeltaState,
    count_mirror,
    delta_states,
    load_mirror,
    load_mirrors,
    save_delta_states,
    write_mirror,
    write_mirrors,
)
from bridge.store.outbox import add_changes, add_changes_many
from bridge.store.work import (
    ROW_LOCK,
    Claim,
    LockedMailbox,
    claim_dirty_many,
    claim_mailbox,
    finish,
    finish_synced,
    lock_mailbox,
    lock_mailboxes,
    mark_dirty,
)
from bridge.sync import SyncPlan, plan_delta, plan_remap
from bridge.templates import TemplateMapping
from bridge.waiting import first_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncTiming:
    lease: timedelta = timedelta(minutes=2)
    # A burst of notifications for one mailbox costs one read when the first waits this long.
    settle: timedelta = timedelta(milliseconds=200)
    poll: timedelta = timedelta(seconds=1)
    # One mailbox failing: its own wait, doubling.
    backoff_first: timedelta = timedelta(seconds=5)
    backoff_max: timedelta = timedelta(minutes=10)
    # A source that does not answer at all is probed again after this, doubling.
    # (Cheap: one connection attempt per hold; the first success brings every mailbox of the source back.)
    unreachable_first: timedelta = timedelta(seconds=2)
    unreachable_max: timedelta = timedelta(seconds=5)
    # Refused credentials: slow enough that no Active Directory lockout policy counts them up (docs/running.md).
    auth_first: timedelta = timedelta(minutes=5)
    auth_max: timedelta = timedelta(hours=1)


DEFAULT_TIMING = SyncTiming()
_CLAIM_BATCH = 4
# Sync commits that go in one transaction at most (`GroupCommit`): a relay command's urgent transaction waits for the
# one under way, which takes longer the more mailboxes it holds. Groups rarely reach it: at most `sync.concurrency`
# syncs are under way (8 by default; 32 delayed the relay's answers, docs/storage.md).
_COMMIT_GROUP = 16


class LeaseLost(Exception):
    """Another instance took the mailbox over while this one was reading it: this reading must not commit."""


class MailboxSync:
    def __init__(
        self,
        db: Database,
        sources: Mapping[str, CalendarSource],
        mapping: Callable[[], TemplateMapping],
        config: SyncConfig,
        owner: str,
        *,
        timing: SyncTiming = DEFAULT_TIMING,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_changes: Callable[[], None] = lambda: None,
        on_source_back: Callable[[str], None] = lambda _name: None,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._sources = sources
        self._mapping = mapping
        self._config = config
        self._owner = owner
        self._timing = timing
        self._clock = clock
        self._on_changes = on_changes
        self._on_source_back = on_source_back
        self._failures: dict[int, int] = {}
        self._outages = Outages(log)
        # Mailboxes this process is syncing or re-mapping right now: both hold the same owner's lease, so one
        # at a time, or the later commit would plan from a mirror the earlier one had already changed.
        self._busy: set[int] = set()
        self._held: dict[int, datetime] = {}
        self._source_failures: dict[str, SourceStatus] = {}
        self._proven: set[str] = set()  # sources read successfully since the start
        self._freed = asyncio.Event()
        self._lanes: dict[str, asyncio.Event] = {}
        self._commits = GroupCommit(db, self._commit, most=_COMMIT_GROUP)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Work dirty mailboxes until `stop`, one lane per source; `wake` (a commit of dirty marks) wakes them."""
        lanes = self._lanes = {name: asyncio.Event() for name in self._sources}
        tasks = [
            asyncio.create_task(self._lane(name, stop, event), name=f"sync {name}") for name, event in lanes.items()
        ]
        last_due_check = datetime.min.replace(tzinfo=UTC)
        try:
            while not stop.is_set():
                now = self._clock()
                if now - last_due_check >= timedelta(minutes=1) and await self._guarded(
                    "marking due mailboxes", self.mark_due
                ):
                    last_due_check = now
                await first_of(stop, wake, within=self._timing.poll.total_seconds())
                if wake.is_set():
                    wake.clear()
                    await asyncio.sleep(self._timing.settle.total_seconds())  # let the rest of a burst arrive
                    for event in lanes.values():
                        event.set()
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _lane(self, source: str, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Sync the source's dirty mailboxes, as many at once as the global bound leaves room for, while the
        source is not held."""
        working: dict[int, asyncio.Task[None]] = {}
        while not stop.is_set():
            wake.clear()
            await self._guarded(f"claiming mailboxes of {source}", lambda: self._fill(source, working))
            await first_of(stop, wake, within=self._timing.poll.total_seconds())
        await asyncio.gather(*working.values(), return_exceptions=True)

    async def _fill(self, source: str, working: dict[int, asyncio.Task[None]]) -> None:
        now = self._clock()
        # Mailboxes in work in every lane (re-maps included) count against the one bound (sync.concurrency):
        # Graph's limit of 4 requests at once is per mailbox (`GraphSource` holds every mailbox to 4), so the
        # bound is about the bridge's own CPU and database. A lane leaves one place for each other source, so a
        # slow source (answers that take their timeout) cannot take every place from the others.
        others = len(self._lanes) - 1
        own = max(1, self._config.concurrency - others)

        def places() -> int:
            return min(self._config.concurrency - len(self._busy), own - len(working))

        free = places()
        exclude = self._not_now(now)

        def claim_batch(session: Session) -> list[tuple[Claim, DeltaState | None]]:
            claims = claim_mailboxes(session)
            # The delta token each sync starts from, in the claim's transaction rather than one of its own.
            states = delta_states(session, [claim.mailbox_id for claim in claims])
            return [(claim, states.get(claim.mailbox_id)) for claim in claims]

        def claim_mailboxes(session: Session) -> list[Claim]:
            hold = source_hold(session, source)
            if hold is not None and hold.held_until is not None and hold.held_until > now:
                return []
            # A failing source is probed with one mailbox: refused credentials are tried once per hold, not per
            # mailbox; so is a source not yet read since the start (its credentials are not known to work yet).
            working_source = (hold is None or hold.status is SourceStatus.OK) and source in self._proven
            # A few per claim, more as each sync ends (every lane is woken then): instances sharing a database
            # each get their part of a burst instead of the first claimer taking it all.
            width = min(free, _CLAIM_BATCH) if working_source else 1 - len(working)
            if width <= 0:
                return []
            # The last free place is kept for notified mailboxes: a change waits for no maintenance read. Not in a
            # lane of one place: nothing else would ever read for maintenance there, and its claims take notified
            # mailboxes first anyway.
            keep = working_source and own > 1
            claim = partial(
                claim_dirty_many,
                session,
                owner=self._owner,
                now=now,
                lease=self._timing.lease,
                settle=self._timing.settle,
                source=source,
            )
            if not keep:
                return claim(exclude=exclude, limit=width)
            claims = claim(exclude=exclude, limit=width - 1) if width > 1 else []
            taken = set(exclude) | {claimed.mailbox_id for claimed in claims}
            return claims + claim(exclude=taken, limit=1, notified_only=True)

        claimed = await self._db.run(claim_batch)
        for claim, state in claimed:
            mailbox_id = claim.mailbox_id
            if mailbox_id in self._busy:
                continue  # a re-map took the mailbox meanwhile: it stays dirty
            self._busy.add(mailbox_id)
            task = asyncio.create_task(self._sync_guarded(claim, state), name=f"sync {claim.address}")
            working[mailbox_id] = task

            def done(_task: asyncio.Task[None], mailbox_id: int = mailbox_id) -> None:
                working.pop(mailbox_id, None)
                self._busy.discard(mailbox_id)
                self._freed.set()
                for lane in self._lanes.values():
                    lane.set()  # a slot is free, for whichever source has work

            task.add_done_callback(done)
        if claimed and places() > 0:
            # Places are still free: claim again at once rather than when a sync ends. Syncs whose commits went in
            # one group end together and wake the lane once, so waiting for that kept only a claim's worth at work.
            self._lanes[source].set()

    async def _guarded(self, what: str, work: Callable[[], Awaitable[object]]) -> bool:
        """Run `work`; a failure (the database away for a while) is logged once and the loop goes on."""
        try:
            await work()
        except Exception as exc:
            self._outages.failed("database", f"sync: {what} failed ({type(exc).__name__}: {exc}); retrying")
            return False
        self._outages.recovered("database", "sync: the database answers again")
        return True

    async def _sync_guarded(self, claim: Claim, state: DeltaState | None) -> None:
        """Sync one claimed mailbox; whatever goes wrong becomes that mailbox's back-off, never the lane's end."""
        started = monotonic_time.monotonic()
        try:
            with about(source=claim.source, mailbox=claim.address):
                await self.sync_claimed(claim, state)
        except Exception as exc:
            message = f"{claim.address}: syncing failed unexpectedly: {type(exc).__name__}: {exc}"
            self._outages.unexpected(claim.address, message, exc)
            with contextlib.suppress(Exception):  # the database is away too: the lease runs out on its own
                await self._backoff(claim, message, logged=True)
        self._metrics.synced(claim.source, monotonic_time.monotonic() - started)

    async def mark_due(self) -> int:
        """Mark dirty what needs a read without a notification: the periodic reconcile and the daily window roll.

        Mailboxes of a source the configuration no longer names are disabled: no lane would ever read them.
        """
        now = self._clock()
        window_start = datetime.combine(now.date(), time(), tzinfo=UTC)
        configured = set(self._sources)

        def due(session: Session) -> int:
            _disable_unconfigured(session, configured)
            return _mark_due(session, now, self._config.reconcile_interval, window_start)

        return await self._db.run(due)

    async def sync_claimed(self, claim: Claim, state: DeltaState | None) -> None:
        """Read the claimed mailbox from its delta round `state` (read when it was claimed) and commit."""
        mapping = self._mapping()
        now = self._clock()
        window = mapping.window(now)
        source = self._sources[claim.source]
        # Continue the round, unless the window rolled since it began: a new round then starts from nothing.
        token = state[1] if state is not None and state[0] == window else None
        try:
            result = await source.read_delta(claim.address, window, token)
        except Throttled as exc:
            self._metrics.throttle_hold(claim.source)
            await self._hold(claim, timedelta(seconds=exc.retry_after), f"{claim.address}: throttled: {exc}")
            return
        except AuthFailed as exc:
            await self._source_failed(claim, SourceStatus.AUTH_FAILED, f"credentials refused: {exc}")
            return
        except Unreachable as exc:
            await self._source_failed(claim, SourceStatus.UNREACHABLE, f"unreachable: {exc}")
            return
        except MailboxNotFound as exc:
            refused = f"Exchange refused the mailbox: {exc}"
            await self._db.run(lambda session: self._give_up(session, claim, refused))
            return
        except SourceError as exc:
            await self._backoff(claim, f"{claim.address}: reading failed: {exc}")
            return
        try:
            plan = await self._commits.submit(_Reading(claim, result, mapping, window, now))
        except LeaseLost:
            log.info("%s was taken over by another instance; its reading is dropped", claim.address)
            return
        self._proven.add(claim.source)
        if self._outages.failing(f"source {claim.source}"):
            self._outages.recovered(f"source {claim.source}", f"source {claim.source}: works again")
            self._on_source_back(claim.source)
        if plan is None:
            return
        self._failures.pop(claim.mailbox_id, None)
        self._outages.recovered(claim.address, f"{claim.address}: syncing again")
        log.debug(
            "synced: %d items read, %d removed, %d changes emitted",
            len(result.upserts),
            len(result.removed),
            len(plan.changes),
        )
        if plan.changes:
            self._metrics.emitted(change.change_type.value for change in plan.changes)
            self._on_changes()

    def _commit(self, session: Session, readings: list[_Reading]) -> list[SyncPlan | LeaseLost | None]:
        """Plan each reading against the mirror as it is now and commit them all; for each, its plan, None when the
        mass-delete guard paused the mailbox, or LeaseLost.

        Planning happens here, under the mailboxes' row locks, because the relay may have written to a mirror
        while the read was under way: its writes since the read started are left out of the plan. Every mailbox
        is locked, checked and planned before anything is written, so that one whose lease was lost or that is
        paused writes nothing of its reading and takes nothing from the others.
        """
        locked = lock_mailboxes(session, [reading.claim.mailbox_id for reading in readings])
        now = self._clock()
        mine = {mailbox_id: mailbox for mailbox_id, mailbox in locked.items() if mailbox.lease_owner == self._owner}
        # A full round plans against the whole mirror: those of the group are read in one statement.
        mirrors = load_mirrors(
            session,
            [
                reading.claim.mailbox_id
                for reading in readings
                if reading.result.full_round and reading.claim.mailbox_id in mine
            ],
        )
        outcomes: list[SyncPlan | LeaseLost | None] = []
        planned: list[tuple[_Reading, LockedMailbox, SyncPlan]] = []
        for reading in readings:
            claim = reading.claim
            mailbox = mine.get(claim.mailbox_id)
            if mailbox is None:
                outcomes.append(LeaseLost(claim.address))
                continue
            plan = _plan(session, reading, now, mirrors.get(claim.mailbox_id))
            if self._config.is_mass_delete(plan.removed, plan.mirrored) and not mailbox.mass_delete_approved:
                reason = (
                    f"paused: one read would delete {plan.removed} of {plan.mirrored} appointments; check the "
                    f"mailbox, then resume it with `presence-bridge mailboxes enable {claim.address}`"
                )
                log.warning("%s %s", claim.address, reason)
                self._pause(session, claim, reason)
                outcomes.append(None)
                continue
            outcomes.append(plan)
            planned.append((reading, mailbox, plan))
        if planned:
            self._write(session, planned, now)
        return outcomes

    def _write(self, session: Session, planned: list[tuple[_Reading, LockedMailbox, SyncPlan]], now: datetime) -> None:
        """The writes of planned readings, each kind of row of all of them in one statement."""
        write_mirrors(session, [(reading.claim.mailbox_id, plan.put, plan.drop) for reading, _, plan in planned])
        save_delta_states(
            session,
            [
                (reading.claim.mailbox_id, reading.window, reading.result.token, reading.result.full_round)
                for reading, _, _ in planned
            ],
            now,
        )
        finished = finish_synced(
            session,
            [(reading.claim, mailbox.next_sequence + len(plan.changes)) for reading, mailbox, plan in planned],
            self._owner,
            now,
            reconcile_interval=self._config.reconcile_interval,
        )
        if finished != len(planned):
            # Not seen under the row lock: the whole group is rolled back, and each of them committed alone finds
            # out whose lease it was.
            raise LeaseLost(", ".join(reading.claim.address for reading, _, _ in planned))
        for source in sorted({reading.claim.source for reading, mailbox, _ in planned if mailbox.source_failing}):
            source_works(session, source, now)
        # The outbox is written last: from its insert until commit the transaction holds outbox ids, which a feed
        # reader waits for (store.lock_outbox).
        add_changes_many(
            session,
            [
                (mailbox, [(change.change_type, change.entry) for change in plan.changes], _modified(reading.result))
                for reading, mailbox, plan in planned
            ],
            now,
        )

    async def remap(self, mapping: TemplateMapping) -> int:
        """Re-map every active mailbox's mirror after the mapping changed; returns the number of changes emitted."""
        ids = await self._db.run(_active_mailboxes)
        emitted = 0
        for mailbox_id in ids:
            while mailbox_id in self._busy:  # a sync of it is under way in this process
                self._freed.clear()
                await self._freed.wait()
            self._busy.add(mailbox_id)
            try:
                emitted += await self._remap_one(mailbox_id, mapping)
            finally:
                self._busy.discard(mailbox_id)
                self._freed.set()
        if emitted:
            self._on_changes()
        return emitted

    async def _remap_one(self, mailbox_id: int, mapping: TemplateMapping) -> int:
        for _ in range(60):
            now = self._clock()
            claim = await self._db.run(
                partial(claim_mailbox, mailbox_id=mailbox_id, owner=self._owner, now=now, lease=self._timing.lease)
            )
            if claim is not None:
                break
            await asyncio.sleep(0.5)  # another instance is syncing it right now
        else:
            log.warning("mailbox %d stayed leased; it is re-mapped on its next sync", mailbox_id)
            return 0

        def commit(session: Session) -> list[str]:
            mailbox = lock_mailbox(session, mailbox_id)
            assert mailbox is not None
            plan = plan_remap(load_mirror(session, mailbox_id), mapping)
            write_mirror(session, mailbox_id, plan.put, plan.drop)
            finish(
                session, claim, self._owner, now, synced=False, next_sequence=mailbox.next_sequence + len(plan.changes)
            )
            add_changes(session, mailbox, [(change.change_type, change.entry) for change in plan.changes], now)
            return [change.change_type.value for change in plan.changes]

        emitted = await self._db.run(commit)
        self._metrics.emitted(emitted)
        return len(emitted)

    async def _hold(self, claim: Claim, wait: timedelta, message: str, *, logged: bool = False) -> None:
        """Keep the mailbox's lease for `wait`: other instances leave it alone, and so does this one (a lease of
        its own name is otherwise taken back at once, as after a restart)."""
        if not logged:
            self._outages.failed(claim.address, message)
        until = self._clock() + wait
        self._held[claim.mailbox_id] = until
        await self._db.run(lambda session: _hold_lease(session, claim, self._owner, until))

    async def _backoff(self, claim: Claim, message: str, *, logged: bool = False) -> None:
        attempts = self._failures.get(claim.mailbox_id, 0) + 1
        self._failures[claim.mailbox_id] = attempts
        wait = backoff(attempts, self._timing.backoff_first, self._timing.backoff_max)
        await self._hold(claim, wait, message, logged=logged)

    def _not_now(self, now: datetime) -> set[int]:
        """Mailboxes this instance must not claim now: being worked, or held by their back-off."""
        for mailbox_id in [mailbox_id for mailbox_id, until in self._held.items() if until <= now]:
            del self._held[mailbox_id]
        return self._busy | set(self._held)

    async def _source_failed(self, claim: Claim, status: SourceStatus, reason: str) -> None:
        """Hold the whole source; the mailbox stays dirty and is read once the hold ends."""
        key = f"source {claim.source}"
        if not self._outages.failing(key) or self._source_failures.get(claim.source) is not status:
            # Logged once per kind of failure: a token service's answer differs in every probe (trace ids).
            self._outages.failed(key, f"{key}: {reason}")
        self._source_failures[claim.source] = status
        if status is SourceStatus.AUTH_FAILED:
            first, maximum = self._timing.auth_first, self._timing.auth_max
        else:
            first, maximum = self._timing.unreachable_first, self._timing.unreachable_max
        now = self._clock()

        def record(session: Session) -> None:
            source_failed(
                session, claim.source, status, reason, now, lambda failures: backoff(failures, first, maximum)
            )
            finish(session, claim, self._owner, now, synced=False)

        await self._db.run(record)

    def _give_up(self, session: Session, claim: Claim, reason: str) -> None:
        log.warning("disabling %s: %s", claim.address, reason)
        set_mailbox_status(session, claim.mailbox_id, MailboxStatus.DISABLED, reason)
        finish(session, claim, self._owner, self._clock(), synced=False)

    def _pause(self, session: Session, claim: Claim, reason: str) -> None:
        set_mailbox_status(session, claim.mailbox_id, MailboxStatus.PAUSED, reason)
        finish(session, claim, self._owner, self._clock(), synced=False)


@dataclass(frozen=True, slots=True)
class _Reading:
    """A mailbox's delta read, to be planned and committed (`MailboxSync._commit`); `read_started`: when."""

    claim: Claim
    result: DeltaResult
    mapping: TemplateMapping
    window: Window
    read_started: datetime


def _plan(session: Session, reading: _Reading, now: datetime, mirror: dict[str, MirrorItem] | None) -> SyncPlan:
    """The plan of `reading`; `mirror`: the mailbox's whole mirror, read already for a full round."""
    mailbox_id, result = reading.claim.mailbox_id, reading.result
    relay = relay_writes(session, mailbox_id, reading.read_started, now)
    if mirror is not None:
        return plan_delta(mirror, result, reading.mapping, reading.window, relay)
    touched = [appointment.item_id for appointment in result.upserts] + list(result.removed)
    mirror = load_mirror(session, mailbox_id, touched)
    mirrored = count_mirror(session, mailbox_id)
    return plan_delta(mirror, result, reading.mapping, reading.window, relay, mirrored=mirrored)


def _modified(result: DeltaResult) -> dict[str, datetime]:
    """When Exchange changed what this read reports, for the change-latency metric.

    Not for a full round: it brings items changed long ago (the window rolled, the token expired), whose age
    says nothing about how fast the bridge passed a change on.
    """
    if result.full_round:
        return {}
    return {item.item_id: item.modified_at for item in result.upserts if item.modified_at is not None}


def _hold_lease(session: Session, claim: Claim, owner: str, until: datetime) -> None:
    row = session.get(MailboxRow, claim.mailbox_id, with_for_update=ROW_LOCK)
    if row is not None and row.lease_owner == owner:
        row.lease_expires_at = until


def _disable_unconfigured(session: Session, configured: set[str]) -> None:
    rows = session.exec(
        select(MailboxRow).where(
            MailboxRow.status == MailboxStatus.ACTIVE, col(MailboxRow.source).not_in(sorted(configured))
        )
    ).all()
    for row in rows:
        assert row.id is not None
        reason = f"source {row.source!r} is not in the configuration"
        log.warning("disabling %s: %s", row.address, reason)
        set_mailbox_status(session, row.id, MailboxStatus.DISABLED, reason)


def _active_mailboxes(session: Session) -> list[int]:
    rows = session.exec(select(MailboxRow.id).where(MailboxRow.status == MailboxStatus.ACTIVE)).all()
    return [row for row in rows if row is not None]


def _mark_due(session: Session, now: datetime, interval: timedelta, window_start: datetime) -> int:
    stale = select(MailboxRow.id).where(
        MailboxRow.status == MailboxStatus.ACTIVE,
        MailboxRow.dirty_generation <= MailboxRow.synced_generation,
        sa.or_(
            col(MailboxRow.reconcile_due_at) <= now,
            # Synced before due times were kept (or never synced): the interval from the last sync.
            sa.and_(
                col(MailboxRow.reconcile_due_at).is_(None),
                sa.or_(col(MailboxRow.last_synced_at).is_(None), col(MailboxRow.last_synced_at) < now - interval),
            ),
        ),
    )
    rolled = (
        select(DeltaStateRow.mailbox_id)
        .join(MailboxRow, col(MailboxRow.id) == col(DeltaStateRow.mailbox_id))
        .where(
            MailboxRow.status == MailboxStatus.ACTIVE,
            MailboxRow.dirty_generation <= MailboxRow.synced_generation,
            col(DeltaStateRow.window_start) < window_start,
        )
    )
    due = {row for row in session.exec(stale).all() if row is not None} | set(session.exec(rolled).all())
    return mark_dirty(session, due, now)
