"""One fault stays one fault: end to end, a failing source, mailbox or workforce endpoint never holds up the
others (SQLite and PostgreSQL).

Each test breaks one thing in a running hybrid deployment (the Graph emulator for Adele and Bob, the EWS
emulator for Nestor) with the emulators' own fault controls, checks that the healthy mailboxes' changes keep
arriving while it is broken, and that what was held arrives once it is mended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import col, select

from bridge.store import MailboxRow, SubscriptionRow
from bridge.store.work import mark_dirty
from tests.world import (
    NARROW_COLLEAGUE,
    ONLINE_COLLEAGUE,
    ONPREM_MAILBOX,
    World,
    at,
    moment,
    onprem_exchange,
    wait_until,
)

BOB = ONLINE_COLLEAGUE[0]


async def streaming(world: World, online_mailboxes: int = 2) -> None:
    """The online mailboxes subscribed, every mailbox synced and idle, the on-premises one watched by a stream."""
    await wait_until(lambda: len(world.graph.subscriptions()) == online_mailboxes)

    def idle() -> bool:
        with world.service.db.session() as session:
            if len(session.exec(select(SubscriptionRow)).all()) < online_mailboxes:
                return False  # the bridge's record commits with the catch-up mark it asks for
        return all(
            row.last_synced_at is not None and row.dirty_generation == row.synced_generation for row in rows(world)
        )

    await wait_until(idle)
    await wait_until(lambda: any(s["connected"] for s in onprem_exchange(world).subscriptions()))


def rows(world: World) -> list[MailboxRow]:
    with world.service.db.session() as session:
        return list(session.exec(select(MailboxRow)).all())


def mark(world: World, *addresses: str, notified: bool = False) -> None:
    """What a reconcile (or, `notified`, a notification) does: the mailboxes need a read, all in one transaction."""
    with world.service.db.session() as session:
        ids = session.exec(select(MailboxRow.id).where(col(MailboxRow.address).in_([a.lower() for a in addresses])))
        found = [mailbox_id for mailbox_id in ids if mailbox_id is not None]
        assert len(found) == len(addresses)
        mark_dirty(session, found, datetime.now(UTC), notified=notified)


def online(world: World, subject: str, user: str | None = None) -> None:
    world.graph.create_event_as_outlook(
        user or world.mailbox, {"subject": subject, "start": at(1, 9), "end": at(1, 10), "showAs": "busy"}
    )


def onprem(world: World, subject: str) -> None:
    onprem_exchange(world).create_item_as_outlook(
        ONPREM_MAILBOX, subject=subject, start=moment(1, 9), end=moment(1, 10), free_busy="Busy"
    )


def arrived(world: World, subject: str) -> Callable[[], bool]:
    return lambda: any(change["appointment"].get("subject") == subject for change in world.workforce.changes)


async def readyz(world: World) -> tuple[int, Any]:
    status, body, _ = await world.api("GET", "/readyz")
    return status, body


async def source_state(world: World, name: str, state: str, within: float = 15.0) -> tuple[int, Any]:
    """/readyz once it shows source `name` in `state`."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        status, body = await readyz(world)
        if body["sources"][name]["state"] == state:
            return status, body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"source {name} stayed {body['sources'][name]['state']}, never {state}")
        await asyncio.sleep(0.1)


async def test_ews_unreachable_holds_only_its_own_mailboxes(hybrid_team: World) -> None:
    world = hybrid_team
    await streaming(world)
    port = urlsplit(onprem_exchange(world).base_url).port
    assert port is not None
    await onprem_exchange(world).stop()
    mark(world, ONPREM_MAILBOX)

    status, body = await source_state(world, "onprem", "unreachable")
    online(world, "Online while on-prem is down")
    await wait_until(arrived(world, "Online while on-prem is down"))

    assert (status, body["status"]) == (200, "degraded")
    assert body["sources"]["onprem"]["since"] is not None
    assert body["sources"]["online"]["state"] == "ok"

    await onprem_exchange(world).start(port=port)
    onprem(world, "On-prem is back")
    await wait_until(arrived(world, "On-prem is back"), within=30)
    status, body = await source_state(world, "onprem", "ok")  # cleared by the first success
    assert (status, body["status"]) == (200, "ready")


