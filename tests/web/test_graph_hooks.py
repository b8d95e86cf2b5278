"""The Graph webhook receiver: handshake, notifications and lifecycle events, over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain import AppointmentKind, FreeBusy
from bridge.marks import DirtyMarks
from bridge.sources.configured import WEBHOOK_NOTIFICATIONS
from bridge.store import Database, MailboxRow, MirrorRow, SubscriptionRow
from bridge.web.bodies import MAX_DEPTH
from bridge.web.graph_hooks import MAX_ITEMS, MAX_VALIDATION_TOKEN, UNKNOWN_FOR_S, GraphHooks
from tests.fuzzing import fuzz_settings, mutations

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
SUBSCRIPTION = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"  # the id the fixtures use
CLIENT_STATE = "secretClientValue"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


@pytest.fixture
def mailbox(db: Database) -> int:
    with db.session() as session:
        row = MailboxRow(address="adele@contoso.com", source="online")
        session.add(row)
        session.flush()
        assert row.id is not None
        session.add(
            SubscriptionRow(
                id=SUBSCRIPTION,
                mailbox_id=row.id,
                source="online",
                resource=f"/users/{row.address}/events",
                client_state=CLIENT_STATE,
                expires_at=NOW + timedelta(days=3),
            )
        )
        return row.id


@pytest.fixture
async def hooks(db: Database) -> GraphHooks:
    return GraphHooks(db, DirtyMarks(db), decode=WEBHOOK_NOTIFICATIONS, clock=lambda: NOW)


@pytest.fixture
async def client(hooks: GraphHooks) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.add_routes(hooks.routes())
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def generation(db: Database, mailbox: int) -> int:
    with db.session() as session:
        row = session.get(MailboxRow, mailbox)
        assert row is not None
        return row.dirty_generation


Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize("path", ["/hooks/graph", "/hooks/graph/lifecycle"])
async def test_the_validation_handshake_echoes_the_decoded_token(client: Client, path: str) -> None:
    response = await client.post(f"{path}?validationToken=Validation%3A%20Testing%20client%20application")

    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "Validation: Testing client application"


async def test_a_valid_notification_marks_its_mailbox_dirty(client: Client, db: Database, mailbox: int) -> None:
    response = await client.post("/hooks/graph", json=fixture("notification_event_created.json"))

    assert response.status == 202
    assert generation(db, mailbox) == 1


async def test_a_batch_of_duplicates_marks_the_mailbox_once(client: Client, db: Database, mailbox: int) -> None:
    item = fixture("notification_event_created.json")["value"][0]
    body = {"value": [item, item, {**item, "changeType": "updated"}, {**item, "changeType": "deleted"}]}

    response = await client.post("/hooks/graph", json=body)

    assert response.status == 202
    assert generation(db, mailbox) == 1


async def test_a_wrong_client_state_is_refused_and_changes_nothing(
    client: Client, db: Database, mailbox: int, hooks: GraphHooks
) -> None:
    body = fixture("notification_event_created.json")
    body["value"][0]["clientState"] = "guessed"

    response = await client.post("/hooks/graph", json=body)

    assert response.status == 202  # Graph would retry a refusal for hours; a forger learns nothing either way
    assert generation(db, mailbox) == 0
    assert hooks.refused["wrong clientState"] == 1


async def test_an_unknown_subscription_is_refused_and_changes_nothing(
    client: Client, db: Database, mailbox: int, hooks: GraphHooks
) -> None:
    body = fixture("notification_event_created.json")
    body["value"][0]["subscriptionId"] = "00000000-0000-0000-0000-000000000000"

    await client.post("/hooks/graph", json=body)

    assert generation(db, mailbox) == 0
    assert hooks.refused["unknown subscription"] == 1


async def test_valid_items_in_a_mixed_batch_still_count(
    client: Client, db: Database, mailbox: int, hooks: GraphHooks
) -> None:
    good = fixture("notification_event_created.json")["value"][0]
    body = {"value": [{**good, "clientState": "wrong"}, good]}

    await client.post("/hooks/graph", json=body)

    assert generation(db, mailbox) == 1
    assert hooks.refused["wrong clientState"] == 1


@pytest.mark.parametrize("body", [b"not json", b'{"value": "x"}', b'{"value": [{"clientState": "x"}]}', b"{}"])
async def test_a_malformed_body_gets_400_and_changes_nothing(
    client: Client, db: Database, mailbox: int, body: bytes
) -> None:
    response = await client.post("/hooks/graph", data=body, headers={"Content-Type": "application/json"})

    assert response.status == 400
    assert generation(db, mailbox) == 0


async def test_an_oversized_body_is_refused(client: Client, db: Database, mailbox: int) -> None:
    response = await client.post("/hooks/graph", data=b"x" * (1024 * 1024 + 1))

    assert response.status == 413
    assert generation(db, mailbox) == 0


async def test_lifecycle_missed_asks_for_a_resync(client: Client, db: Database, mailbox: int) -> None:
    response = await client.post("/hooks/graph/lifecycle", json=fixture("lifecycle_missed.json"))

    assert response.status == 202
    assert generation(db, mailbox) == 1


async def test_lifecycle_subscription_removed_drops_it_and_asks_for_a_resync(
    client: Client, db: Database, mailbox: int
) -> None:
    await client.post("/hooks/graph/lifecycle", json=fixture("lifecycle_subscription_removed.json"))

    with db.session() as session:
        assert session.get(SubscriptionRow, SUBSCRIPTION) is None
    assert generation(db, mailbox) == 1


async def test_lifecycle_reauthorization_required_asks_for_a_renewal(
    client: Client, db: Database, mailbox: int
) -> None:
    await client.post("/hooks/graph/lifecycle", json=fixture("lifecycle_reauthorization_required.json"))

    with db.session() as session:
        row = session.get(SubscriptionRow, SUBSCRIPTION)
        assert row is not None
        assert row.reauthorize_requested_at == NOW
    assert generation(db, mailbox) == 0


async def test_a_lifecycle_batch_may_mix_events(client: Client, db: Database, mailbox: int) -> None:
    items = [fixture(f"lifecycle_{name}.json")["value"][0] for name in ("reauthorization_required", "missed")]

    await client.post("/hooks/graph/lifecycle", json={"value": items})

    with db.session() as session:
        row = session.get(SubscriptionRow, SUBSCRIPTION)
        assert row is not None
        assert row.reauthorize_requested_at == NOW
    assert generation(db, mailbox) == 1


async def test_a_lifecycle_event_with_a_wrong_client_state_is_ignored(
    client: Client, db: Database, mailbox: int
) -> None:
    body = fixture("lifecycle_subscription_removed.json")
    body["value"][0]["clientState"] = "guessed"

    await client.post("/hooks/graph/lifecycle", json=body)

    with db.session() as session:
        assert session.get(SubscriptionRow, SUBSCRIPTION) is not None
    assert generation(db, mailbox) == 0


# --- hostile bodies: refused cheaply ---------------------------------------------------------------------------


class Statements:
    """The SQL statements that read subscriptions, counted as the database sees them."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        sa.event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.count += "FROM subscription " in statement


