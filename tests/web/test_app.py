"""The app's own routes: the change feed behind scoped bearer tokens, health and readiness."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.store import Database, SourceKind, SourceRow, SourceStatus
from tests.web import ADMIN_TOKEN, WORKFORCE_TOKEN, Client, add_feed, bearer

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

    assert (await app_client.get("/readyz")).status == 200


async def test_readyz_reports_a_source_whose_credentials_were_refused(app_client: Client, db: Database) -> None:
    with db.session() as session:
        session.add(
            SourceRow(
                name="online", kind=SourceKind.GRAPH, status=SourceStatus.AUTH_FAILED, status_reason="AADSTS7000215"
            )
        )

    response = await app_client.get("/readyz")

    assert response.status == 503
    assert (await response.json())["sources"] == {"online": "auth_failed: AADSTS7000215"}
