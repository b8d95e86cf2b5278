"""The sync engine end to end: many mailboxes at once, within Graph's limits; and its two lanes, a person's change
synced before the maintenance (window roll, first syncs) that was waiting longer (bridge/store/work.py,
`claim_dirty_many`; the place kept in bridge/mailbox_sync.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bridge.config import SyncConfig
from bridge.mailbox_sync import MailboxSync
from bridge.sources.graph import GraphSource
from bridge.store import Database, MailboxRow, MailboxStatus, MirrorRow, OutboxRow
from bridge.store.mirror import delta_states
from bridge.store.work import claim_dirty_many, mark_dirty, reconcile_due
from bridge.templates import default_mapping_path, load_mapping
from emulators.ews_throttling import budget
from emulators.graph import GraphEmulator
from tests.world import (
    ADMIN_TOKEN,
    CROWD,
    ONPREM_BOUND,
    ONPREM_CROWD,
    SERVICE_ACCOUNT,
    World,
    at,
    onprem_exchange,
    ready,
    wait_until,
)

ROLLING = 60
MAPPING = load_mapping(default_mapping_path())


def _waiting(world: World) -> int:
    """Active mailboxes marked dirty and not synced since."""
    with world.service.db.session() as session:
        return int(
            session.execute(
                sa.select(sa.func.count()).where(
                    col(MailboxRow.status) == MailboxStatus.ACTIVE,
                    col(MailboxRow.dirty_generation) > col(MailboxRow.synced_generation),
                )
            ).scalar_one()
        )


async def test_a_notified_change_is_synced_before_the_window_roll_of_many_mailboxes(world: World) -> None:
    await ready(world)
    colleagues = [world.graph.add_user(f"colleague{n}@contoso.com", f"Colleague {n}") for n in range(ROLLING)]
    roster = [{"address": user.user_principal_name, "workforce_id": f"C{n}"} for n, user in enumerate(colleagues)]
    status, _, _ = await world.api("POST", "/api/v1/admin/mailboxes/import", {"mailboxes": roster}, token=ADMIN_TOKEN)
    assert status == 200
    await wait_until(lambda: len(world.graph.subscriptions()) == ROLLING + 1 and _waiting(world) == 0, within=90)

    world.graph.set_latency(150)  # each maintenance read now takes a while: the roll is a backlog
    world.clock.offset = timedelta(days=1)
    assert await world.service.sync.mark_due() == ROLLING + 1  # every mailbox rolls its window
    # The last enrolled: claimed oldest mark first (then by id), it would wait for every other mailbox's roll.
    world.graph.create_event_as_outlook(
        colleagues[-1].user_principal_name,
        {"subject": "Changed during the roll", "start": at(2, 9), "end": at(2, 10), "showAs": "busy"},
    )
    [change] = await world.changes(1, within=30)
    still_rolling = _waiting(world)

    assert change["appointment"]["subject"] == "Changed during the roll"
    assert change["mailbox"] == colleagues[-1].user_principal_name.lower()
    assert still_rolling >= ROLLING // 3


async def test_a_mailbox_is_reconciled_at_its_own_due_time(world: World) -> None:
    await ready(world)
    row = world.mailbox_row()
    assert row.id is not None
    assert row.last_synced_at is not None
    due = reconcile_due(row.id, row.last_synced_at, world.service.config.sync.reconcile_interval)
    assert row.reconcile_due_at == due

    # The due time is 3 to 6 hours ahead: it may fall after 00:00 UTC, when the window roll would mark the mailbox
    # too. The marking is checked at a due time earlier today instead, so the day never changes.
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date(), time(), tzinfo=UTC)
    due = midnight + max((now - midnight) / 2, timedelta(minutes=2))
    with world.service.db.session() as session:
        session.execute(sa.update(MailboxRow).where(col(MailboxRow.id) == row.id).values(reconcile_due_at=due))
    world.clock.offset = due - datetime.now(UTC) - timedelta(minutes=1)
    assert await world.service.sync.mark_due() == 0
    world.clock.offset = due - datetime.now(UTC) + timedelta(minutes=1)
    assert await world.service.sync.mark_due() == 1


# Per mailbox of the crowd: 6 single appointments and 6 daily series of 3 occurrences.
CROWD_CHANGES = len(CROWD) * (6 + 6 * 3)


def most_in_flight(log: list[dict[str, Any]]) -> int:
    """The most requests the emulator's log shows under way at one moment, whatever their mailbox."""
    edges = []
    for entry in log:
        ended = datetime.fromisoformat(entry["time"][:26])
        edges += [(ended - timedelta(milliseconds=entry["ms"]), 1), (ended, -1)]
    return _most(edges)


