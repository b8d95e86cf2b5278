"""A mailbox added while the bridge runs is live at once, Graph or EWS: its first sync and its change detection
(a Graph subscription; a place in an EWS stream) within seconds, whichever process added it.

The periodic reconcile is hours away in these worlds (6 h by default), so a change that arrives within seconds of
being made came through the new mailbox's subscription or stream.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from bridge import admin
from bridge.store import Database
from tests.world import ADMIN_TOKEN, World, at, ready, wait_until

LIVE_WITHIN_S = 5.0
BOB = "bob@contoso.com"
NORA = "nora@contoso.com"


def add_elsewhere(world: World, address: str, workforce_id: str, source: str) -> None:
    """What `presence-bridge mailboxes add` does, through a database connection of its own (another process's)."""
    elsewhere = Database(world.service.db.url.render_as_string(hide_password=False), schema=world.service.db.schema)
    try:
        with elsewhere.session() as session:
            admin.add_mailbox(session, address, workforce_id, source, datetime.now(UTC))
    finally:
        elsewhere.close()


async def arrives(world: World, subject: str, within: float = LIVE_WITHIN_S) -> dict[str, Any]:
    await wait_until(lambda: any(c["appointment"].get("subject") == subject for c in world.workforce.changes), within)
    return next(c for c in world.workforce.changes if c["appointment"].get("subject") == subject)


def subscribed_to(world: World, user_id: str) -> bool:
    return any(subscription["userId"] == user_id for subscription in world.graph.subscriptions())


async def test_a_graph_mailbox_added_elsewhere_is_synced_and_subscribed_within_seconds(world: World) -> None:
    await ready(world)
    bob = world.graph.add_user(BOB, "Bob Kelly")
    world.graph.create_event_as_outlook(BOB, {"subject": "Before", "start": at(1, 9), "end": at(1, 10)})
    started = asyncio.get_running_loop().time()

    add_elsewhere(world, BOB, "E1002", "online")

    first = await arrives(world, "Before")
    await wait_until(lambda: subscribed_to(world, bob.id), LIVE_WITHIN_S)
    assert first["workforce_id"] == "E1002"
    world.graph.create_event_as_outlook(BOB, {"subject": "After", "start": at(2, 9), "end": at(2, 10)})
    await arrives(world, "After")
    assert asyncio.get_running_loop().time() - started < 3 * LIVE_WITHIN_S


async def test_the_command_line_in_another_process_makes_a_mailbox_live(world: World, tmp_path: Path) -> None:
    await ready(world)
    bob = world.graph.add_user(BOB, "Bob Kelly")
    command = [sys.executable, "-m", "bridge", "mailboxes", "add", BOB, "--workforce-id", "E1002", "--config"]

    done = await asyncio.to_thread(
        subprocess.run, [*command, str(world.cli_config())], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    await wait_until(lambda: subscribed_to(world, bob.id), LIVE_WITHIN_S)
    world.graph.create_event_as_outlook(BOB, {"subject": "Planning", "start": at(1, 9), "end": at(1, 10)})
    await arrives(world, "Planning")


def moment(days: int, hour: float) -> datetime:
    return datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=days, hours=hour)


def streamed(hybrid: World, address: str) -> bool:
    assert hybrid.ews is not None
    return any(s["mailbox"].lower() == address and s["connected"] for s in hybrid.ews.subscriptions())


async def test_an_ews_mailbox_added_through_the_admin_api_joins_a_stream_within_seconds(hybrid: World) -> None:
    assert hybrid.ews is not None
    await ready(hybrid)
    await wait_until(lambda: any(s["connected"] for s in hybrid.ews.subscriptions()))  # type: ignore[union-attr]
    hybrid.ews.add_mailbox(NORA, "Nora Lind")
    hybrid.ews.create_item_as_outlook(NORA, subject="Before", start=moment(1, 9), end=moment(1, 10))
    body = {"address": NORA, "workforce_id": "E2002", "source": "onprem"}

    status, _, _ = await hybrid.api("POST", "/api/v1/admin/mailboxes", body, token=ADMIN_TOKEN)

    assert status == 201
    await arrives(hybrid, "Before")
    await wait_until(lambda: streamed(hybrid, NORA), LIVE_WITHIN_S)
    hybrid.ews.create_item_as_outlook(NORA, subject="After", start=moment(2, 9), end=moment(2, 10))
    change = await arrives(hybrid, "After")
    assert change["workforce_id"] == "E2002"


async def test_an_ews_mailbox_added_elsewhere_joins_a_stream_within_seconds(hybrid: World) -> None:
    assert hybrid.ews is not None
    await ready(hybrid)
    await wait_until(lambda: any(s["connected"] for s in hybrid.ews.subscriptions()))  # type: ignore[union-attr]
    hybrid.ews.add_mailbox(NORA, "Nora Lind")

    add_elsewhere(hybrid, NORA, "E2002", "onprem")

    await wait_until(lambda: streamed(hybrid, NORA), LIVE_WITHIN_S)
    hybrid.ews.create_item_as_outlook(NORA, subject="Shift", start=moment(1, 9), end=moment(1, 10))
    await arrives(hybrid, "Shift")


async def test_a_roster_imported_through_the_admin_api_is_checked_with_exchange_and_live(world: World) -> None:
    await ready(world)
    bob = world.graph.add_user(BOB, "Bob Kelly")
    rows = [{"address": BOB, "workforce_id": "E1002"}, {"address": "ghost@contoso.com", "workforce_id": "E1003"}]
    path = "/api/v1/admin/mailboxes/import"

    refused, problem, _ = await world.api("POST", path, {"mailboxes": rows, "check_exchange": True}, token=ADMIN_TOKEN)
    enrolled, outcome, _ = await world.api(
        "POST", path, {"mailboxes": rows[:1], "check_exchange": True}, token=ADMIN_TOKEN
    )

    assert refused == 400
    [entry] = problem["invalid_params"]
    assert entry["name"] == "mailboxes[1]"
    assert "ErrorInvalidUser" in entry["reason"]
    assert (enrolled, outcome["added"]) == (200, [BOB])
    await wait_until(lambda: subscribed_to(world, bob.id), LIVE_WITHIN_S)
