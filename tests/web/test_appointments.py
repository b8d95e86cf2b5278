"""The query side of the REST API: the mapped appointments and the resolved timeline of a mailbox."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.web import ADMIN_TOKEN, DAY, WORKFORCE_TOKEN, Client, at, bearer


async def test_appointments_lists_what_is_shown_one_for_one(app_client: Client, calendar: None) -> None:
    response = await app_client.get("/api/v1/mailboxes/Adele@contoso.com/appointments", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 200
    body = await response.json()
    assert body["mailbox"] == "adele@contoso.com"
    assert body["workforce_id"] == "E1001"
    shown = {a["id"]: a for a in body["appointments"]}
    assert list(shown) == ["oof", "meeting", "doctor", "mine"]  # by start; hidden and free are not shown
    assert shown["meeting"] == {
        "id": "meeting",
        "template": "meeting",
        "free_busy": "busy",
        "start": at(10).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": at(11).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "all_day": False,
        "origin": "exchange",
        "version": "ck-meeting",
        "subject": "Customer call",
    }
    assert "subject" not in shown["doctor"]
    assert shown["mine"]["origin"] == "bridge"


async def test_appointments_are_limited_to_the_asked_span(app_client: Client, calendar: None) -> None:
    since, until = at(29).strftime("%Y-%m-%dT%H:%M:%SZ"), at(32).strftime("%Y-%m-%dT%H:%M:%SZ")

    response = await app_client.get(
        f"/api/v1/mailboxes/adele@contoso.com/appointments?from={since}&to={until}", headers=bearer(WORKFORCE_TOKEN)
    )

    assert [a["id"] for a in (await response.json())["appointments"]] == ["doctor"]


async def test_the_timeline_keeps_an_oof_day_over_a_meeting_inside_it(app_client: Client, calendar: None) -> None:
    since, until = DAY.date().isoformat(), (DAY + timedelta(days=1)).date().isoformat()

    response = await app_client.get(
        f"/api/v1/mailboxes/adele@contoso.com/timeline?from={since}&to={until}", headers=bearer(WORKFORCE_TOKEN)
    )

    assert response.status == 200
    segments = (await response.json())["segments"]
    assert [(s["template"], s["appointment_id"]) for s in segments] == [("absence", "oof")]
    assert segments[0]["start"] == DAY.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert segments[0]["end"] == (DAY + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_the_timeline_shows_gaps_and_each_appointment_in_turn(app_client: Client, calendar: None) -> None:
    since, until = at(29).strftime("%Y-%m-%dT%H:%M:%SZ"), at(42).strftime("%Y-%m-%dT%H:%M:%SZ")

    response = await app_client.get(
        f"/api/v1/mailboxes/adele@contoso.com/timeline?from={since}&to={until}", headers=bearer(WORKFORCE_TOKEN)
    )

    segments = (await response.json())["segments"]
    assert [(s["appointment_id"], s["template"]) for s in segments] == [("doctor", "meeting"), ("mine", "tentative")]


async def test_an_unknown_mailbox_is_404(app_client: Client, calendar: None) -> None:
    response = await app_client.get("/api/v1/mailboxes/nobody@contoso.com/timeline", headers=bearer(WORKFORCE_TOKEN))

    assert response.status == 404
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-12-02&to=2026-12-01", "to"),
        ("from=2026-01-01&to=2027-12-31", "to"),
        # At the ends of Python's calendar an offset overflowed the conversion to UTC (a 500).
        ("from=0001-01-01T00:00:00%2B14:00", "from"),
        ("to=9999-12-31T23:00:00-05:00", "to"),
    ],
)
async def test_a_bad_span_is_400_naming_the_field(app_client: Client, calendar: None, query: str, field: str) -> None:
    response = await app_client.get(
        f"/api/v1/mailboxes/adele@contoso.com/appointments?{query}", headers=bearer(WORKFORCE_TOKEN)
    )

    assert response.status == 400
    assert [p["name"] for p in (await response.json())["invalid_params"]] == [field]


async def test_the_queries_need_the_workforce_scope(app_client: Client, calendar: None) -> None:
    for route in ("appointments", "timeline"):
        assert (await app_client.get(f"/api/v1/mailboxes/adele@contoso.com/{route}")).status == 401
        forbidden = await app_client.get(f"/api/v1/mailboxes/adele@contoso.com/{route}", headers=bearer(ADMIN_TOKEN))
        assert forbidden.status == 403