def _most(edges: list[tuple[datetime, int]]) -> int:
    """The most intervals open at once, given as (moment, +1 at a start / -1 at an end); an end before a start
    at the same moment."""
    under_way = most = 0
    for _, step in sorted(edges):
        under_way += step
        most = max(most, under_way)
    return most


async def test_a_first_start_reads_many_mailboxes_at_once_within_graphs_limits(crowd: World) -> None:
    await crowd.workforce.wait_for(CROWD_CHANGES, within=60)
    await wait_until(lambda: len(crowd.graph.subscriptions()) == len(CROWD) + 1, within=30)

    stats = crowd.graph.stats()
    assert len(crowd.workforce.changes) == CROWD_CHANGES
    assert max(stats["peakConcurrency"].values()) <= 4  # Graph's MailboxConcurrency limit, never reached past
    assert stats["byStatus"].get("429", 0) == 0
    assert stats["requestsBeforeRetryAfter"] == 0
    assert most_in_flight([entry for entry in stats["log"] if entry["user"]]) > 4  # several mailboxes side by side


async def test_a_first_start_reads_many_onprem_mailboxes_within_the_service_account_s_limit(
    onprem_crowd: World,
) -> None:
    await onprem_crowd.workforce.wait_for(len(ONPREM_CROWD) * 4, within=90)

    stats = onprem_exchange(onprem_crowd).stats()
    account = budget(SERVICE_ACCOUNT[0], "", impersonating=False)
    requests = [entry for entry in stats["log"] if entry["operation"] != "GetStreamingEvents"]
    edges = []
    for entry in requests:
        started = datetime.fromtimestamp(entry["started"], UTC)
        edges += [(started, 1), (started + timedelta(milliseconds=entry["durationMs"]), -1)]
    assert {entry["account"] for entry in requests} == {SERVICE_ACCOUNT[0]}  # one budget: the account's
    assert 1 < _most(edges) <= ONPREM_BOUND  # several at once, never past the source's bound
    assert stats["peakConcurrency"][account] <= ONPREM_BOUND  # the emulator's own count agrees
    assert "ErrorExceededConnectionCount" not in stats["codes"]  # EWSMaxConcurrency never reached
    assert "ErrorServerBusy" not in stats["codes"]


# -- sync commits grouped (`GroupCommit`): one mailbox's lost lease or pause costs the others nothing ----------------

GROUPED = [f"group{n}@contoso.com" for n in range(4)]


def _mirrored(db: Database, address: str) -> int:
    with db.session() as session:
        mailbox = session.exec(select(MailboxRow).where(MailboxRow.address == address)).one()
        return int(
            session.execute(
                sa.select(sa.func.count()).select_from(MirrorRow).where(col(MirrorRow.mailbox_id) == mailbox.id)
            ).scalar_one()
        )


def _sequences(db: Database, address: str) -> list[int]:
    with db.session() as session:
        rows = session.execute(
            sa.select(col(OutboxRow.sequence))
            .join(MailboxRow, col(MailboxRow.id) == col(OutboxRow.mailbox_id))
            .where(col(MailboxRow.address) == address)
            .order_by(col(OutboxRow.id))
        )
        return list(rows.scalars())


