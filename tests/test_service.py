"""End to end: Exchange Online (the Graph emulator) → the bridge → the workforce system (its receiver emulator).

Everything is real and on loopback: the bridge's service with its HTTP receiver, subscription manager, sync and
delivery workers; azure-identity and msgraph-sdk against the emulator over TLS; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bridge.store import MailboxStatus, SubscriptionRow
from tests.world import World, at, ready, wait_until


async def test_create_update_delete_each_reach_the_workforce_system_once(world: World) -> None:
    await ready(world)
    item = world.outlook("Customer visit")
    [created] = await world.changes(1)
    world.graph.update_event_as_outlook(world.mailbox, item, {"start": at(1, 11), "end": at(1, 12)})
    await world.changes(2)
    world.graph.delete_event_as_outlook(world.mailbox, item)
    changes = await world.changes(3)

    assert [c["type"] for c in changes] == ["appointment.created", "appointment.updated", "appointment.deleted"]
    assert [c["sequence"] for c in changes] == [1, 2, 3]
    assert created["appointment"]["template"] == "meeting"
    assert created["appointment"]["subject"] == "Customer visit"
    assert created["workforce_id"] == "E1001"
    assert changes[1]["appointment"]["start"].endswith("T11:00:00Z")
    assert len({c["id"] for c in changes}) == 3
    assert await world.settled() == changes  # nothing more


async def test_ignored_private_and_unmapped_appointments(world: World) -> None:
    await ready(world)
    world.outlook("*Dentist", start=8, end=9)
    world.outlook("Focus", start=10, end=11, show_as="free")
    world.outlook("Doctor", start=12, end=13, sensitivity="private")
    world.outlook("Vacation", days=2, start=0, end=24, show_as="oof", isAllDay=True)

    changes = await world.settled()

    shown = {c["appointment"]["template"]: c["appointment"] for c in changes}
    assert set(shown) == {"meeting", "absence"}
    assert "subject" not in shown["meeting"]  # private: shown without its subject
    assert shown["absence"]["all_day"] is True


async def test_duplicated_notifications_cause_no_duplicate_changes(world: World) -> None:
    await ready(world)
    world.graph.duplicate_notifications(10)
    for hour in range(8, 13):
        world.outlook(f"Meeting {hour}", start=hour, end=hour + 0.5)

    changes = await world.settled()

    assert sorted(c["appointment"]["subject"] for c in changes) == sorted(f"Meeting {h}" for h in range(8, 13))


async def test_a_recurring_series_is_expanded_only_inside_the_window(world: World) -> None:
    await ready(world)
    series = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "noEnd", "startDate": at(1, 0)["dateTime"][:10]},
    }
    world.outlook("Stand-up", start=7, end=7.25, recurrence=series)

    changes = await world.settled(quiet_s=1.5)

    assert len(changes) == 89  # days 1..89 of the default 90-day window
    assert {c["appointment"]["subject"] for c in changes} == {"Stand-up"}


async def test_the_window_rolls_at_midnight(world: World) -> None:
    await ready(world)
    world.outlook("Tomorrow", days=1)
    world.outlook("Far", days=95)
    await world.changes(1)

    world.clock.offset = timedelta(days=6)  # six days later the window reaches day 95
    await world.service.sync.mark_due()
    changes = await world.settled()

    assert [c["appointment"]["subject"] for c in changes] == ["Tomorrow", "Far"]  # "Tomorrow" aged out silently


async def test_a_missed_lifecycle_event_resyncs_what_was_dropped(world: World) -> None:
    await ready(world)
    world.graph.drop_notifications(5)
    world.outlook("Dropped notification")
    await asyncio.sleep(0.5)
    assert world.workforce.changes == []

    world.graph.send_lifecycle(world.graph.subscriptions()[0]["id"], "missed")

    [change] = await world.changes(1)
    assert change["appointment"]["subject"] == "Dropped notification"


async def test_a_removed_subscription_is_recreated_and_the_mailbox_resynced(world: World) -> None:
    await ready(world)
    old = world.graph.subscriptions()[0]["id"]
    world.graph.send_lifecycle(old, "subscriptionRemoved")
    world.outlook("While unsubscribed")

    await wait_until(lambda: [s["id"] for s in world.graph.subscriptions()] not in ([], [old]))
    [change] = await world.changes(1)
    assert change["appointment"]["subject"] == "While unsubscribed"


async def test_reauthorization_required_renews_the_subscription(world: World) -> None:
    await ready(world)
    subscription_id = world.graph.subscriptions()[0]["id"]
    world.graph.send_lifecycle(subscription_id, "reauthorizationRequired")

    def renewed() -> bool:
        with world.service.db.session() as session:
            row = session.get(SubscriptionRow, subscription_id)
            return row is not None and row.renewed_at is not None and row.reauthorize_requested_at is None

    await wait_until(renewed)


async def test_dropped_notifications_are_caught_by_the_reconcile(world: World) -> None:
    await ready(world)
    world.graph.drop_notifications(10)
    world.outlook("Never notified")
    await asyncio.sleep(0.5)
    assert world.workforce.changes == []

    world.clock.offset = timedelta(hours=7)  # past the 6-hour reconcile interval
    await world.service.sync.mark_due()

    [change] = await world.changes(1)
    assert change["appointment"]["subject"] == "Never notified"


async def test_an_expired_delta_token_emits_no_spurious_changes(world: World) -> None:
    await ready(world)
    world.outlook("Existing")
    await world.changes(1)
    world.graph.expire_delta_tokens(world.mailbox)

    world.outlook("New after expiry", start=11, end=12)
    changes = await world.settled()

    assert [c["appointment"]["subject"] for c in changes] == ["Existing", "New after expiry"]


async def test_a_429_storm_delays_but_loses_nothing(world: World) -> None:
    await ready(world)
    world.graph.throttle(8, user=world.mailbox, retry_after=1)
    world.outlook("Through the storm")

    [change] = await world.changes(1, within=30)
    assert change["appointment"]["subject"] == "Through the storm"


async def test_the_workforce_system_down_and_back_gets_everything_in_order(world: World) -> None:
    await ready(world)
    world.workforce.fail(status=503)
    for hour in range(8, 14):
        world.outlook(f"Meeting {hour}", start=hour, end=hour + 0.5)
    await asyncio.sleep(1.5)
    assert world.workforce.changes == []

    world.workforce.recover()
    changes = await world.changes(6, within=30)

    assert [c["sequence"] for c in changes] == [1, 2, 3, 4, 5, 6]


async def test_the_mass_delete_guard_pauses_and_an_admin_resumes(world: World) -> None:
    await ready(world)
    items = [world.outlook(f"Meeting {hour}", start=hour, end=hour + 0.5) for hour in range(8, 12)]
    await world.changes(4)
    for item in items:
        world.graph.delete_event_as_outlook(world.mailbox, item)

    await wait_until(lambda: world.mailbox_row().status is MailboxStatus.PAUSED)
    assert len(await world.settled()) == 4  # nothing emitted while paused

    from bridge.admin import enable

    with world.service.db.session() as session:
        enable(session, world.mailbox, world.clock())
    changes = await world.changes(8)
    assert [c["type"] for c in changes[4:]] == ["appointment.deleted"] * 4


async def test_a_mapping_change_re_maps_live(world: World) -> None:
    await ready(world)
    world.outlook("Busy one")
    world.outlook("Maybe", start=12, end=13, show_as="tentative")
    await world.changes(2)

    mapping_path = world.config_path.parent / "mapping.yaml"
    mapping_path.write_text(mapping_path.read_text().replace("busy: meeting", "busy: tentative"))

    changes = await world.changes(3, within=20)
    assert changes[2]["type"] == "appointment.updated"
    assert changes[2]["appointment"]["subject"] == "Busy one"
    assert changes[2]["appointment"]["template"] == "tentative"
    assert len(await world.settled()) == 3


async def test_a_restart_recreates_no_subscription(world: World) -> None:
    await ready(world)
    before = world.graph.subscriptions()[0]["id"]
    await world.restart()

    await asyncio.sleep(0.5)
    assert [s["id"] for s in world.graph.subscriptions()] == [before]