async def test_ews_answering_garbage_holds_only_its_own_mailboxes(hybrid_team: World) -> None:
    world = hybrid_team
    await streaming(world)
    onprem_exchange(world).garbage(10_000, mailbox=ONPREM_MAILBOX, operation="SyncFolderItems")
    onprem_exchange(world).garbage(10_000, mailbox=ONPREM_MAILBOX, operation="FindItem")
    onprem(world, "Held behind garbage")
    mark(world, ONPREM_MAILBOX)

    await source_state(world, "onprem", "unreachable")
    online(world, "Online beside the garbage")
    online(world, "Bob beside the garbage", BOB)
    await wait_until(arrived(world, "Online beside the garbage"))
    await wait_until(arrived(world, "Bob beside the garbage"))
    reads = onprem_exchange(world).stats()["operations"].get("SyncFolderItems", 0)
    await asyncio.sleep(1.0)
    # Held as a whole and probed with one mailbox after each hold (200 ms doubling to 1 s here), not read in a loop.
    assert onprem_exchange(world).stats()["operations"].get("SyncFolderItems", 0) - reads <= 4

    onprem_exchange(world).clear_faults()
    await wait_until(arrived(world, "Held behind garbage"), within=15)
    await source_state(world, "onprem", "ok")


async def test_an_error_server_busy_storm_throttles_only_the_onprem_mailbox(hybrid_team: World) -> None:
    world = hybrid_team
    await streaming(world)
    onprem_exchange(world).server_busy(10_000, back_off_ms=1000, mailbox=ONPREM_MAILBOX)
    onprem(world, "Held behind the storm")
    mark(world, ONPREM_MAILBOX)
    await wait_until(lambda: onprem_exchange(world).stats()["codes"].get("ErrorServerBusy", 0) > 0)

    for n in range(3):
        online(world, f"Online during the storm {n}")
        await wait_until(arrived(world, f"Online during the storm {n}"))
    busy = onprem_exchange(world).stats()["codes"].get("ErrorServerBusy", 0)
    await asyncio.sleep(1.0)
    # Exchange's BackOffMilliseconds is honoured: about one read a second, not a loop.
    assert onprem_exchange(world).stats()["codes"].get("ErrorServerBusy", 0) - busy <= 3

    onprem_exchange(world).clear_faults()
    mark(world, ONPREM_MAILBOX)
    await wait_until(arrived(world, "Held behind the storm"), within=15)


async def test_a_graph_source_with_revoked_credentials_is_held_while_onprem_goes_on(hybrid_team: World) -> None:
    world = hybrid_team
    await streaming(world)
    app = next(iter(world.graph.state.apps.values()))
    old_secret = app.client_secret
    world.graph.rotate_secret()
    world.graph.clear_stats()
    online(world, "Made while the secret was wrong")  # its notification marks Adele dirty

    status, body = await source_state(world, "online", "auth_failed")
    assert (status, body["status"]) == (200, "degraded")  # on-prem still works
    for n in range(3):
        onprem(world, f"On-prem while online is refused {n}")
        await wait_until(arrived(world, f"On-prem while online is refused {n}"))
    mark(world, world.mailbox)
    mark(world, BOB)
    world.graph.clear_stats()
    await asyncio.sleep(2.0)
    stats = world.graph.stats()
    # Held as a whole: one probe per hold (500 ms doubling to 2 s here), straight to Entra, never a loop of 401s.
    assert stats["byStatus"].get("401", 0) <= 3
    assert stats["byRoute"].get("token", 0) <= 3

    world.graph.rotate_secret(secret=old_secret)  # the administrator puts the right secret back
    await wait_until(arrived(world, "Made while the secret was wrong"), within=15)
    await source_state(world, "online", "ok")


