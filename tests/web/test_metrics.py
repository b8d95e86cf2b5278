"""`GET /metrics`: scraped from the running bridge after real traffic through the emulators, and its token scope."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from bridge.config import ApiToken, Config
from bridge.marks import DirtyMarks
from bridge.relay import Relay
from bridge.sources.configured import WEBHOOK_NOTIFICATIONS
from bridge.store import Database, MailboxRow
from bridge.web.answers import record
from bridge.web.app import create_app
from bridge.web.graph_hooks import GraphHooks
from tests.web import ADMIN_TOKEN, MAPPING, WORKFORCE_TOKEN, Client
from tests.world import ONPREM_MAILBOX, World, ready, wait_until

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape_until(url: str, condition: Callable[[Samples], bool], within: float = 15.0) -> Samples:
    """A scrape in which `condition` holds: the bridge counts a delivery just after the receiver has it."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition(samples := await scrape(url)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the metrics did not get there in time")
        await asyncio.sleep(0.1)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((f"presence_bridge_{name}", frozenset(labels.items())), 0.0)


async def test_a_change_moves_the_counters_from_notification_to_delivery(world: World) -> None:
    await ready(world)
    before = await scrape(world.service.url)

    world.outlook("Customer visit")
    await world.changes(1)
    after = await scrape_until(
        world.service.url,
        lambda s: value(s, "deliveries_total", status="delivered") >= 1 and value(s, "outbox_depth") == 0,
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("notifications_accepted_total") >= 1
    assert moved("notification_echoes_total") == 0  # a change made in Outlook is read, never taken for an echo
    assert moved("syncs_total", source="online") >= 1
    assert moved("sync_seconds_count", source="online") >= 1
    assert moved("source_requests_total", source="online", status="200") >= 1
    assert moved("changes_emitted_total", type="appointment.created") == 1
    assert moved("deliveries_total", status="delivered") == 1
    # Exchange's lastModifiedDateTime → the receiver's 2xx: measured, and seconds at most here.
    assert moved("change_latency_seconds_count") == 1
    assert 0 <= moved("change_latency_seconds_sum") < 15
    assert value(after, "outbox_depth") == 0
    assert value(after, "mailboxes", source="online", status="active") == 1
    assert value(after, "mailboxes", source="online", status="paused") == 0
    assert value(after, "subscriptions", source="online", state="active") == 1
    assert value(after, "subscription_expiry_seconds", source="online") > 3600
    assert value(after, "source_status", source="online", status="ok") == 1


async def test_a_relayed_command_is_counted_by_its_answer(world: World) -> None:
    await ready(world)
    start = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=2)
    body = {"template": "absence", "start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}

    assert (await world.api("POST", f"/api/v1/mailboxes/{world.mailbox}/appointments", body))[0] == 201
    assert (await world.api("POST", f"/api/v1/mailboxes/{world.mailbox}/appointments", {}))[0] == 400

    samples = await scrape(world.service.url)
    assert value(samples, "relay_commands_total", command="create", status="201") == 1
    assert value(samples, "relay_commands_total", command="create", status="400") == 1


async def test_token_requests_are_counted_under_their_source(world: World) -> None:
    await ready(world)
    world.graph.fail(1, status=503, route="token", retry_after=None)  # Entra's next answer; Graph answers none
    world.graph.expire_tokens()  # so that the next read needs a new token

    world.outlook("Read with a new token")
    await world.changes(1, within=30)
    samples = await scrape(world.service.url)

    assert [entry["status"] for entry in world.graph.stats()["log"] if entry["route"] == "token"][-2:] == [503, 200]
    assert value(samples, "source_requests_total", source="online", status="503") == 1


async def test_a_workforce_outage_shows_as_failed_deliveries_and_a_backlog(world: World) -> None:
    await ready(world)
    world.workforce.fail(503)

    world.outlook("Kept for later")
    samples = await scrape_until(world.service.url, lambda s: value(s, "outbox_failing") == 1)

    assert value(samples, "deliveries_total", status="503") >= 1
    assert value(samples, "outbox_depth") == 1
    assert value(samples, "outbox_failing") == 1
    assert value(samples, "outbox_oldest_age_seconds") > 0


async def test_throttling_is_counted_per_request_and_as_a_hold(world: World) -> None:
    await ready(world)
    world.graph.throttle(4, user=world.mailbox, retry_after=1)  # the SDK retries three times, then gives up

    world.outlook("Throttled at first")
    await world.changes(1, within=30)
    samples = await scrape(world.service.url)

    assert value(samples, "source_requests_total", source="online", status="429") == 4
    assert value(samples, "throttle_holds_total", source="online") == 1


async def test_on_premises_requests_and_changes_are_counted_under_their_source(hybrid: World) -> None:
    await ready(hybrid)
    await wait_until(lambda: any(s["connected"] for s in hybrid.ews.subscriptions()))  # type: ignore[union-attr]
    await wait_until(lambda: onprem_idle(hybrid))  # its first, full read done: the next one is a delta
    moment = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC) + timedelta(days=1, hours=9)
    hybrid.ews.create_item_as_outlook(  # type: ignore[union-attr]
        ONPREM_MAILBOX, subject="Plant tour", start=moment, end=moment + timedelta(hours=1), free_busy="Busy"
    )
    await hybrid.changes(1)

    samples = await scrape_until(hybrid.service.url, lambda s: value(s, "change_latency_seconds_count") >= 1)

    assert value(samples, "source_requests_total", source="onprem", status="200") >= 1
    # NTLM's challenge is a 401 by design: a step of signing in, not a refusal, so it is not counted as one.
    assert value(samples, "source_requests_total", source="onprem", status="401") == 0
    assert value(samples, "syncs_total", source="onprem") >= 1
    assert value(samples, "mailboxes", source="onprem", status="active") == 1


def onprem_idle(world: World) -> bool:
    with world.service.db.session() as session:
        row = session.exec(select(MailboxRow).where(MailboxRow.address == ONPREM_MAILBOX)).one()
        return row.last_synced_at is not None and row.dirty_generation == row.synced_generation


# --- scope -------------------------------------------------------------------------------------------------


async def test_metrics_are_open_while_no_token_has_the_metrics_scope(app_client: Client) -> None:
    response = await app_client.get("/metrics")
    assert response.status == 200
    assert "presence_bridge_outbox_depth 0.0" in await response.text()


@pytest.fixture
def metrics_config(config: Config) -> Config:
    scraper = ApiToken("prometheus", "metrics-scraper-token-0123456789", frozenset({"metrics"}))
    return replace(config, api_tokens=(*config.api_tokens, scraper))


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("not-a-configured-token-at-all", 401), (WORKFORCE_TOKEN, 403), (ADMIN_TOKEN, 403)],
)
async def test_metrics_need_the_metrics_scope_once_a_token_has_it(
    metrics_config: Config, db: Database, token: str | None, status: int
) -> None:
    async with served(metrics_config, db) as client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert (await client.get("/metrics", headers=headers)).status == status
        ok = await client.get("/metrics", headers={"Authorization": "Bearer metrics-scraper-token-0123456789"})
        assert ok.status == 200


def served(config: Config, db: Database) -> Client:
    relay = Relay(db, {}, lambda: MAPPING, config.mail, owner="test", record=record)
    app = create_app(config, db, GraphHooks(db, DirtyMarks(db), decode=WEBHOOK_NOTIFICATIONS), lambda: MAPPING, relay)
    return TestClient(TestServer(app, host="127.0.0.1"))
