"""The store's summary: counts and the lists an administrator reads, on a deployment having a bad day."""

from __future__ import annotations

from datetime import timedelta

from bridge.store import Database
from bridge.store.summary import summarise
from tests.store import NOW, add_troubles


def test_counts_sources_mailboxes_subscriptions_and_the_backlog(db: Database) -> None:
    with db.session() as session:
        add_troubles(session)

    with db.session() as session:
        summary = summarise(session, NOW)

    assert [(s.name, s.status, s.reason) for s in summary.sources] == [
        ("online", "ok", None),
        ("onprem", "unreachable", "ConnectionRefusedError"),
    ]
    assert summary.sources[1].since == NOW - timedelta(minutes=5)
    assert summary.mailboxes == {("online", "active"): 1, ("online", "paused"): 1, ("onprem", "disabled"): 1}
    assert summary.subscriptions == {("online", "active"): 1, ("online", "reauthorize_requested"): 1}
    assert summary.soonest_expiry == {"online": NOW + timedelta(hours=2)}
    assert (summary.backlog.undelivered, summary.backlog.failing) == (2, 1)
    assert summary.backlog.oldest == NOW - timedelta(minutes=10)
    assert summary.backlog.oldest_age_s(NOW) == 600
    assert summary.attention == summary.expiring == summary.delivery_errors == ()
    assert summary.held_mapping is None


def test_details_list_what_needs_attention_soonest_first(db: Database) -> None:
    with db.session() as session:
        add_troubles(session)

    with db.session() as session:
        summary = summarise(session, NOW, details=10)

    assert sorted((i.address, i.status) for i in summary.attention) == [
        ("grady@contoso.com", "paused"),
        ("nestor@contoso.com", "disabled"),
    ]
    assert [(d.mailbox, d.reauthorize_requested) for d in summary.expiring] == [
        ("adele@contoso.com", True),
        ("grady@contoso.com", False),
    ]
    [error] = summary.delivery_errors
    assert summary.time_zones == {("online", "Europe/Berlin"): 1, ("online", None): 1, ("onprem", None): 1}
    assert summary.held_mapping is not None
    assert (summary.held_mapping.since, summary.held_mapping.approved) == (NOW - timedelta(minutes=2), False)
    assert (error.mailbox, error.attempts, error.error) == ("adele@contoso.com", 3, "answered 503 Service Unavailable")


def test_an_expired_subscription_is_counted_as_expired(db: Database) -> None:
    with db.session() as session:
        add_troubles(session)

    with db.session() as session:
        summary = summarise(session, NOW + timedelta(hours=3))

    assert summary.subscriptions == {("online", "expired"): 1, ("online", "active"): 1}
    assert summary.soonest_expiry["online"] == NOW + timedelta(hours=2)


def test_the_details_are_capped(db: Database) -> None:
    with db.session() as session:
        add_troubles(session)

    with db.session() as session:
        summary = summarise(session, NOW, details=1)

    assert (len(summary.attention), len(summary.expiring), len(summary.delivery_errors)) == (1, 1, 1)