def forged(count: int, start: int = 0) -> dict[str, Any]:
    item = fixture("notification_event_created.json")["value"][0]
    return {"value": [{**item, "subscriptionId": f"forged-{n}"} for n in range(start, start + count)]}


async def test_forged_subscription_ids_are_looked_up_once_not_per_request(
    client: Client, db: Database, mailbox: int, hooks: GraphHooks
) -> None:
    statements = Statements(db)

    for _ in range(5):
        response = await client.post("/hooks/graph", json=forged(1000))
        assert response.status == 202

    assert statements.count == 1
    assert hooks.refused["unknown subscription"] == 5000
    assert generation(db, mailbox) == 0


async def test_an_unknown_id_is_looked_up_again_after_a_while(db: Database, mailbox: int) -> None:
    now = [0.0]
    hooks = GraphHooks(db, DirtyMarks(db), decode=WEBHOOK_NOTIFICATIONS, clock=lambda: NOW, monotonic=lambda: now[0])
    app = web.Application()
    app.add_routes(hooks.routes())
    statements = Statements(db)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await client.post("/hooks/graph", json=forged(3))
        now[0] = UNKNOWN_FOR_S - 1
        await client.post("/hooks/graph", json=forged(3))
        assert statements.count == 1
        now[0] = UNKNOWN_FOR_S
        await client.post("/hooks/graph", json=forged(3))
    assert statements.count == 2


async def test_a_subscription_created_after_its_id_was_unknown_counts_once_forgotten(
    client: Client, db: Database, mailbox: int, hooks: GraphHooks
) -> None:
    body = fixture("notification_event_created.json")
    body["value"][0]["subscriptionId"] = "created-later"
    await client.post("/hooks/graph", json=body)
    with db.session() as session:
        session.add(
            SubscriptionRow(
                id="created-later",
                mailbox_id=mailbox,
                source="online",
                resource="/users/adele@contoso.com/events",
                client_state=CLIENT_STATE,
                expires_at=NOW + timedelta(days=3),
            )
        )

    hooks.forget("created-later")  # what the subscription manager does once it has stored a new subscription
    await client.post("/hooks/graph", json=body)

    assert generation(db, mailbox) == 1


@pytest.mark.parametrize("path", ["/hooks/graph", "/hooks/graph/lifecycle"])
async def test_more_items_than_a_batch_holds_are_refused_unread(
    client: Client, db: Database, mailbox: int, path: str
) -> None:
    statements = Statements(db)

    response = await client.post(path, json=forged(MAX_ITEMS + 1))

    assert response.status == 413
    assert statements.count == 0


