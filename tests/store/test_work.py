"""Dirty marking, claims and leases: how mailboxes get worked, by one instance or several."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from bridge.store import (
    CommandKind,
    CommandRow,
    Database,
    MailboxRow,
    MailboxStatus,
    SourceKind,
    SourceRow,
    SourceStatus,
    SubscriptionRow,
)
from bridge.store.db import connected_instances
from bridge.store.health import source_works
from bridge.store.models import MailboxMarkRow
from bridge.store.work import (
    claim_dirty,
    claim_dirty_many,
    claim_mailbox,
    finish,
    finish_synced,
    lease_holders,
    lock_mailbox,
    mark_dirty,
    release_gone,
    subscriptions,
)
from tests.conftest import DatabaseUrl
from tests.store import add_mailbox

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def test_a_marked_mailbox_can_be_claimed_once(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
    with db.session() as session:
        claim = claim_dirty(session, "a", NOW, lease=LEASE)
    with db.session() as session:
        second = claim_dirty(session, "b", NOW, lease=LEASE)

    assert claim is not None
    assert claim.mailbox_id == mailbox
    assert claim.generation == 1
    assert second is None  # the lease holds


def test_a_clean_mailbox_is_not_claimed(db: Database) -> None:
    with db.session() as session:
        add_mailbox(session)
        assert claim_dirty(session, "a", NOW, lease=LEASE) is None


def test_finishing_a_sync_leaves_the_mailbox_clean(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
        claim = claim_dirty(session, "a", NOW, lease=LEASE)
        assert claim is not None
        assert finish(session, claim, "a", NOW, synced=True)
    with db.session() as session:
        assert claim_dirty(session, "a", NOW + timedelta(minutes=1), lease=LEASE) is None
        row = session.get(MailboxRow, mailbox)
        assert row is not None
        assert row.last_synced_at == NOW
        assert row.lease_owner is None


def test_finishing_several_syncs_at_once_counts_only_the_leases_still_held(db: Database) -> None:
    with db.session() as session:
        ids = [add_mailbox(session, f"{n}@example.com") for n in range(3)]
        mark_dirty(session, ids, NOW)
        claims = claim_dirty_many(session, "a", NOW, lease=LEASE, limit=3)
        session.execute(sa.update(MailboxRow).where(col(MailboxRow.id) == ids[1]).values(lease_owner="b"))
    with db.session() as session:
        finished = finish_synced(session, [(claim, 5) for claim in claims], "a", NOW, reconcile_interval=None)
    with db.session() as session:
        rows = [session.get_one(MailboxRow, mailbox_id) for mailbox_id in ids]

    assert finished == 2
    assert [(row.lease_owner, row.next_sequence, row.last_synced_at) for row in rows] == [
        (None, 5, NOW),
        ("b", 1, None),
        (None, 5, NOW),
    ]
    assert rows[0].synced_generation == rows[0].dirty_generation


def test_a_notification_during_a_sync_keeps_the_mailbox_dirty(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
        claim = claim_dirty(session, "a", NOW, lease=LEASE)
    with db.session() as session:
        mark_dirty(session, [mailbox], NOW + timedelta(seconds=1))
    with db.session() as session:
        assert claim is not None
        finish(session, claim, "a", NOW, synced=True)
    with db.session() as session:
        again = claim_dirty(session, "a", NOW + timedelta(seconds=2), lease=LEASE)
    assert again is not None
    assert again.generation == 2


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_mark_does_not_wait_for_a_commit_holding_its_mailbox_and_is_not_lost(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
    with db.session() as session:
        claim = claim_dirty(session, "a", NOW, lease=LEASE)
    assert claim is not None
    with db.session() as committing:  # a sync commit holds its mailbox's row from its plan to its commit
        assert lock_mailbox(committing, mailbox) is not None
        with db.session() as marking:
            # Waiting for the commit would fail here rather than hang the test.
            marking.connection().exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            assert mark_dirty(marking, [mailbox], NOW + timedelta(seconds=1), notified=True) == 1
        assert finish(committing, claim, "a", NOW, synced=True)
    with db.session() as session:
        # The commit covered the first mark only: the one made meanwhile brings the mailbox back, first lane.
        again = claim_dirty(session, "a", NOW + timedelta(seconds=2), lease=LEASE, notified_only=True)
        assert again is not None
        assert again.generation == 2
        assert session.exec(sa.select(sa.func.count()).select_from(MailboxMarkRow)).one() == (0,)


def test_an_expired_lease_is_taken_over(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
        assert claim_dirty(session, "dead", NOW, lease=LEASE) is not None
    with db.session() as session:
        claim = claim_dirty(session, "alive", NOW + LEASE + timedelta(seconds=1), lease=LEASE)
    assert claim is not None
    assert claim.mailbox_id == mailbox


def test_a_lost_lease_refuses_to_finish(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
        old = claim_dirty(session, "slow", NOW, lease=LEASE)
    with db.session() as session:
        claim_dirty(session, "fast", NOW + LEASE * 2, lease=LEASE)
    with db.session() as session:
        assert old is not None
        assert not finish(session, old, "slow", NOW + LEASE * 2, synced=True)


def test_settle_time_lets_a_burst_gather(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
    settle = timedelta(milliseconds=200)
    with db.session() as session:
        assert claim_dirty(session, "a", NOW + timedelta(milliseconds=100), lease=LEASE, settle=settle) is None
    with db.session() as session:
        assert claim_dirty(session, "a", NOW + timedelta(milliseconds=300), lease=LEASE, settle=settle) is not None


def test_the_longest_waiting_mailbox_is_claimed_first(db: Database) -> None:
    with db.session() as session:
        first = add_mailbox(session, "first@example.com")
        second = add_mailbox(session, "second@example.com")
        mark_dirty(session, [second], NOW)
        mark_dirty(session, [first], NOW + timedelta(seconds=1))
    with db.session() as session:
        claim = claim_dirty(session, "a", NOW + timedelta(seconds=2), lease=LEASE)
    assert claim is not None
    assert claim.mailbox_id == second


def test_a_disabled_mailbox_is_never_claimed(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        row = session.get(MailboxRow, mailbox)
        assert row is not None
        row.status = MailboxStatus.DISABLED
        mark_dirty(session, [mailbox], NOW)
    with db.session() as session:
        assert claim_dirty(session, "a", NOW, lease=LEASE) is None
        assert claim_mailbox(session, mailbox, "a", NOW, lease=LEASE) is None


def test_claiming_a_mailbox_directly_respects_another_owners_lease(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        assert claim_mailbox(session, mailbox, "a", NOW, lease=LEASE) is not None
    with db.session() as session:
        assert claim_mailbox(session, mailbox, "b", NOW, lease=LEASE) is None
        assert claim_mailbox(session, mailbox, "a", NOW, lease=LEASE) is not None


def test_known_subscriptions_are_found_with_their_client_state(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        session.add(
            SubscriptionRow(
                id="sub-1",
                mailbox_id=mailbox,
                source="online",
                resource="/users/x/events",
                client_state="s3cret",
                expires_at=NOW + timedelta(days=2),
            )
        )
    with db.session() as session:
        found = subscriptions(session, ["sub-1", "unknown"])
    assert list(found) == ["sub-1"]
    assert found["sub-1"].mailbox_id == mailbox
    assert found["sub-1"].client_state == "s3cret"


def test_a_notified_mailbox_is_claimed_before_maintenance_that_waited_longer(db: Database) -> None:
    with db.session() as session:
        rolling = [add_mailbox(session, f"roll{n}@example.com") for n in range(50)]
        person = add_mailbox(session, "person@example.com")
        mark_dirty(session, rolling, NOW - timedelta(minutes=5))  # the window roll, five minutes ago
        mark_dirty(session, [person], NOW, notified=True)  # a notification, now
    with db.session() as session:
        first = claim_dirty(session, "a", NOW + timedelta(seconds=1), lease=LEASE)
        second = claim_dirty(session, "b", NOW + timedelta(seconds=1), lease=LEASE)

    assert first is not None
    assert first.mailbox_id == person
    assert second is not None
    assert second.mailbox_id in rolling


def test_a_maintenance_mark_after_a_notification_keeps_the_mailbox_in_the_first_lane(db: Database) -> None:
    with db.session() as session:
        waiting = add_mailbox(session, "waiting@example.com")
        person = add_mailbox(session, "person@example.com")
        mark_dirty(session, [waiting], NOW - timedelta(minutes=5))
        mark_dirty(session, [person], NOW, notified=True)
        mark_dirty(session, [person], NOW)  # the window roll marks it too
    with db.session() as session:
        claim = claim_dirty(session, "a", NOW + timedelta(seconds=1), lease=LEASE)
    assert claim is not None
    assert claim.mailbox_id == person


def test_the_notified_lane_alone_leaves_maintenance_for_later(db: Database) -> None:
    with db.session() as session:
        mailbox = add_mailbox(session)
        mark_dirty(session, [mailbox], NOW)
    with db.session() as session:
        assert claim_dirty(session, "a", NOW + timedelta(seconds=1), lease=LEASE, notified_only=True) is None
        assert claim_dirty(session, "a", NOW + timedelta(seconds=1), lease=LEASE) is not None


def test_a_synced_mailbox_leaves_the_notified_lane(db: Database) -> None:
    with db.session() as session:
        person = add_mailbox(session, "person@example.com")
        other = add_mailbox(session, "other@example.com")
        mark_dirty(session, [person], NOW, notified=True)
        claim = claim_dirty(session, "a", NOW + timedelta(seconds=1), lease=LEASE)
        assert claim is not None
        assert finish(session, claim, "a", NOW + timedelta(seconds=2), synced=True)
    with db.session() as session:
        mark_dirty(session, [other], NOW + timedelta(seconds=3))
        mark_dirty(session, [person], NOW + timedelta(seconds=4))  # maintenance now: waits its turn
    with db.session() as session:
        claim = claim_dirty(session, "a", NOW + timedelta(seconds=5), lease=LEASE)
        assert session.get_one(MailboxRow, person).notified_at is None
    assert claim is not None
    assert claim.mailbox_id == other


def test_mailboxes_synced_together_are_due_for_reconcile_spread_over_half_the_interval(db: Database) -> None:
    interval = timedelta(hours=6)
    with db.session() as session:
        ids = [add_mailbox(session, f"m{n}@example.com") for n in range(200)]
        mark_dirty(session, ids, NOW)
    with db.session() as session:
        for _ in ids:
            claim = claim_dirty(session, "a", NOW, lease=LEASE)
            assert claim is not None
            assert finish(session, claim, "a", NOW, synced=True, reconcile_interval=interval)
            session.flush()
    with db.session() as session:
        due = sorted(session.get_one(MailboxRow, mailbox_id).reconcile_due_at or NOW for mailbox_id in ids)

    assert NOW + interval / 2 <= due[0]
    assert due[-1] <= NOW + interval
    # Evenly over the span: every tenth of it holds between 5 % and 15 % of the mailboxes, none all of them.
    tenths = [0] * 10
    for at in due:
        tenths[min(int((at - NOW - interval / 2) / (interval / 20)), 9)] += 1
    assert all(10 <= count <= 30 for count in tenths), tenths


def test_the_work_of_an_instance_gone_is_free_at_once_and_its_commands_go_to_the_heir(db: Database) -> None:
    with db.session() as session:
        syncing, delivering = add_mailbox(session), add_mailbox(session, "bob@example.com")
        mark_dirty(session, [syncing], NOW)
        assert claim_dirty(session, "gone", NOW, lease=LEASE) is not None
        row = session.get_one(MailboxRow, delivering)
        row.delivery_owner, row.delivery_lease_until = "gone", NOW + LEASE
        session.add(CommandRow(id="c1", scope="bob@example.com", kind=CommandKind.CREATE, payload={}, owner="gone"))
        session.add(CommandRow(id="c2", scope="bob@example.com", kind=CommandKind.CREATE, payload={}, owner="alive"))
    with db.session() as session:
        assert lease_holders(session) == {"gone", "alive"}
        release_gone(session, {"gone"}, "heir")
    with db.session() as session:
        assert lease_holders(session) == {"heir", "alive"}
        assert session.get_one(MailboxRow, delivering).delivery_owner is None
        assert session.get_one(CommandRow, "c1").owner == "heir"
        claim = claim_dirty(session, "heir", NOW, lease=LEASE)  # long before the lease ends
    assert claim is not None
    assert claim.mailbox_id == syncing


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite serves one instance
def test_an_instance_is_connected_while_it_has_a_connection_open(database_url: DatabaseUrl) -> None:
    first = Database(database_url.url, schema=database_url.schema)
    second = Database(database_url.url, schema=database_url.schema)
    try:
        first.upgrade()
        first.name_instance("host:1:aaaaaa")
        second.name_instance("host:2:bbbbbb")
        with second.session() as session:
            session.execute(sa.text("SELECT 1"))
        with first.session() as session:
            named = {"host:1:aaaaaa", "host:2:bbbbbb", "host:3:cccccc"}
            assert connected_instances(session, named) == {"host:1:aaaaaa", "host:2:bbbbbb"}
        second.close()  # its process ended: its connections are closed
        # PostgreSQL drops a closed connection's backend from pg_stat_activity a moment later, not at once.
        deadline = time.monotonic() + 10
        while True:
            with first.session() as session:
                connected = connected_instances(session, named)
            if connected == {"host:1:aaaaaa"} or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert connected == {"host:1:aaaaaa"}
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    "trouble",
    [
        {"status": SourceStatus.UNREACHABLE},
        {"held_until": NOW + LEASE},
        {"failures": 1},
    ],
)
def test_locking_a_mailbox_reads_whether_its_source_has_a_failure_to_clear(
    db: Database, trouble: dict[str, object]
) -> None:
    with db.session() as session:
        session.add(SourceRow(name="exchange", kind=SourceKind.GRAPH))
        mailbox = add_mailbox(session)
    with db.session() as session:
        well = lock_mailbox(session, mailbox)
    with db.session() as session:
        session.execute(sa.update(SourceRow).values(**trouble))
    with db.session() as session:
        failing = lock_mailbox(session, mailbox)
        assert source_works(session, "exchange", NOW)
    with db.session() as session:
        cleared = lock_mailbox(session, mailbox)

    assert well is not None
    assert not well.source_failing
    assert failing is not None
    assert failing.source_failing
    assert cleared is not None
    assert not cleared.source_failing


def test_a_roll_marks_more_mailboxes_than_a_statement_takes_parameters(db: Database) -> None:
    # SQLite takes 32,766 parameters to a statement and PostgreSQL 65,535: 100,000 mailboxes' roll took them all.
    many = 70_000
    with db.session() as session:
        session.execute(
            sa.insert(MailboxRow), [{"address": f"m{n}@example.com", "source": "exchange"} for n in range(many)]
        )
        ids = list(session.execute(sa.select(MailboxRow.id)).scalars())
        marked = mark_dirty(session, ids, NOW)
    with db.session() as session:
        dirty = session.execute(
            sa.select(sa.func.count()).where(col(MailboxRow.dirty_generation) > col(MailboxRow.synced_generation))
        ).scalar_one()

    assert (marked, dirty) == (many, many)


def test_one_claim_takes_the_notified_lane_first_then_maintenance_longest_waiting_first(db: Database) -> None:
    with db.session() as session:
        early, late = add_mailbox(session, "early@example.com"), add_mailbox(session, "late@example.com")
        person = add_mailbox(session, "person@example.com")
        mark_dirty(session, [late], NOW - timedelta(minutes=1))
        mark_dirty(session, [early], NOW - timedelta(minutes=2))
        mark_dirty(session, [person], NOW, notified=True)
    with db.session() as session:
        claims = claim_dirty_many(session, "a", NOW + timedelta(seconds=1), lease=LEASE, limit=3)

    assert [claim.mailbox_id for claim in claims] == [person, early, late]


def test_a_claim_reads_the_dirty_index_in_order_without_sorting_every_dirty_mailbox(db: Database) -> None:
    if db.backend != "sqlite":
        pytest.skip("PostgreSQL's plan depends on its statistics; SQLite's is fixed by the schema")
    executed: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM mailbox" in statement and "ORDER BY" in statement:
            executed.append((statement, parameters))

    with db.session() as session:
        add_mailbox(session)  # clean: both lanes are read
    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.session() as session:
            claim_dirty_many(session, "a", NOW, lease=LEASE, limit=4, source="exchange")
            cursor = session.connection().connection.cursor()
            plans = [cursor.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall() for sql, parameters in executed]
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)

    assert len(plans) == 2  # the notified lane, then maintenance
    for plan in plans:
        details = " | ".join(str(row[-1]) for row in plan)
        assert "ix_mailbox_dirty" in details, details
        assert "TEMP B-TREE" not in details, details  # no sort of every dirty mailbox