async def test_the_workforce_endpoint_down_holds_delivery_not_sync(hybrid_team: World) -> None:
    world = hybrid_team
    await streaming(world)
    world.workforce.fail(status=503)
    online(world, "Online while workforce is down")
    onprem(world, "On-prem while workforce is down")

    async def backlog() -> int:
        return int((await readyz(world))[1]["backlog"]["changes"])

    deadline = asyncio.get_running_loop().time() + 15
    while await backlog() < 2:
        assert asyncio.get_running_loop().time() < deadline, "the changes were never synced into the outbox"
        await asyncio.sleep(0.1)
    status, feed, _ = await world.api("GET", "/api/v1/changes?after=0")
    assert status == 200
    subjects = {change["appointment"].get("subject") for change in feed["changes"]}
    assert {"Online while workforce is down", "On-prem while workforce is down"} <= subjects

    world.workforce.recover()
    await wait_until(arrived(world, "Online while workforce is down"), within=15)
    await wait_until(arrived(world, "On-prem while workforce is down"), within=15)
    assert world.workforce.stats()["anomalies"] == []


async def test_one_mailbox_whose_reads_fail_unexpectedly_backs_off_alone(hybrid_team: World) -> None:
    world = hybrid_team
    await streaming(world)
    world.graph.malformed_answers(10_000, user=BOB)
    online(world, "Bob behind the broken answers", BOB)
    mark(world, BOB)
    await wait_until(lambda: world.graph.stats()["byUser"].get(BOB, 0) > 0)

    for n in range(3):
        online(world, f"Adele beside the broken mailbox {n}")
        onprem(world, f"Nestor beside the broken mailbox {n}")
        await wait_until(arrived(world, f"Adele beside the broken mailbox {n}"))
        await wait_until(arrived(world, f"Nestor beside the broken mailbox {n}"))
    status, body = await readyz(world)
    assert (status, body["sources"]["online"]["state"]) == (200, "ok")  # one mailbox's bug is not the source's

    world.graph.clear_faults()
    mark(world, BOB)
    await wait_until(arrived(world, "Bob behind the broken answers"), within=15)


async def test_a_relayed_command_failing_unexpectedly_is_refused_alone(hybrid_team: World) -> None:
    world = hybrid_team
    await streaming(world)
    world.graph.malformed_answers(10, user=BOB)
    body = {"template": "absence", "start": moment(3, 0).isoformat(), "end": moment(4, 0).isoformat()}

    status, problem, headers = await world.api("POST", f"/api/v1/mailboxes/{BOB}/appointments", body)
    ok, _, _ = await world.api("POST", f"/api/v1/mailboxes/{world.mailbox}/appointments", body)

    assert (status, headers.get("Retry-After")) == (503, "30")
    assert "unexpectedly" in problem["detail"]
    assert ok == 201  # the relay goes on for everyone else


async def test_a_lane_with_one_place_still_reads_for_maintenance(tight_team: World) -> None:
    """Two places, two sources: each lane has one place, and that one is not kept for notified mailboxes (it is
    the lane's only one; its claims take notified mailboxes first anyway), so first syncs and reconciles happen."""
    world = tight_team
    await streaming(world)
    mark(world, world.mailbox, BOB, ONPREM_MAILBOX)  # a reconcile of every mailbox: maintenance reads

    def idle() -> bool:
        return all(row.dirty_generation == row.synced_generation for row in rows(world))

    await wait_until(idle, within=20)


async def test_a_slow_source_leaves_a_place_for_the_other(narrow_team: World) -> None:
    """Three places (`sync.concurrency: 3`), two sources: Graph answering slowly with three mailboxes to read takes
    two places, not all three (a lane leaves one place for each other source), so Nestor's change goes through
    the third at once instead of waiting for a slow Graph read to end."""
    world = narrow_team
    await streaming(world, online_mailboxes=3)
    online_team = [world.mailbox, BOB, NARROW_COLLEAGUE[0]]
    world.graph.drop_notifications(len(online_team))  # they are marked below, in one transaction
    for address in online_team:
        online(world, f"{address} while Graph is slow", address)
    world.graph.set_latency(5000)
    mark(world, *online_team, notified=True)
    await wait_until(lambda: any(row.lease_owner is not None for row in rows(world) if row.source == "online"))

    onprem(world, "Nestor beside the slow source")
    await wait_until(arrived(world, "Nestor beside the slow source"), within=20)
    assert not any(arrived(world, f"{address} while Graph is slow")() for address in online_team)

    world.graph.set_latency(0)
    for address in online_team:
        await wait_until(arrived(world, f"{address} while Graph is slow"), within=30)
