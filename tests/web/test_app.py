"""The app's own routes: the change feed behind scoped bearer tokens, health and readiness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Config
from bridge.marks import DirtyMarks
from bridge.relay import Relay
from bridge.sources.configured import WEBHOOK_NOTIFICATIONS
from bridge.store import Database, MailboxRow, SourceKind, SourceRow, SourceStatus
from bridge.web.answers import record
from bridge.web.app import create_app
from bridge.web.bodies import MAX_DEPTH
from bridge.web.graph_hooks import GraphHooks
from tests.conftest import free_port
from tests.web import ADMIN_TOKEN, MAPPING, WORKFORCE_TOKEN, Client, add_feed, bearer, raw_request

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def test_the_feed_pages_through_every_change_in_order(app_client: Client, db: Database) -> None:
    add_feed(db, 5)
    seen: list[str] = []
    after = 0
    while True:
        response = await app_client.get(f"/api/v1/changes?after={after}&limit=2", headers=bearer(WORKFORCE_TOKEN))
        assert response.status == 200
        page = await response.json()
        if not page["changes"]:
            break
        seen += [change["appointment"]["subject"] for change in page["changes"]]
        after = page["next_after"]

    assert seen == [f"Meeting {n}" for n in range(5)]


async def test_a_feed_change_has_the_documented_shape(app_client: Client, db: Database) -> None:
    add_feed(db, 1)

    [change] = (await (await app_client.get("/api/v1/changes", headers=bearer(WORKFORCE_TOKEN))).json())["changes"]

    assert change["type"] == "appointment.created"
    assert change["sequence"] == 1
    assert change["mailbox"] == "adele@contoso.com"
    assert change["workforce_id"] == "E1001"
    assert change["appointment"] == {
        "id": "item0",
        "template": "meeting",
        "free_busy": "busy",
        "start": "2026-11-24T09:00:00Z",
        "end": "2026-11-24T09:30:00Z",
        "all_day": False,
        "subject": "Meeting 0",
    }


async def test_the_feed_without_a_token_is_401(app_client: Client) -> None:
    response = await app_client.get("/api/v1/changes")

    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_feed_with_an_unknown_token_is_401(app_client: Client) -> None:
    assert (await app_client.get("/api/v1/changes", headers=bearer("guessed-token-000000000"))).status == 401


async def test_the_feed_with_the_wrong_scope_is_403(app_client: Client) -> None:
    response = await app_client.get("/api/v1/changes", headers=bearer(ADMIN_TOKEN))

    assert response.status == 403
    assert "workforce" in (await response.json())["detail"]


@pytest.mark.parametrize("query", ["after=x", "limit=0", "limit=100000", "after=-1", "after=493197708636367200714752"])
async def test_bad_feed_parameters_are_400(app_client: Client, query: str) -> None:
    response = await app_client.get(f"/api/v1/changes?{query}", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 400
    assert response.content_type == "application/problem+json"


async def test_healthz_answers_while_the_process_runs(app_client: Client) -> None:
    response = await app_client.get("/healthz")

    assert response.status == 200
    assert (await response.json()) == {"status": "ok"}


async def test_readyz_is_ready_with_the_database_and_working_sources(app_client: Client, db: Database) -> None:
    with db.session() as session:
        session.add(SourceRow(name="online", kind=SourceKind.GRAPH))

    response = await app_client.get("/readyz")

    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["sources"] == {"online": {"kind": "graph", "state": "ok", "since": None}}
    assert body["backlog"] == {"changes": 0, "oldest_age_s": None}
    assert body["sync_progress"] is None


async def test_readyz_is_degraded_but_ready_while_one_source_of_two_fails(app_client: Client, db: Database) -> None:
    since = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with db.session() as session:
        session.add(SourceRow(name="online", kind=SourceKind.GRAPH))
        session.add(
            SourceRow(
                name="onprem",
                kind=SourceKind.EWS,
                status=SourceStatus.UNREACHABLE,
                status_since=since,
                status_reason="https://mail.contoso.local/EWS/Exchange.asmx: ConnectionRefusedError",
            )
        )

    response = await app_client.get("/readyz")

    assert response.status == 200
    body = await response.json()
    assert body["status"] == "degraded"
    assert body["sources"]["onprem"] == {"kind": "ews", "state": "unreachable", "since": "2026-11-30T09:00:00Z"}
    assert "contoso" not in await response.text()  # anonymous callers see states, never hosts or errors


async def test_readyz_is_503_when_no_source_works(app_client: Client, db: Database) -> None:
    with db.session() as session:
        session.add(
            SourceRow(
                name="online", kind=SourceKind.GRAPH, status=SourceStatus.AUTH_FAILED, status_reason="AADSTS7000215"
            )
        )

    response = await app_client.get("/readyz")

    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable"
    assert body["sources"]["online"]["state"] == "auth_failed"
    assert "AADSTS" not in await response.text()


async def test_readyz_counts_mailboxes_and_the_delivery_backlog(app_client: Client, db: Database) -> None:
    with db.session() as session:
        session.add(SourceRow(name="online", kind=SourceKind.GRAPH))
    add_feed(db, 3)

    body = await (await app_client.get("/readyz")).json()

    assert body["mailboxes"] == {"active": 1, "disabled": 0, "paused": 0}
    assert body["backlog"]["changes"] == 3
    assert body["backlog"]["oldest_age_s"] >= 0


async def test_readyz_is_503_without_the_database_and_names_nothing_of_it(config: Config) -> None:
    closed = Database(f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/bridge")
    relay = Relay(closed, {}, lambda: MAPPING, config.mail, owner="test", record=record)
    app = create_app(
        config, closed, GraphHooks(closed, DirtyMarks(closed), decode=WEBHOOK_NOTIFICATIONS), lambda: MAPPING, relay
    )
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.get("/readyz")
            text = await response.text()
    finally:
        closed.close()

    assert response.status == 503
    assert (await response.json()) == {"status": "unavailable", "database": "unreachable"}
    assert "hunter2" not in text
    assert "127.0.0.1" not in text


# --- malformed requests: a 4xx problem, never a 500 -------------------------------------------------------------

JSON_ROUTES = [
    ("POST", "/api/v1/mailboxes/adele@contoso.com/appointments", WORKFORCE_TOKEN),
    ("PATCH", "/api/v1/mailboxes/adele@contoso.com/appointments/item-1", WORKFORCE_TOKEN),
    ("PUT", "/api/v1/mailboxes/adele@contoso.com/state", WORKFORCE_TOKEN),
    ("POST", "/api/v1/mail", WORKFORCE_TOKEN),
    ("POST", "/api/v1/admin/mailboxes", ADMIN_TOKEN),
    ("POST", "/api/v1/admin/mailboxes/adele@contoso.com/disable", ADMIN_TOKEN),
]


@pytest.mark.parametrize(("method", "path", "token"), JSON_ROUTES)
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
async def test_a_deeply_nested_body_is_a_400_problem(
    app_client: Client, method: str, path: str, token: str, depth: int
) -> None:
    body = '{"subject": ' + "[" * depth + "]" * depth + "}"
    headers = {**bearer(token), "Content-Type": "application/json", "If-Match": '"ck-1"'}

    response = await app_client.request(method, path, data=body, headers=headers)

    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert (await response.json())["invalid_params"] == [
        {"name": "body", "reason": f"nests deeper than {MAX_DEPTH} levels"}
    ]


@pytest.mark.parametrize(("method", "path", "token"), JSON_ROUTES)
async def test_an_authorization_header_that_is_not_utf8_is_a_401(
    app_client: Client, method: str, path: str, token: str
) -> None:
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n".encode()
    status, body = await raw_request(app_client, request + b"Authorization: Bearer \xff\xfe\r\n\r\n{}")

    assert status == 401
    assert json.loads(body)["title"] == "Unauthorized"


@pytest.mark.parametrize("header", [b'If-Match: "\xff\xfe"', b"Idempotency-Key: \xff\xfe"])
async def test_a_version_or_key_that_is_not_ascii_is_refused(app_client: Client, header: bytes) -> None:
    path = "/api/v1/mailboxes/adele@contoso.com/appointments/item-1"
    request = f"DELETE {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WORKFORCE_TOKEN}\r\n".encode()
    status, _ = await raw_request(app_client, request + header + b"\r\nContent-Length: 0\r\n\r\n")

    assert status in (400, 428)


@pytest.mark.parametrize(
    "path", ["/healthz", "/api/v1/openapi.json", "/api/v1/changes", "/nowhere", "/hooks/graph?validationToken=x"]
)
async def test_every_answer_forbids_content_sniffing(app_client: Client, path: str) -> None:
    method = "POST" if path.startswith("/hooks") else "GET"
    response = await app_client.request(method, path)

    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("query", ["after=x", "limit=0", "after=-1", "limit=%D9%A3", f"after={'9' * 5000}"])
async def test_a_feed_cursor_or_limit_out_of_range_is_a_400_naming_it(app_client: Client, query: str) -> None:
    response = await app_client.get(f"/api/v1/changes?{query}", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 400
    [invalid] = (await response.json())["invalid_params"]
    assert invalid["name"] == query.split("=")[0]


async def test_a_query_parameter_the_document_does_not_give_is_refused(app_client: Client) -> None:
    response = await app_client.get("/api/v1/changes?limt=10", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 400
    [invalid] = (await response.json())["invalid_params"]
    assert invalid == {"name": "limt", "reason": "unknown query parameter; expected one of ['after', 'limit']"}


async def test_readyz_shows_the_progress_of_a_large_sync(app_client: Client, db: Database) -> None:
    began = datetime.now(UTC) - timedelta(seconds=30)
    with db.session() as session:
        session.add(SourceRow(name="online", kind=SourceKind.GRAPH))
        for n in range(4):
            synced = n == 0
            session.add(
                MailboxRow(
                    address=f"m{n}@example.com",
                    source="online",
                    dirty_generation=1,
                    synced_generation=int(synced),
                    dirty_at=None if synced else began,
                    last_synced_at=began + timedelta(seconds=15) if synced else None,
                )
            )

    body = await (await app_client.get("/readyz")).json()

    progress = body["sync_progress"]
    assert (progress["done"], progress["total"], progress["pending"]) == (1, 4, 3)
    assert progress["rate_per_s"] > 0
    assert progress["eta_s"] > 0