@pytest.mark.parametrize("path", ["/hooks/graph", "/hooks/graph/lifecycle"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
async def test_a_deeply_nested_body_is_a_400(client: Client, db: Database, mailbox: int, path: str, depth: int) -> None:
    item = json.dumps(fixture("notification_event_created.json")["value"][0])
    body = '{"value": [' + item[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}]}"

    response = await client.post(path, data=body, headers={"Content-Type": "application/json"})

    assert response.status == 400
    assert "nests deeper than" in await response.text()
    assert generation(db, mailbox) == 0


async def test_a_validation_token_too_long_to_be_graphs_is_not_echoed(client: Client) -> None:
    response = await client.post(f"/hooks/graph?validationToken={'x' * (MAX_VALIDATION_TOKEN + 1)}")

    assert response.status == 400
    assert "x" * 100 not in await response.text()


# --- fuzzing: any body is accepted or refused with a 4xx, never a 500 --------------------------------------------

_ITEM = fixture("notification_event_created.json")["value"][0]
_LIFECYCLE_ITEM = fixture("lifecycle_missed.json")["value"][0]
BODIES = st.one_of(
    mutations({"value": [_ITEM, _LIFECYCLE_ITEM]}).map(lambda document: json.dumps(document).encode()),
    st.binary(max_size=300),
    st.text(alphabet='{}[]":,0123456789.eE+-truefalsn \\u', max_size=300).map(str.encode),
)


@pytest.mark.fuzz
@pytest.mark.parametrize("path", ["/hooks/graph", "/hooks/graph/lifecycle"])
async def test_any_body_is_accepted_or_refused_never_a_server_error(client: Client, mailbox: int, path: str) -> None:
    loop = asyncio.get_running_loop()

    async def post(body: bytes) -> int:
        response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
        return response.status

    @given(body=BODIES)
    @fuzz_settings(200)
    def run(body: bytes) -> None:
        status = asyncio.run_coroutine_threadsafe(post(body), loop).result(timeout=30)
        assert status in (202, 400, 413), body

    await asyncio.to_thread(run)


def hold(db: Database, mailbox: int, item_id: str, change_key: str) -> None:
    """The mirror holds the item at this change key, as the relay's `_finish` leaves it after a create."""
    with db.session() as session:
        session.add(
            MirrorRow(
                mailbox_id=mailbox,
                item_id=item_id,
                change_key=change_key,
                kind=AppointmentKind.SINGLE,
                start=NOW,
                end=NOW + timedelta(hours=1),
                free_busy=FreeBusy.BUSY,
                content_hash="x",
            )
        )


def notified(change_type: str = "created", **resource_data: str) -> dict[str, Any]:
    item = fixture("notification_event_created.json")["value"][0]
    return {"value": [{**item, "changeType": change_type, "resourceData": {**item["resourceData"], **resource_data}}]}


ITEM_BODY = fixture("notification_event_created.json")["value"][0]
ITEM = ITEM_BODY["resourceData"]["id"]
KEY = "DwAAABYAAAAadQ+0NnRaRJYd7+f8Y2orAAAAAAMU"  # the fixture's @odata.etag, W/"<changeKey>"


@pytest.mark.parametrize("change_type", ["created", "updated"])
async def test_the_echo_of_an_item_the_mirror_holds_at_that_key_marks_nothing(
    client: Client, db: Database, hooks: GraphHooks, mailbox: int, change_type: str
) -> None:
    hold(db, mailbox, ITEM, KEY)

    response = await client.post("/hooks/graph", json=notified(change_type))

    assert response.status == 202
    assert generation(db, mailbox) == 0
    assert hooks.accepted == 1
    assert hooks.echoes == 1


@pytest.mark.parametrize(
    "body",
    [
        notified(**{"@odata.etag": 'W/"another key"'}),
        notified(id="an item the mirror does not hold"),
        notified("deleted"),
        {"value": [{k: v for k, v in ITEM_BODY.items() if k != "resourceData"}]},
    ],
    ids=["another change key", "unknown item", "deleted", "no resourceData"],
)
async def test_any_doubt_marks_as_before(
    client: Client, db: Database, hooks: GraphHooks, mailbox: int, body: dict[str, Any]
) -> None:
    hold(db, mailbox, ITEM, KEY)

    response = await client.post("/hooks/graph", json=body)

    assert response.status == 202
    assert generation(db, mailbox) == 1
    assert hooks.echoes == 0


async def test_an_echo_batched_with_a_real_change_still_marks(client: Client, db: Database, mailbox: int) -> None:
    hold(db, mailbox, ITEM, KEY)
    echo, other = notified()["value"][0], notified(id="another item")["value"][0]

    response = await client.post("/hooks/graph", json={"value": [echo, other]})

    assert response.status == 202
    assert generation(db, mailbox) == 1
