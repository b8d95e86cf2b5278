"""The sync's two lanes, end to end: a person's change is synced before the maintenance (window roll, first
syncs) that was waiting longer (bridge/store/work.py, `claim_dirty`; the slot kept in bridge/mailbox_sync.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from bridge.store import MailboxRow, MailboxStatus
from bridge.store.work import reconcile_due
from tests.world import ADMIN_TOKEN, World, at, ready, wait_until

ROLLING = 60


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

    world.clock.offset = due - datetime.now(UTC) - timedelta(minutes=1)
    assert await world.service.sync.mark_due() == 0
    world.clock.offset = due - datetime.now(UTC) + timedelta(minutes=1)
    assert await world.service.sync.mark_due() == 1