async def _sync_all(db: Database, sync: MailboxSync, *, lose: str | None = None) -> dict[str, BaseException | None]:
    """Claim every grouped mailbox and sync them side by side; `lose`: that one's lease is taken over meanwhile.
    Returns what each sync raised, by address."""
    with db.session() as session:
        ids = [session.exec(select(MailboxRow.id).where(MailboxRow.address == a)).one() for a in GROUPED]
        mark_dirty(session, [i for i in ids if i is not None], NOW_SYNC)
    with db.session() as session:
        claims = claim_dirty_many(session, "me", NOW_SYNC, lease=timedelta(minutes=2), limit=len(GROUPED))
        states = delta_states(session, [claim.mailbox_id for claim in claims])
        if lose is not None:
            session.execute(sa.update(MailboxRow).where(col(MailboxRow.address) == lose).values(lease_owner="other"))
    assert len(claims) == len(GROUPED)
    raised = await asyncio.gather(
        *(sync.sync_claimed(claim, states.get(claim.mailbox_id)) for claim in claims), return_exceptions=True
    )
    return {claim.address: outcome for claim, outcome in zip(claims, raised, strict=True)}


NOW_SYNC = datetime.now(UTC)


async def _synced_once(db: Database, graph_emulator: GraphEmulator, sync: MailboxSync) -> dict[str, list[str]]:
    """The grouped mailboxes, five appointments each, synced: their event ids by address."""
    events: dict[str, list[str]] = {}
    for address in GROUPED:
        graph_emulator.add_user(address)
        with db.session() as session:
            session.add(MailboxRow(address=address, workforce_id=address, source="online"))
        events[address] = [
            graph_emulator.create_event_as_outlook(
                address, {"subject": f"Visit {n}", "start": at(1, 9 + n), "end": at(1, 10 + n)}
            )["id"]
            for n in range(5)
        ]
    assert set((await _sync_all(db, sync)).values()) == {None}
    assert [_sequences(db, address) for address in GROUPED] == [[1, 2, 3, 4, 5]] * len(GROUPED)
    return events


async def test_grouped_commits_keep_each_mailbox_s_own_outcome(
    db: Database, online_source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    sync = MailboxSync(db, {"online": online_source}, lambda: MAPPING, SyncConfig(), "me")
    events = await _synced_once(db, graph_emulator, sync)

    paused, lost, *kept = GROUPED
    for event_id in events[paused]:  # every appointment gone in one read: the mass-delete guard
        graph_emulator.delete_event_as_outlook(paused, event_id)
    for address in GROUPED[1:]:
        graph_emulator.create_event_as_outlook(address, {"subject": "Later", "start": at(2, 9), "end": at(2, 10)})
    assert set((await _sync_all(db, sync, lose=lost)).values()) == {None}

    with db.session() as session:
        rows = {
            row.address: row for row in session.exec(select(MailboxRow).where(col(MailboxRow.address).in_(GROUPED)))
        }
    assert rows[paused].status is MailboxStatus.PAUSED
    assert (_mirrored(db, paused), _sequences(db, paused)) == (5, [1, 2, 3, 4, 5])
    # The reading of the mailbox taken over is dropped: nothing written, the other instance's lease left alone.
    assert (_mirrored(db, lost), _sequences(db, lost), rows[lost].lease_owner) == (5, [1, 2, 3, 4, 5], "other")
    for address in kept:
        assert (_mirrored(db, address), _sequences(db, address)) == (6, [1, 2, 3, 4, 5, 6])
        assert rows[address].lease_owner is None
        assert rows[address].synced_generation == rows[address].dirty_generation


async def test_a_group_the_database_refuses_is_committed_mailbox_by_mailbox(
    db: Database, online_source: GraphSource, graph_emulator: GraphEmulator
) -> None:
    sync = MailboxSync(db, {"online": online_source}, lambda: MAPPING, SyncConfig(), "me")
    await _synced_once(db, graph_emulator, sync)
    broken, *kept = GROUPED
    with db.session() as session:  # its next change would take a sequence number it already used
        session.execute(sa.update(MailboxRow).where(col(MailboxRow.address) == broken).values(next_sequence=3))
    for address in GROUPED:
        graph_emulator.create_event_as_outlook(address, {"subject": "Later", "start": at(2, 9), "end": at(2, 10)})

    raised = await _sync_all(db, sync)

    assert isinstance(raised.pop(broken), IntegrityError)
    assert set(raised.values()) == {None}

    assert (_mirrored(db, broken), _sequences(db, broken)) == (5, [1, 2, 3, 4, 5])
    for address in kept:
        assert (_mirrored(db, address), _sequences(db, address)) == (6, [1, 2, 3, 4, 5, 6])
