"""Keeps one change-notification subscription per active mailbox of a source that calls the bridge back (Graph's
`WebhookSubscriptions`, bridge/sources/watching.py), for as long as the mailbox is active.

Graph subscriptions to Outlook events last at most 10,080 minutes, so each is renewed one to two days before it
expires (at a point of its own in that day, so that subscriptions made together are not renewed together), or at
once when Graph asks (`reauthorizationRequired`), but not twice within 10 minutes. Creations and renewals run
side by side, up to `concurrency` at once. One that is gone
(404 on renewal, `subscriptionRemoved`, expired) is created again, and its mailbox resynced, since notifications
were lost meanwhile. Everything is in the database: a restart recreates nothing that still exists.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from bridge.domain import Subscription, SubscriptionRequest
from bridge.logs import about
from bridge.outages import Outages
from bridge.sources.base import (
    AuthFailed,
    ItemNotFound,
    MailboxNotFound,
    QuotaExceeded,
    SourceError,
    SubscriptionExists,
)
from bridge.sources.watching import WebhookSubscriptions
from bridge.store import Database, MailboxRow, MailboxStatus, SourceStatus, SubscriptionRow
from bridge.store.db import GroupCommit, in_chunks
from bridge.store.health import note_mailbox, set_mailbox_status, set_source_status
from bridge.store.work import mark_dirty
from bridge.waiting import first_of

log = logging.getLogger(__name__)

QUOTA_NOTE = "no change notifications: Graph refused another subscription (403 quota); synced by reconcile only"


@dataclass(frozen=True, slots=True)
class SubscriptionSettings:
    notification_url: str
    lifecycle_url: str
    # Graph's maximum for Outlook resources is 10,080 minutes; an hour less leaves room for clock skew.
    lifetime: timedelta = timedelta(minutes=10_080 - 60)
    renew_before: timedelta = timedelta(days=1)
    # Graph asks not to reauthorize and PATCH the same subscription within 10 minutes.
    reauthorize_gap: timedelta = timedelta(minutes=10)
    retry_after: timedelta = timedelta(minutes=5)
    # Renewals are due between `renew_before` and `renew_before + renew_spread` before expiry, each subscription
    # at its own point (from its id): subscriptions created together are then not all renewed together, and
    # once renewed apart they stay apart.
    renew_spread: timedelta = timedelta(days=1)
    # Graph calls under way at once (creations, renewals, removals); each mailbox still gets at most Graph's 4.
    concurrency: int = 16


@dataclass(frozen=True, slots=True)
class _Task:
    action: str  # "create", "renew" or "remove"
    mailbox_id: int
    address: str
    source: str
    subscription_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Created:
    """A subscription Graph made, its row not yet written."""

    task: _Task
    subscription: Subscription
    client_state: str
    at: datetime


@dataclass(frozen=True, slots=True)
class _Held:
    """A subscription row as the pass reads it."""

    id: str
    mailbox_id: int
    expires_at: datetime
    renewed_at: datetime | None
    reauthorize_requested_at: datetime | None


class SubscriptionManager:
    def __init__(
        self,
        db: Database,
        sources: Mapping[str, WebhookSubscriptions],
        settings: SubscriptionSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        forget: Callable[[str], None] = lambda subscription_id: None,
    ) -> None:
        self._db = db
        self._sources = sources
        self._settings = settings
        self._clock = clock
        self._forget = forget
        self._retry_at: dict[str, datetime] = {}  # per mailbox address or source name
        self._outages = Outages(log)
        self._stores = GroupCommit(db, _insert)  # new subscriptions' rows (`_store`)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, interval_s: float = 30.0) -> None:
        while not stop.is_set():
            try:
                await self.reconcile()
            except Exception:  # a bug or a database outage must not end the supervisor's task
                log.exception("subscription upkeep failed; trying again in %.0f s", interval_s)
            wake.clear()
            await first_of(stop, wake, within=interval_s)

    async def reconcile(self) -> int:
        """One pass: create, renew and remove what is due, up to `concurrency` at once; returns the number of
        actions taken.

        One instance at a time: instances started together would each create a subscription per mailbox.
        """
        async with self._db.exclusive("subscriptions") as ours:
            if not ours:
                return 0  # another instance's pass is under way
            now = self._clock()
            tasks = await self._db.run(lambda session: self._due(session, now))
            slots = asyncio.Semaphore(self._settings.concurrency)

            async def perform(task: _Task) -> None:
                async with slots:
                    with about(source=task.source, mailbox=task.address):
                        await self._perform(task)

            for outcome in await asyncio.gather(*(perform(task) for task in tasks), return_exceptions=True):
                if isinstance(outcome, Exception):
                    raise outcome  # a bug or the database away: `run` logs it, once every task has ended
            return len(tasks)

    def _due(self, session: Session, now: datetime) -> list[_Task]:
        # Core selects of the columns needed: the pass runs every 30 s over every mailbox, and ORM objects for
        # all of them cost more than the rest of the pass (docs/storage.md).
        sources = list(self._sources)
        mailboxes = session.execute(
            sa.select(
                col(MailboxRow.id), col(MailboxRow.address), col(MailboxRow.source), col(MailboxRow.status)
            ).where(col(MailboxRow.source).in_(sources))
        ).all()
        rows = session.execute(
            sa.select(
                col(SubscriptionRow.id),
                col(SubscriptionRow.mailbox_id),
                col(SubscriptionRow.expires_at),
                col(SubscriptionRow.renewed_at),
                col(SubscriptionRow.reauthorize_requested_at),
            ).where(col(SubscriptionRow.source).in_(sources))
        ).all()
        by_mailbox: dict[int, list[_Held]] = {}
        for row in rows:
            by_mailbox.setdefault(row.mailbox_id, []).append(_Held(*row))
        tasks = []
        expired = []
        for mailbox_id, address, source, status in mailboxes:
            held = by_mailbox.get(mailbox_id, [])
            if status is not MailboxStatus.ACTIVE:
                tasks += [_Task("remove", mailbox_id, address, source, sub.id) for sub in held]
                continue
            live = [sub for sub in held if sub.expires_at > now]
            # Graph has dropped these already; only the rows are left.
            expired += [sub.id for sub in held if sub.expires_at <= now]
            if not live:
                tasks.append(_Task("create", mailbox_id, address, source))
                continue
            for sub in live:
                if self._renewal_due(sub, now):
                    tasks.append(_Task("renew", mailbox_id, address, source, sub.id))
        for chunk in in_chunks(expired):  # every mailbox's, after a stop of more than a subscription's life
            session.execute(sa.delete(SubscriptionRow).where(col(SubscriptionRow.id).in_(chunk)))
        return [task for task in tasks if not self._waiting(task, now)]

    def _renewal_due(self, row: _Held, now: datetime) -> bool:
        spread = self._settings.renew_spread * (zlib.crc32(row.id.encode()) / 2**32)
        if row.expires_at - now <= self._settings.renew_before + spread:
            return True
        if row.reauthorize_requested_at is None:
            return False
        return row.renewed_at is None or now - row.renewed_at >= self._settings.reauthorize_gap

    def _waiting(self, task: _Task, now: datetime) -> bool:
        return any(self._retry_at.get(key, now) > now for key in (task.address, task.source))

    async def _perform(self, task: _Task) -> None:
        source = self._sources[task.source]
        try:
            if task.action == "create":
                await self._create(source, task)
            elif task.action == "renew":
                await self._renew(source, task)
            else:
                await self._remove(source, task)
        except AuthFailed as exc:
            self._retry_at[task.source] = self._clock() + self._settings.retry_after
            refused = str(exc)
            self._outages.failed(task.source, f"source {task.source}: credentials refused: {refused}")
            await self._db.run(
                lambda session: set_source_status(session, task.source, SourceStatus.AUTH_FAILED, refused)
            )
            return
        except MailboxNotFound as exc:
            log.warning("disabling %s: %s", task.address, exc)
            reason = f"Exchange does not know this mailbox or refuses access: {exc}"
            await self._db.run(
                lambda session: set_mailbox_status(session, task.mailbox_id, MailboxStatus.DISABLED, reason)
            )
            return
        except QuotaExceeded:
            self._retry_at[task.address] = self._clock() + self._settings.retry_after
            self._outages.failed(task.address, f"{task.address}: {QUOTA_NOTE}")
            await self._db.run(lambda session: note_mailbox(session, task.mailbox_id, QUOTA_NOTE))
            return
        except SourceError as exc:
            self._retry_at[task.address] = self._clock() + self._settings.retry_after
            self._outages.failed(task.address, f"{task.address}: could not {task.action} its subscription: {exc}")
            return
        self._retry_at.pop(task.address, None)
        self._retry_at.pop(task.source, None)
        self._outages.recovered(task.address, f"{task.address}: subscription upkeep works again")
        self._outages.recovered(task.source, f"source {task.source}: credentials accepted again")

    async def _create(self, source: WebhookSubscriptions, task: _Task) -> None:
        client_state = secrets.token_urlsafe(48)  # 64 characters; Graph allows 128
        request = SubscriptionRequest(
            mailbox=task.address,
            notification_url=self._settings.notification_url,
            lifecycle_url=self._settings.lifecycle_url,
            client_state=client_state,
            expires_at=self._clock() + self._settings.lifetime,
        )
        try:
            created = await source.subscribe(request)
        except SubscriptionExists:
            # A subscription the bridge has no row for: created before a crash, its clientState unknown, so
            # its notifications could never be trusted. Replace it.
            await self._remove_strays(source, task.address)
            created = await source.subscribe(request)
        await self._store(_Created(task, created, client_state, self._clock()))
        self._forget(created.subscription_id)  # a notification that came before the commit left it as unknown
        log.info("subscribed to %s (subscription %s)", task.address, created.subscription_id)

    async def _store(self, created: _Created) -> None:
        """Write a new subscription's row, committed when this returns.

        Creations run side by side, and a transaction of its own for each row cost more than its statements: the
        rows that come while one write is under way go together in the next (each alone again if that one fails,
        so that one row the database refuses costs no other its row).
        """
        await self._stores.submit(created)

    async def _remove_strays(self, source: WebhookSubscriptions, address: str) -> None:
        for existing in await source.list_subscriptions():
            if (
                existing.mailbox.lower() == address.lower()
                and existing.notification_url == self._settings.notification_url
            ):
                log.info(
                    "removing subscription %s to %s that the bridge holds no record of",
                    existing.subscription_id,
                    address,
                )
                await source.unsubscribe(existing.subscription_id)

    async def _renew(self, source: WebhookSubscriptions, task: _Task) -> None:
        assert task.subscription_id is not None
        subscription_id = task.subscription_id
        try:
            renewed = await source.renew(subscription_id, task.address, self._clock() + self._settings.lifetime)
        except ItemNotFound:
            log.info("subscription %s to %s is gone; creating a new one", subscription_id, task.address)
            await self._db.run(lambda session: _delete(session, subscription_id))
            self._forget(subscription_id)
            await self._create(source, task)
            return
        now = self._clock()

        def store(session: Session) -> None:
            row = session.get(SubscriptionRow, subscription_id)
            if row is not None:
                row.expires_at = renewed.expires_at
                row.renewed_at = now
                row.reauthorize_requested_at = None

        await self._db.run(store)

    async def _remove(self, source: WebhookSubscriptions, task: _Task) -> None:
        assert task.subscription_id is not None
        subscription_id = task.subscription_id
        await source.unsubscribe(subscription_id)
        await self._db.run(lambda session: _delete(session, subscription_id))
        self._forget(subscription_id)
        log.info("unsubscribed from %s: the mailbox is not active", task.address)


_INSERT = sa.insert(SubscriptionRow.__table__)  # type: ignore[attr-defined]


def _insert(session: Session, created: list[_Created]) -> list[None]:
    # Core statements, not ORM objects: one row is made per mailbox, and an object's flush (which `mark_dirty`'s
    # statement triggers) cost as much as the other statements together.
    written_at = datetime.now(UTC)  # when the rows were written, as the model's default
    session.connection().execute(
        _INSERT,
        [
            {
                "id": one.subscription.subscription_id,
                "mailbox_id": one.task.mailbox_id,
                "source": one.task.source,
                "resource": f"/users/{one.task.address}/events",
                "client_state": one.client_state,
                "expires_at": one.subscription.expires_at,
                "created_at": written_at,
            }
            for one in created
        ],
    )
    for source in dict.fromkeys(one.task.source for one in created):
        set_source_status(session, source, SourceStatus.OK, None)
    for one in created:
        note_mailbox(session, one.task.mailbox_id, None)
    # Changes made while there was no subscription were never notified.
    mark_dirty(session, [one.task.mailbox_id for one in created], max(one.at for one in created))
    return [None] * len(created)


def _delete(session: Session, subscription_id: str) -> None:
    session.execute(sa.delete(SubscriptionRow).where(col(SubscriptionRow.id) == subscription_id))
