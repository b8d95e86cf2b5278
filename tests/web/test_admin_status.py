"""`GET /api/v1/admin/status`: what `presence-bridge status` shows, as documented JSON, for an admin token."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from bridge.store import Database
from tests.store import add_troubles
from tests.web import ADMIN_TOKEN, WORKFORCE_TOKEN, Client, bearer
from tests.web.test_openapi import response_schema


async def test_the_admin_route_answers_the_same_as_documented(app_client: Client, db: Database) -> None:
    with db.session() as session:
        add_troubles(session)

    response = await app_client.get("/api/v1/admin/status", headers=bearer(ADMIN_TOKEN))

    assert response.status == 200
    body = await response.json()
    Draft202012Validator(response_schema("/api/v1/admin/status", 200, "application/json")).validate(body)
    assert body["sources"][1] == {
        "name": "onprem",
        "kind": "ews",
        "status": "unreachable",
        "reason": "ConnectionRefusedError",
        "since": "2026-11-30T11:55:00Z",
    }
    assert body["mailboxes"]["by_source"]["online"] == {"active": 1, "disabled": 0, "paused": 1}
    assert body["mailboxes"]["time_zones"] == {
        "online": {"Europe/Berlin": 1, "not read yet": 1},
        "onprem": {"not read yet": 1},
    }
    assert [s["mailbox"] for s in body["subscriptions"]] == ["adele@contoso.com", "grady@contoso.com"]
    assert body["backlog"]["undelivered"] == 2
    assert body["backlog"]["oldest"] == "2026-11-30T11:50:00Z"
    assert body["delivery_errors"][0]["error"] == "answered 503 Service Unavailable"
    assert body["mapping_change_held"] == {"since": "2026-11-30T11:58:00Z", "withdrawn": 7, "approved": False}


@pytest.mark.parametrize(("token", "status"), [(None, 401), (WORKFORCE_TOKEN, 403)])
async def test_the_admin_route_needs_the_admin_scope(app_client: Client, token: str | None, status: int) -> None:
    response = await app_client.get("/api/v1/admin/status", headers=bearer(token) if token else {})
    assert response.status == status
