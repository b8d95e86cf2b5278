"""Subscription upkeep against the Graph emulator: create, renew, replace strays, and surface what Graph refuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from bridge.domain import Subscription, SubscriptionRequest
from bridge.sources.graph import GraphSource
from bridge.store import Database, MailboxRow, MailboxStatus, SourceKind, SourceRow, SourceStatus, SubscriptionRow
from bridge.subscriptions import SubscriptionManager, SubscriptionSettings
from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.conftest import graph_source_for


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def source(online_source: GraphSource) -> GraphSource:
    return online_source


@pytest.fixture
def mailbox(db: Database, adele: DirectoryUser) -> int:
    with db.session() as session:
        session.add(SourceRow(name="online", kind=SourceKind.GRAPH))
        row = MailboxRow(address=adele.user_principal_name, source="online")
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(db: Database, source: GraphSource, receiver: Any, clock: Clock) -> SubscriptionManager:
    return SubscriptionManager(
        db, {"online": source}, SubscriptionSettings(receiver.url, receiver.lifecycle_url), clock=clock
    )


def rows(db: Database) -> list[SubscriptionRow]:
    with db.session() as session:
        return list(session.exec(select(SubscriptionRow)).all())


def mailbox_row(db: Database, mailbox_id: int) -> MailboxRow:
    with db.session() as session:
        row = session.get(MailboxRow, mailbox_id)
        assert row is not None
        return row


async def test_an_active_mailbox_gets_one_subscription_and_a_catch_up_sync(
    manager: SubscriptionManager, db: Database, mailbox: int, graph_emulator: GraphEmulator
) -> None:
    assert await manager.reconcile() == 1

    [held] = graph_emulator.subscriptions()
    [row] = rows(db)
    assert row.id == held["id"]
    assert row.client_state == held["clientState"]
    assert len(row.client_state) <= 128
    assert held["lifecycleNotificationUrl"].endswith("/hooks/graph/lifecycle")
    assert mailbox_row(db, mailbox).dirty_generation == 1
    assert await manager.reconcile() == 0  # nothing more to do


async def test_a_subscription_is_renewed_when_its_expiry_comes_near(
    db: Database, mailbox: int, source: GraphSource, receiver: Any, graph_emulator: GraphEmulator
) -> None:
    # Renewing 6 days 23 hours ahead makes a fresh subscription due at once (the emulator keeps real time).
    settings = SubscriptionSettings(receiver.url, receiver.lifecycle_url, renew_before=timedelta(days=6, hours=23))
    manager = SubscriptionManager(db, {"online": source}, settings)
    await manager.reconcile()
    [before] = rows(db)

    assert await manager.reconcile() == 1

    [after] = rows(db)
    [held] = graph_emulator.subscriptions()
    assert after.id == before.id == held["id"]
    assert after.renewed_at is not None
    assert after.expires_at >= before.expires_at


async def test_a_subscription_the_bridge_has_no_record_of_is_replaced(
    manager: SubscriptionManager,
    db: Database,
    mailbox: int,
    source: GraphSource,
    receiver: Any,
    graph_emulator: GraphEmulator,
    adele: DirectoryUser,
) -> None:
    expires = datetime.now(UTC) + timedelta(days=2)
    stray = await source.subscribe(
        SubscriptionRequest(adele.user_principal_name, receiver.url, receiver.lifecycle_url, "lost", expires)
    )

    await manager.reconcile()

    [held] = graph_emulator.subscriptions()
    [row] = rows(db)
    assert held["id"] != stray.subscription_id
    assert (row.id, row.client_state) == (held["id"], held["clientState"])


class _AnsweredTogether:
    """The Graph source, holding each new subscription until `count` are made; `removed`'s mailbox row is deleted
    meanwhile (the mailbox was taken out while Graph created its subscription)."""

    def __init__(self, inner: GraphSource, db: Database, count: int, removed: str) -> None:
        self._inner, self._db, self._removed = inner, db, removed
        self._together = asyncio.Barrier(count)

    async def subscribe(self, request: SubscriptionRequest) -> Subscription:
        created = await self._inner.subscribe(request)
        if request.mailbox == self._removed:
            with self._db.session() as session:
                session.execute(sa.delete(MailboxRow).where(col(MailboxRow.address) == self._removed))
        await self._together.wait()
        return created

    async def renew(self, subscription_id: str, mailbox: str, expires_at: datetime) -> Subscription:
        return await self._inner.renew(subscription_id, mailbox, expires_at)

    async def list_subscriptions(self) -> tuple[Subscription, ...]:
        return await self._inner.list_subscriptions()

    async def unsubscribe(self, subscription_id: str) -> None:
        await self._inner.unsubscribe(subscription_id)


async def test_a_row_the_database_refuses_costs_no_other_new_subscription_its_row(
    db: Database, mailbox: int, source: GraphSource, receiver: Any, graph_emulator: GraphEmulator
) -> None:
    others = []
    for address in ("bob@contoso.com", "carol@contoso.com"):
        graph_emulator.add_user(address)
        with db.session() as session:
            row = MailboxRow(address=address, source="online")
            session.add(row)
            session.flush()
            others.append(row.id)
    together = _AnsweredTogether(source, db, 3, removed="carol@contoso.com")
    manager = SubscriptionManager(db, {"online": together}, SubscriptionSettings(receiver.url, receiver.lifecycle_url))

    with pytest.raises(sa.exc.IntegrityError):  # carol's row: her mailbox is gone
        await manager.reconcile()

    assert sorted(row.mailbox_id for row in rows(db)) == [mailbox, others[0]]
    assert mailbox_row(db, others[0]).dirty_generation == 1


async def test_a_refused_subscription_is_noted_on_the_mailbox_and_retried_later(
    manager: SubscriptionManager, db: Database, mailbox: int, graph_emulator: GraphEmulator, clock: Clock
) -> None:
    graph_emulator.subscription_quota(1)

    await manager.reconcile()
    assert rows(db) == []
    assert "403 quota" in (mailbox_row(db, mailbox).status_reason or "")
    assert mailbox_row(db, mailbox).status is MailboxStatus.ACTIVE  # still synced by reconcile

    clock.now += timedelta(minutes=6)
    await manager.reconcile()
    assert len(rows(db)) == 1
    assert mailbox_row(db, mailbox).status_reason is None


async def test_refused_credentials_mark_the_source(
    db: Database, mailbox: int, graph_emulator: GraphEmulator, tenant_app: AppRegistration, receiver: Any
) -> None:
    wrong = graph_source_for(graph_emulator, tenant_app, secret="wrong-secret")
    manager = SubscriptionManager(db, {"online": wrong}, SubscriptionSettings(receiver.url, receiver.lifecycle_url))
    try:
        await manager.reconcile()
    finally:
        await wrong.close()

    with db.session() as session:
        source_row = session.get(SourceRow, "online")
        assert source_row is not None
        assert source_row.status is SourceStatus.AUTH_FAILED
    assert rows(db) == []


async def test_a_disabled_mailbox_is_unsubscribed(
    manager: SubscriptionManager, db: Database, mailbox: int, graph_emulator: GraphEmulator
) -> None:
    await manager.reconcile()
    with db.session() as session:
        row = session.get(MailboxRow, mailbox)
        assert row is not None
        row.status = MailboxStatus.DISABLED

    await manager.reconcile()

    assert graph_emulator.subscriptions() == []
    assert rows(db) == []


async def test_a_mailbox_graph_does_not_know_is_disabled_with_the_reason(
    manager: SubscriptionManager, db: Database
) -> None:
    with db.session() as session:
        row = MailboxRow(address="nobody@contoso.com", source="online")
        session.add(row)
        session.flush()
        assert row.id is not None
        unknown = row.id

    await manager.reconcile()

    row = mailbox_row(db, unknown)
    assert row.status is MailboxStatus.DISABLED
    assert "nobody@contoso.com' is invalid" in (row.status_reason or "")
