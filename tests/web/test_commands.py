"""The write routes' guards that need no Exchange: tokens and scopes, checked before anything else."""

from __future__ import annotations

import pytest

from tests.web import ADMIN_TOKEN, WORKFORCE_TOKEN, Client, bearer

WRITES = [
    ("POST", "/api/v1/mailboxes/adele@contoso.com/appointments"),
    ("PATCH", "/api/v1/mailboxes/adele@contoso.com/appointments/AAMkAG1"),
    ("DELETE", "/api/v1/mailboxes/adele@contoso.com/appointments/AAMkAG1"),
    ("PUT", "/api/v1/mailboxes/adele@contoso.com/state"),
    ("DELETE", "/api/v1/mailboxes/adele@contoso.com/bridge-items"),
    ("POST", "/api/v1/mail"),
    ("GET", "/api/v1/commands/11111111-2222-3333-4444-555555555555"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_write_routes_need_a_workforce_token(app_client: Client, method: str, path: str) -> None:
    anonymous = await app_client.request(method, path, json={"template": "meeting"})
    wrong_scope = await app_client.request(method, path, json={"template": "meeting"}, headers=bearer(ADMIN_TOKEN))
    wrong_token = await app_client.request(
        method, path, json={"template": "meeting"}, headers=bearer("not-a-configured-token-at-all")
    )

    assert anonymous.status == wrong_token.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong_scope.status == 403
    assert (await wrong_scope.json())["detail"] == "this route needs a token with the 'workforce' scope"


# Found by the negative fuzz run: values of the wrong type inside `recurrence` were looked up in a set (a 500).
@pytest.mark.parametrize(
    ("recurrence", "name"),
    [
        ({"pattern": {"a": 1}, "until": "2030-01-01"}, "recurrence.pattern"),
        ({"pattern": "weekly", "days_of_week": [["monday"]], "until": "2030-01-01"}, "recurrence.days_of_week"),
    ],
)
async def test_a_recurrence_of_the_wrong_shape_is_a_400(app_client: Client, recurrence: object, name: str) -> None:
    body = {"template": "meeting", "start": "2030-01-01T09:00:00Z", "end": "2030-01-01T10:00:00Z"}
    response = await app_client.post(
        "/api/v1/mailboxes/adele@contoso.com/appointments",
        json={**body, "recurrence": recurrence},
        headers=bearer(WORKFORCE_TOKEN),
    )

    assert response.status == 400
    assert name in [item["name"] for item in (await response.json())["invalid_params"]]


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"start": "2030-01-01T09:00:00", "end": "2030-01-02T00:00:00", "all_day": True}, "start"),
        ({"start": "2030-01-01", "end": "2030-01-02", "time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"start": "2030-01-01", "end": "2030-01-02", "time_zone": 7}, "time_zone"),
        ({"start": "2030-01-01T10:00:00", "end": "2030-01-01T09:00:00"}, "end"),
    ],
)
async def test_local_times_that_cannot_be_placed_are_a_400_naming_the_field(
    app_client: Client, body: dict[str, object], name: str
) -> None:
    response = await app_client.post(
        "/api/v1/mailboxes/adele@contoso.com/appointments",
        json={"template": "meeting", **body},
        headers=bearer(WORKFORCE_TOKEN),
    )

    assert response.status == 400
    assert [item["name"] for item in (await response.json())["invalid_params"]] == [name]
