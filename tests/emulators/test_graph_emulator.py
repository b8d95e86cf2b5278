"""The Graph emulator over real HTTPS: tokens, auth, users, events, time zones, $batch, sendMail, limits, faults."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from azure.core.exceptions import ClientAuthenticationError

from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.conftest import emulator_credential
from tests.emulators.graph_helpers import (
    ADELE_ID,
    ETAG,
    GRAPH_DATETIME,
    GRAPH_INSTANT,
    GraphHttp,
    assert_shape,
    event_payload,
    fetch_token,
    fixture,
)

EVENTS = "/v1.0/users/AdeleV@contoso.com/events"
BRIDGE_PROPERTY = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name BridgeRef"


# -- tokens and auth -------------------------------------------------------------------------------------------


async def test_client_secret_credential_gets_a_token(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration
) -> None:
    credential = emulator_credential(graph_emulator, tenant_app)
    async with credential:
        token = await credential.get_token("https://graph.microsoft.com/.default")

    assert token.token.count(".") == 2
    assert token.expires_on > time.time() + 3000


async def test_wrong_secret_raises_client_authentication_error(
    graph_emulator: GraphEmulator, tenant_app: AppRegistration
) -> None:
    credential = emulator_credential(graph_emulator, tenant_app, "not-the-secret")
    async with credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
            await credential.get_token("https://graph.microsoft.com/.default")


async def test_token_endpoint_answers_like_entra(
    http_session: aiohttp.ClientSession, graph_base_url: str, tenant_app: AppRegistration
) -> None:
    form = {
        "client_id": tenant_app.client_id,
        "client_secret": tenant_app.client_secret,
        "scope": "https://graph.microsoft.com/.default",
        "grant_type": "client_credentials",
    }
    async with http_session.post(f"{graph_base_url}/{tenant_app.tenant_id}/oauth2/v2.0/token", data=form) as answer:
        body = await answer.json()

    assert answer.status == 200
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == ("Bearer", 3599, 3599)


async def test_wrong_secret_answers_401_invalid_client(
    http_session: aiohttp.ClientSession, graph_base_url: str, tenant_app: AppRegistration
) -> None:
    form = {
        "client_id": tenant_app.client_id,
        "client_secret": "wrong",
        "scope": "https://graph.microsoft.com/.default",
        "grant_type": "client_credentials",
    }
    async with http_session.post(f"{graph_base_url}/{tenant_app.tenant_id}/oauth2/v2.0/token", data=form) as answer:
        body = await answer.json()

    assert answer.status == 401
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)


@pytest.mark.parametrize(
    ("tenant", "client", "code"),
    [("11111111-2222-3333-4444-555555555555", None, 90002), (None, "99999999-2222-3333-4444-555555555555", 700016)],
)
async def test_unknown_tenant_or_client_answers_400(
    http_session: aiohttp.ClientSession,
    graph_base_url: str,
    tenant_app: AppRegistration,
    tenant: str | None,
    client: str | None,
    code: int,
) -> None:
    form = {
        "client_id": client or tenant_app.client_id,
        "client_secret": tenant_app.client_secret,
        "scope": "https://graph.microsoft.com/.default",
        "grant_type": "client_credentials",
    }
    url = f"{graph_base_url}/{tenant or tenant_app.tenant_id}/oauth2/v2.0/token"
    async with http_session.post(url, data=form) as answer:
        body = await answer.json()

    assert answer.status == 400
    assert body["error_codes"] == [code]


async def test_graph_requires_a_bearer_token(graph: GraphHttp) -> None:
    answer = await graph.get(EVENTS, auth=False)

    assert answer.status == 401
    assert answer.body["error"]["code"] == "InvalidAuthenticationToken"
    assert set(answer.body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}


async def test_unknown_token_is_refused(graph: GraphHttp) -> None:
    answer = await graph.get(EVENTS, headers={"Authorization": "Bearer made-up"})

    assert answer.status == 401
    assert answer.body["error"]["code"] == "InvalidAuthenticationToken"


async def test_expired_token_is_refused(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.expire_tokens()

    answer = await graph.get(EVENTS)

    assert answer.status == 401
    assert "expired" in answer.body["error"]["message"]


async def test_error_echoes_client_request_id(graph: GraphHttp) -> None:
    answer = await graph.get(EVENTS, auth=False, headers={"client-request-id": "abc-123"})

    assert answer.body["error"]["innerError"]["client-request-id"] == "abc-123"
    assert answer.headers["client-request-id"] == "abc-123"


def claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def test_a_token_carries_the_apps_application_permissions_as_roles(
    http_session: aiohttp.ClientSession, graph_base_url: str, graph_emulator: GraphEmulator, tenant_app: AppRegistration
) -> None:
    graph_emulator.grant(tenant_app.client_id, ["Calendars.Read", "Mail.Send"])

    token = await fetch_token(http_session, graph_base_url, tenant_app)

    assert claims(token)["roles"] == ["Calendars.Read", "Mail.Send"]


Granted = Callable[..., Awaitable[GraphHttp]]


@pytest.fixture
def granted(
    http_session: aiohttp.ClientSession,
    graph_base_url: str,
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
) -> Granted:
    """Makes a client whose token was issued after the app was granted only the roles given."""

    async def client(*roles: str) -> GraphHttp:
        graph_emulator.grant(tenant_app.client_id, roles)
        return GraphHttp(http_session, graph_base_url, await fetch_token(http_session, graph_base_url, tenant_app))

    return client


async def test_a_write_without_calendars_readwrite_answers_403_access_denied(granted: Granted) -> None:
    graph = await granted("Calendars.Read")

    read = await graph.get(EVENTS)
    write = await graph.post(EVENTS, event_payload())

    assert read.status == 200
    assert write.status == 403
    assert write.body["error"]["code"] == "ErrorAccessDenied"
    assert write.body["error"]["message"] == "Access is denied. Check credentials and try again."


async def test_send_mail_without_mail_send_answers_403(granted: Granted, graph_emulator: GraphEmulator) -> None:
    graph = await granted("Calendars.ReadWrite")
    message = {"message": {"subject": "s", "body": {"content": "b"}, "toRecipients": []}}

    answer = await graph.post("/v1.0/users/AdeleV@contoso.com/sendMail", message)

    assert (answer.status, answer.body["error"]["code"]) == (403, "ErrorAccessDenied")
    assert graph_emulator.sent_mail() == []


async def test_a_token_keeps_the_roles_it_was_issued_with(
    graph: GraphHttp, graph_emulator: GraphEmulator, tenant_app: AppRegistration
) -> None:
    graph_emulator.grant(tenant_app.client_id, [])  # consent withdrawn: only new tokens lack the roles

    assert (await graph.get(EVENTS)).status == 200


async def test_reading_a_user_without_a_directory_permission_answers_authorization_request_denied(
    granted: Granted,
) -> None:
    graph = await granted("Calendars.ReadWrite")

    answer = await graph.get("/v1.0/users/AdeleV@contoso.com")

    assert (answer.status, answer.body["error"]["code"]) == (403, "Authorization_RequestDenied")


async def test_an_application_access_policy_keeps_the_app_out_of_other_mailboxes(
    graph: GraphHttp, graph_emulator: GraphEmulator, tenant_app: AppRegistration, bob: DirectoryUser
) -> None:
    graph_emulator.restrict_access(tenant_app.client_id, ["AdeleV@contoso.com"])

    allowed = await graph.get(EVENTS)
    refused = await graph.get("/v1.0/users/bob@contoso.com/events")
    directory = await graph.get("/v1.0/users/bob@contoso.com")

    assert allowed.status == 200
    assert refused.status == 403
    assert refused.body["error"]["code"] == "ErrorAccessDenied"
    assert "Blocked by tenant configured AppOnly AccessPolicy settings" in refused.body["error"]["message"]
    assert directory.status == 200  # the policy is Exchange's: the directory is not behind it


async def test_lifting_the_access_policy_opens_every_mailbox_again(
    graph: GraphHttp, graph_emulator: GraphEmulator, tenant_app: AppRegistration, bob: DirectoryUser
) -> None:
    graph_emulator.restrict_access(tenant_app.client_id, ["AdeleV@contoso.com"])
    graph_emulator.restrict_access(tenant_app.client_id, None)

    assert (await graph.get("/v1.0/users/bob@contoso.com/events")).status == 200


async def test_the_control_api_grants_roles_and_sets_an_access_policy(
    http_session: aiohttp.ClientSession, graph_base_url: str, tenant_app: AppRegistration, adele: DirectoryUser
) -> None:
    base = f"{graph_base_url}/_control/apps/{tenant_app.client_id}"
    async with http_session.put(f"{base}/roles", json={"roles": ["Calendars.Read"]}) as response:
        granted = await response.json()
    async with http_session.put(f"{base}/accessPolicy", json={"users": ["AdeleV@contoso.com"]}) as response:
        restricted = await response.json()
    async with http_session.put(f"{base}/roles", json={"roles": "all"}) as response:
        refused = response.status

    assert granted["roles"] == ["Calendars.Read"]
    assert restricted["mailboxScope"] == [adele.id]
    assert refused == 400


# -- users -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["AdeleV@contoso.com", "adelev@CONTOSO.com", ADELE_ID])
async def test_user_is_found_by_upn_or_guid(graph: GraphHttp, key: str) -> None:
    answer = await graph.get(f"/v1.0/users/{key}")

    assert answer.status == 200
    assert answer.body["id"] == ADELE_ID
    assert answer.body["userPrincipalName"] == "AdeleV@contoso.com"
    assert {"displayName", "mail"} <= set(answer.body)


async def test_unknown_user_answers_resource_not_found(graph: GraphHttp) -> None:
    answer = await graph.get("/v1.0/users/nobody@contoso.com")

    assert answer.status == 404
    assert answer.body["error"]["code"] == "Request_ResourceNotFound"


async def test_mailbox_route_of_unknown_user_answers_error_invalid_user(graph: GraphHttp) -> None:
    answer = await graph.get("/v1.0/users/nobody@contoso.com/events")

    assert answer.status == 404
    assert answer.body["error"]["code"] == "ErrorInvalidUser"


async def test_user_without_mailbox_answers_mailbox_not_enabled(
    graph: GraphHttp, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.add_user("nomail@contoso.com", has_mailbox=False)

    answer = await graph.get("/v1.0/users/nomail@contoso.com/events")

    assert answer.status == 404
    assert answer.body["error"]["code"] == "MailboxNotEnabledForRESTAPI"


# -- events ----------------------------------------------------------------------------------------------------


async def test_created_event_has_the_documented_shape(graph: GraphHttp) -> None:
    answer = await graph.post(EVENTS, event_payload())

    assert answer.status == 201
    documented = fixture("delta_page_1.json")["value"][0]
    assert_shape(documented, answer.body)
    assert answer.body["type"] == "singleInstance"
    assert answer.body["isOrganizer"] is True
    assert answer.body["organizer"]["emailAddress"]["address"] == "AdeleV@contoso.com"
    assert answer.body["@odata.etag"] == f'W/"{answer.body["changeKey"]}"'
    assert ETAG.match(answer.body["@odata.etag"])
    assert GRAPH_INSTANT.match(answer.body["createdDateTime"])
    assert answer.body["start"] == {"dateTime": "2026-11-24T09:00:00.0000000", "timeZone": "UTC"}
    assert answer.body["@odata.context"].startswith(graph.base_url + "/v1.0/$metadata#")


async def test_event_reads_back_by_id(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload(showAs="oof", sensitivity="private", categories=["A"]))).body

    answer = await graph.get(f"{EVENTS}/{created['id']}")

    assert answer.status == 200
    assert (answer.body["showAs"], answer.body["sensitivity"], answer.body["categories"]) == ("oof", "private", ["A"])
    assert answer.body["changeKey"] == created["changeKey"]


async def test_patch_changes_the_change_key_and_etag(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body

    answer = await graph.patch(f"{EVENTS}/{created['id']}", {"subject": "Moved"})

    assert answer.status == 200
    assert answer.body["subject"] == "Moved"
    assert answer.body["changeKey"] != created["changeKey"]
    assert answer.body["@odata.etag"] == f'W/"{answer.body["changeKey"]}"'
    assert answer.body["lastModifiedDateTime"] >= created["lastModifiedDateTime"]


async def test_if_match_with_a_stale_change_key_answers_412(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body
    await graph.patch(f"{EVENTS}/{created['id']}", {"subject": "Changed elsewhere"})

    answer = await graph.patch(
        f"{EVENTS}/{created['id']}", {"subject": "Mine"}, headers={"If-Match": f'W/"{created["changeKey"]}"'}
    )

    documented = fixture("error_412_conflict.json")
    assert answer.status == documented["_status"]
    assert_shape(documented["body"], answer.body)
    assert answer.body["error"]["code"] == documented["body"]["error"]["code"]
    assert answer.body["error"]["message"] == documented["body"]["error"]["message"]


async def test_delete_with_the_current_change_key_succeeds(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body

    answer = await graph.delete(f"{EVENTS}/{created['id']}", headers={"If-Match": created["@odata.etag"]})

    assert answer.status == 204
    assert (await graph.get(f"{EVENTS}/{created['id']}")).status == 404


async def test_deleted_event_answers_error_item_not_found(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body
    await graph.delete(f"{EVENTS}/{created['id']}")

    answer = await graph.get(f"{EVENTS}/{created['id']}")

    assert answer.status == 404
    assert answer.body["error"]["code"] == "ErrorItemNotFound"


async def test_malformed_id_answers_400(graph: GraphHttp) -> None:
    answer = await graph.get(f"{EVENTS}/not-an-id")

    assert answer.status == 400
    assert answer.body["error"]["code"] == "ErrorInvalidIdMalformed"


async def test_same_transaction_id_returns_the_existing_event(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    first = await graph.post(EVENTS, event_payload(transactionId="tx-1"))

    second = await graph.post(EVENTS, event_payload(subject="Retry", transactionId="tx-1"))

    assert (first.status, second.status) == (201, 201)
    assert second.body["id"] == first.body["id"]
    assert second.body["subject"] == "Customer visit"
    assert second.body["transactionId"] == "tx-1"
    assert len(graph_emulator.events("AdeleV@contoso.com")) == 1


async def test_transaction_ids_are_per_user(graph: GraphHttp, bob: DirectoryUser) -> None:
    first = await graph.post(EVENTS, event_payload(transactionId="tx-1"))

    second = await graph.post("/v1.0/users/bob@contoso.com/events", event_payload(transactionId="tx-1"))

    assert second.body["id"] != first.body["id"]


async def test_extended_property_is_returned_only_when_expanded(graph: GraphHttp) -> None:
    payload = event_payload(singleValueExtendedProperties=[{"id": BRIDGE_PROPERTY, "value": "ref-42"}])
    created = (await graph.post(EVENTS, payload)).body

    plain = await graph.get(f"{EVENTS}/{created['id']}")
    # The form msgraph-sdk sends: $expand=singleValueExtendedProperties($filter=id eq '...'), percent-encoded.
    expand = "singleValueExtendedProperties%28%24filter%3Did%20eq%20%27" + BRIDGE_PROPERTY.replace(" ", "%20")
    expanded = await graph.get(f"{EVENTS}/{created['id']}?%24expand={expand}%27%29")

    assert "singleValueExtendedProperties" not in created
    assert "singleValueExtendedProperties" not in plain.body
    assert expanded.body["singleValueExtendedProperties"] == [{"id": BRIDGE_PROPERTY, "value": "ref-42"}]


async def test_expand_of_another_property_returns_none(graph: GraphHttp) -> None:
    payload = event_payload(singleValueExtendedProperties=[{"id": BRIDGE_PROPERTY, "value": "ref-42"}])
    created = (await graph.post(EVENTS, payload)).body
    other = "String {00000000-0000-0000-0000-000000000000} Name Other"

    answer = await graph.get(f"{EVENTS}/{created['id']}?$expand=singleValueExtendedProperties($filter=id eq '{other}')")

    assert "singleValueExtendedProperties" not in answer.body


async def test_select_returns_only_the_named_properties(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body

    answer = await graph.get(f"{EVENTS}/{created['id']}?$select=subject,showAs")

    assert set(answer.body) == {"@odata.context", "@odata.etag", "id", "subject", "showAs"}


async def test_unknown_property_is_refused(graph: GraphHttp) -> None:
    answer = await graph.post(EVENTS, event_payload(colour="blue"))

    assert answer.status == 400
    assert answer.body["error"]["code"] == "RequestBodyRead"


async def test_invalid_show_as_is_refused(graph: GraphHttp) -> None:
    answer = await graph.post(EVENTS, event_payload(showAs="sleeping"))

    assert answer.status == 400


async def test_end_before_start_is_refused(graph: GraphHttp) -> None:
    answer = await graph.post(EVENTS, event_payload(start="2026-11-24T10:00:00", end="2026-11-24T09:00:00"))

    assert answer.status == 400
    assert answer.body["error"]["code"] == "ErrorCalendarEndDateIsEarlierThanStartDate"


async def test_outlook_can_create_an_invitation(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    organizer = {"emailAddress": {"name": "Megan Bowen", "address": "meganb@contoso.com"}}
    made = graph_emulator.create_event_as_outlook(
        "AdeleV@contoso.com", event_payload(subject="Review", isOrganizer=False, organizer=organizer)
    )

    answer = await graph.get(f"{EVENTS}/{made['id']}")

    assert answer.body["isOrganizer"] is False
    assert answer.body["organizer"] == organizer
    assert answer.body["responseStatus"]["response"] == "notResponded"


async def test_graph_cannot_make_itself_a_non_organizer(graph: GraphHttp) -> None:
    answer = await graph.post(EVENTS, event_payload(isOrganizer=False))

    assert answer.body["isOrganizer"] is True


async def test_events_list_pages_with_a_next_link(graph: GraphHttp) -> None:
    for hour in range(9, 14):
        await graph.post(
            EVENTS, event_payload(start=f"2026-11-24T{hour:02d}:00:00", end=f"2026-11-24T{hour:02d}:30:00")
        )

    first = await graph.get(f"{EVENTS}?$top=3")
    second = await graph.get(first.body["@odata.nextLink"])

    assert len(first.body["value"]) == 3
    assert first.body["@odata.nextLink"].startswith(graph.base_url + "/v1.0/users/")
    assert len(second.body["value"]) == 2
    assert "@odata.nextLink" not in second.body


# -- time zones ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "utc_start"),
    [
        ("W. Europe Standard Time", "2026-11-24T08:00:00.0000000"),
        ("Central Europe Standard Time", "2026-11-24T08:00:00.0000000"),
        ("GMT Standard Time", "2026-11-24T09:00:00.0000000"),
        ("Eastern Standard Time", "2026-11-24T14:00:00.0000000"),
        ("Pacific Standard Time", "2026-11-24T17:00:00.0000000"),
        ("Europe/Berlin", "2026-11-24T08:00:00.0000000"),
    ],
)
async def test_event_in_a_named_zone_reads_back_in_utc(graph: GraphHttp, zone: str, utc_start: str) -> None:
    created = await graph.post(EVENTS, event_payload(zone=zone))

    assert created.body["start"] == {"dateTime": utc_start, "timeZone": "UTC"}
    assert created.body["originalStartTimeZone"] == zone


async def test_unknown_time_zone_is_refused(graph: GraphHttp) -> None:
    answer = await graph.post(EVENTS, event_payload(zone="Mars Standard Time"))

    assert answer.status == 400
    assert answer.body["error"]["code"] == "TimeZoneNotSupportedException"


async def test_prefer_outlook_timezone_converts_and_is_applied(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body

    answer = await graph.get(
        f"{EVENTS}/{created['id']}", headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'}
    )

    assert answer.body["start"] == {"dateTime": "2026-11-24T01:00:00.0000000", "timeZone": "Pacific Standard Time"}
    assert answer.headers["Preference-Applied"] == 'outlook.timezone="Pacific Standard Time"'


async def test_all_day_event_stays_at_midnight_in_any_zone(graph: GraphHttp) -> None:
    payload = event_payload(
        subject="Vacation",
        start="2026-11-30T00:00:00",
        end="2026-12-02T00:00:00",
        zone="W. Europe Standard Time",
        isAllDay=True,
        showAs="oof",
    )
    created = (await graph.post(EVENTS, payload)).body

    answer = await graph.get(
        f"{EVENTS}/{created['id']}", headers={"Prefer": 'outlook.timezone="Eastern Standard Time"'}
    )

    assert answer.body["start"] == {"dateTime": "2026-11-30T00:00:00.0000000", "timeZone": "Eastern Standard Time"}
    assert answer.body["end"]["dateTime"] == "2026-12-02T00:00:00.0000000"
    assert GRAPH_DATETIME.match(created["start"]["dateTime"])


async def test_all_day_event_must_start_at_midnight(graph: GraphHttp) -> None:
    answer = await graph.post(EVENTS, event_payload(isAllDay=True))

    assert answer.status == 400
    # Graph's answer (microsoft-graph-docs issue 7919).
    assert answer.body["error"]["code"] == "ErrorPropertyValidationFailure"
    assert answer.body["error"]["message"] == "At least one property failed validation."


async def test_all_day_event_at_utc_midnight_is_refused_when_its_zone_is_berlin(graph: GraphHttp) -> None:
    # 00:00 UTC is 01:00 in Berlin: not midnight in the event's own zone.
    payload = event_payload(start="2026-11-30T01:00:00", end="2026-12-01T01:00:00", zone="Europe/Berlin")
    answer = await graph.post(EVENTS, {**payload, "isAllDay": True})

    assert (answer.status, answer.body["error"]["code"]) == (400, "ErrorPropertyValidationFailure")


async def test_an_event_keeps_its_zone_and_a_series_its_wall_clock_time_across_dst(graph: GraphHttp) -> None:
    payload = event_payload(start="2027-03-22T09:00:00", end="2027-03-22T10:00:00", zone="Europe/Berlin")
    recurrence = {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        "range": {"type": "endDate", "startDate": "2027-03-22", "endDate": "2027-03-29"},
    }
    created = (await graph.post(EVENTS, {**payload, "recurrence": recurrence})).body

    assert created["originalStartTimeZone"] == "Europe/Berlin"
    view = await graph.get(
        f"{EVENTS}/{created['id']}/instances?startDateTime=2027-03-21T00:00:00Z&endDateTime=2027-03-31T00:00:00Z"
    )
    starts = [item["start"]["dateTime"] for item in view.body["value"]]
    assert starts == ["2027-03-22T08:00:00.0000000", "2027-03-29T07:00:00.0000000"]  # 09:00 CET, 09:00 CEST


# -- mailboxSettings ---------------------------------------------------------------------------------------------


SETTINGS = "/v1.0/users/AdeleV@contoso.com/mailboxSettings"


async def test_mailbox_settings_answer_the_zone_the_user_chose(
    graph_emulator: GraphEmulator, adele: DirectoryUser, graph: GraphHttp
) -> None:
    assert (await graph.get(SETTINGS)).body["timeZone"] == "UTC"
    graph_emulator.state.mailbox_for(adele.id, None).time_zone = "Pacific Standard Time"  # chosen in Outlook

    answer = await graph.get(SETTINGS)

    assert answer.body["timeZone"] == "Pacific Standard Time"
    assert answer.body["workingHours"]["timeZone"]["name"] == "Pacific Standard Time"
    assert answer.body["@odata.context"].endswith("/mailboxSettings")


async def writer(
    graph_emulator: GraphEmulator, app: AppRegistration, session: aiohttp.ClientSession, base: str
) -> GraphHttp:
    graph_emulator.grant(app.client_id, ["MailboxSettings.ReadWrite"])
    return GraphHttp(session, base, await fetch_token(session, base, app))


async def test_mailbox_settings_take_a_new_zone_and_refuse_one_nobody_knows(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    adele: DirectoryUser,
    http_session: aiohttp.ClientSession,
    graph_base_url: str,
) -> None:
    settings = await writer(graph_emulator, tenant_app, http_session, graph_base_url)

    assert (await settings.request("PATCH", SETTINGS, json_body={"timeZone": "Europe/Berlin"})).status == 200
    refused = await settings.request("PATCH", SETTINGS, json_body={"timeZone": "Mars/Olympus_Mons"})

    assert refused.status == 400
    assert (await settings.get(SETTINGS)).body["timeZone"] == "Europe/Berlin"


async def test_mailbox_settings_need_their_permission(
    graph_emulator: GraphEmulator,
    tenant_app: AppRegistration,
    graph: GraphHttp,
    http_session: aiohttp.ClientSession,
    graph_base_url: str,
) -> None:
    graph_emulator.grant(tenant_app.client_id, ["Calendars.ReadWrite"])
    limited = GraphHttp(http_session, graph_base_url, await fetch_token(http_session, graph_base_url, tenant_app))

    answer = await limited.get("/v1.0/users/AdeleV@contoso.com/mailboxSettings")

    assert (answer.status, answer.body["error"]["code"]) == (403, "ErrorAccessDenied")


# -- $batch ----------------------------------------------------------------------------------------------------


async def test_batch_runs_items_after_their_dependencies(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body
    requests = [
        {"id": "2", "method": "GET", "url": f"/users/AdeleV@contoso.com/events/{created['id']}", "dependsOn": ["1"]},
        {
            "id": "1",
            "method": "PATCH",
            "url": f"/users/AdeleV@contoso.com/events/{created['id']}",
            "headers": {"Content-Type": "application/json"},
            "body": {"subject": "Batched"},
        },
    ]

    answer = await graph.post("/v1.0/$batch", {"requests": requests})

    by_id = {item["id"]: item for item in answer.body["responses"]}
    assert answer.status == 200
    assert [item["id"] for item in answer.body["responses"]] == ["1", "2"]  # as they finished, not as listed
    assert (by_id["1"]["status"], by_id["2"]["status"]) == (200, 200)
    assert by_id["2"]["body"]["subject"] == "Batched"
    assert by_id["2"]["headers"]["Content-Type"] == "application/json"


async def test_batch_item_with_a_failed_dependency_answers_424(graph: GraphHttp) -> None:
    requests = [
        {"id": "1", "method": "GET", "url": "/users/AdeleV@contoso.com/events/AAMkAGEmissing="},
        {"id": "2", "method": "DELETE", "url": "/users/AdeleV@contoso.com/events/AAMkAGEother=", "dependsOn": ["1"]},
    ]

    answer = await graph.post("/v1.0/$batch", {"requests": requests})

    statuses = {item["id"]: item["status"] for item in answer.body["responses"]}
    assert statuses == {"1": 404, "2": 424}


async def test_batch_of_more_than_20_requests_is_refused(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    requests = [{"id": str(n), "method": "GET", "url": "/users/AdeleV@contoso.com/mailboxSettings"} for n in range(21)]
    graph_emulator.clear_stats()

    answer = await graph.post("/v1.0/$batch", {"requests": requests})

    assert (answer.status, answer.body["error"]["code"]) == (400, "BadRequest")
    assert "20" in answer.body["error"]["message"]
    assert "mailboxSettings" not in graph_emulator.stats()["byRoute"]  # none of them was run
    twenty = await graph.post("/v1.0/$batch", {"requests": requests[:20]})
    assert [item["status"] for item in twenty.body["responses"]] == [200] * 20


async def test_batch_with_an_absolute_url_inside_is_refused(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    absolute = f"{graph_emulator.graph_url}/users/AdeleV@contoso.com/mailboxSettings"
    requests = [
        {"id": "1", "method": "GET", "url": "/users/AdeleV@contoso.com/mailboxSettings"},
        {"id": "2", "method": "GET", "url": absolute},
    ]
    graph_emulator.clear_stats()

    answer = await graph.post("/v1.0/$batch", {"requests": requests})

    assert (answer.status, answer.body["error"]["code"]) == (400, "BadRequest")
    assert "mailboxSettings" not in graph_emulator.stats()["byRoute"]


async def test_batch_items_run_in_parallel_against_their_mailbox_s_concurrency(
    graph: GraphHttp, graph_emulator: GraphEmulator
) -> None:
    requests = [{"id": str(n), "method": "GET", "url": "/users/AdeleV@contoso.com/mailboxSettings"} for n in range(5)]
    graph_emulator.set_latency(100)

    started = time.monotonic()
    answer = await graph.post("/v1.0/$batch", {"requests": requests})
    took = time.monotonic() - started

    statuses = sorted(item["status"] for item in answer.body["responses"])
    assert statuses == [200, 200, 200, 200, 429]  # five at once for one mailbox: Graph's fifth is refused
    assert took < 0.3  # in parallel, one latency (not five, nor the batch's on top)
    assert graph_emulator.stats()["peakConcurrency"]["AdeleV@contoso.com"] == 5


async def test_batch_items_are_held_to_each_mailbox_s_limits_and_logged_as_its_requests(
    graph: GraphHttp, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.add_user("bob@contoso.com")
    graph_emulator.throttle(1, user="bob@contoso.com", route="mailboxSettings", retry_after=3)
    requests = [
        {"id": "a", "method": "GET", "url": "/users/AdeleV@contoso.com/mailboxSettings"},
        {"id": "b", "method": "GET", "url": "/users/bob@contoso.com/mailboxSettings"},
    ]
    graph_emulator.clear_stats()

    answer = await graph.post("/v1.0/$batch", {"requests": requests})

    by_id = {item["id"]: item for item in answer.body["responses"]}
    assert answer.status == 200
    assert (by_id["a"]["status"], by_id["a"]["body"]["timeZone"]) == (200, "UTC")
    assert (by_id["b"]["status"], by_id["b"]["headers"]["Retry-After"]) == (429, "3")
    assert by_id["b"]["body"]["error"]["code"] == "ApplicationThrottled"
    items = [(entry["route"], entry["user"], entry["status"]) for entry in graph_emulator.stats()["log"][:2]]
    assert items == [("mailboxSettings", "AdeleV@contoso.com", 200), ("mailboxSettings", "bob@contoso.com", 429)]
    assert graph_emulator.stats()["log"][2]["route"] == "batch"
    # Asking Bob again before his Retry-After is counted against the client, as a request of its own would be.
    await graph.post("/v1.0/$batch", {"requests": requests[1:]})
    assert graph_emulator.stats()["requestsBeforeRetryAfter"] == 1


async def test_batch_item_can_be_throttled_with_retry_after(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.throttle(1, route="events", retry_after=7)
    requests = [
        {
            "id": "1",
            "method": "POST",
            "url": "/users/AdeleV@contoso.com/events",
            "headers": {"Content-Type": "application/json"},
            "body": event_payload(),
        },
        {"id": "2", "method": "GET", "url": "/users/AdeleV@contoso.com"},
    ]

    answer = await graph.post("/v1.0/$batch", {"requests": requests})

    by_id = {item["id"]: item for item in answer.body["responses"]}
    assert by_id["1"]["status"] == 429
    assert by_id["1"]["headers"]["Retry-After"] == "7"
    assert by_id["2"]["status"] == 200


async def test_batch_creates_are_idempotent_by_transaction_id(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    item = {
        "id": "1",
        "method": "POST",
        "url": "/users/AdeleV@contoso.com/events",
        "headers": {"Content-Type": "application/json"},
        "body": event_payload(transactionId="tx-b"),
    }

    await graph.post("/v1.0/$batch", {"requests": [item]})
    await graph.post("/v1.0/$batch", {"requests": [item]})

    assert len(graph_emulator.events("AdeleV@contoso.com")) == 1


# -- sendMail --------------------------------------------------------------------------------------------------


async def test_send_mail_is_accepted_and_recorded(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    message = {
        "subject": "Your roster changed",
        "body": {"contentType": "text", "content": "See the portal."},
        "toRecipients": [{"emailAddress": {"address": "planner@contoso.com"}}],
        "ccRecipients": [],
        "bccRecipients": [],
    }

    answer = await graph.post("/v1.0/users/AdeleV@contoso.com/sendMail", {"message": message, "saveToSentItems": True})

    assert answer.status == 202
    assert answer.body is None
    sent = graph_emulator.sent_mail()
    assert sent[0]["from"] == "AdeleV@contoso.com"
    assert sent[0]["message"]["subject"] == "Your roster changed"


async def test_send_mail_without_recipients_is_refused(graph: GraphHttp) -> None:
    answer = await graph.post("/v1.0/users/AdeleV@contoso.com/sendMail", {"message": {"subject": "x"}})

    assert answer.status == 400
    assert answer.body["error"]["code"] == "ErrorInvalidRecipients"


# -- limits, faults, stats -------------------------------------------------------------------------------------


async def test_fifth_concurrent_request_of_a_mailbox_is_throttled(
    graph: GraphHttp, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.set_latency(150)

    answers = await asyncio.gather(*(graph.get("/v1.0/users/AdeleV@contoso.com/events") for _ in range(5)))

    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200, 200, 200, 200, 429]
    throttled = next(answer for answer in answers if answer.status == 429)
    documented = fixture("error_429_throttled.json")
    assert throttled.body["error"]["code"] == documented["body"]["error"]["code"]
    assert throttled.body["error"]["message"] == documented["body"]["error"]["message"]
    assert "Retry-After" in throttled.headers
    assert graph_emulator.stats()["peakConcurrency"]["AdeleV@contoso.com"] == 5


async def test_four_concurrent_requests_are_within_the_limit(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.set_latency(100)

    answers = await asyncio.gather(*(graph.get("/v1.0/users/AdeleV@contoso.com/events") for _ in range(4)))

    assert [answer.status for answer in answers] == [200] * 4
    assert graph_emulator.stats()["peakConcurrency"]["AdeleV@contoso.com"] == 4


async def test_concurrency_is_counted_per_mailbox(
    graph: GraphHttp, graph_emulator: GraphEmulator, bob: DirectoryUser
) -> None:
    graph_emulator.set_latency(100)
    users = ["AdeleV@contoso.com"] * 4 + ["bob@contoso.com"] * 4

    answers = await asyncio.gather(*(graph.get(f"/v1.0/users/{user}/events") for user in users))

    assert {answer.status for answer in answers} == {200}


async def test_injected_throttle_answers_429_with_retry_after(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.throttle(2, user="AdeleV@contoso.com", route="events", retry_after=3)

    answers = [await graph.get(EVENTS) for _ in range(3)]

    assert [answer.status for answer in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"


async def test_injected_throttle_spares_other_users(
    graph: GraphHttp, graph_emulator: GraphEmulator, bob: DirectoryUser
) -> None:
    graph_emulator.throttle(1, user="AdeleV@contoso.com")

    other = await graph.get("/v1.0/users/bob@contoso.com/events")
    mine = await graph.get(EVENTS)

    assert (other.status, mine.status) == (200, 429)


async def test_injected_503_answers_with_retry_after(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.fail(1, status=503, retry_after=2)

    answer = await graph.get(EVENTS)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "2"
    assert answer.body["error"]["code"] == "ServiceNotAvailable"


async def test_latency_delays_every_response(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.set_latency(200)

    started = time.monotonic()
    await graph.get(EVENTS)

    assert time.monotonic() - started >= 0.19


async def test_stats_record_prefer_headers_and_routes(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    await graph.get(EVENTS, headers={"Prefer": 'IdType="ImmutableId", outlook.timezone="UTC"'})

    stats = graph_emulator.stats()

    assert stats["prefer"]['IdType="ImmutableId"'] == 1
    assert stats["prefer"]['outlook.timezone="UTC"'] == 1
    assert stats["byRoute"]["events"] == 1
    assert stats["byUser"]["AdeleV@contoso.com"] == 1
    assert stats["log"][-1]["path"] == EVENTS
    assert stats["log"][-1]["status"] == 200


async def test_rate_limit_throttles_past_its_budget(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.faults.rate_limit = (3, 600.0)

    answers = [await graph.get(EVENTS) for _ in range(4)]

    assert [answer.status for answer in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) > 500


async def test_the_global_limit_counts_an_apps_requests_whatever_the_mailbox(
    graph: GraphHttp, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.add_user("megan@contoso.com")
    graph_emulator.faults.app_rate_limit = (3, 10.0)

    answers = [await graph.get(EVENTS), await graph.get("/v1.0/users/megan@contoso.com/events")]
    answers += [await graph.get("/v1.0/subscriptions"), await graph.get("/v1.0/users/megan@contoso.com/events")]

    assert [answer.status for answer in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 10


# -- control API -----------------------------------------------------------------------------------------------


async def test_control_api_adds_a_user_and_an_outlook_event(graph: GraphHttp) -> None:
    user = await graph.post("/_control/users", {"userPrincipalName": "megan@contoso.com"}, auth=False)
    made = await graph.post(
        "/_control/users/megan@contoso.com/events", event_payload(subject="From Outlook"), auth=False
    )

    read = await graph.get(f"/v1.0/users/{user.body['id']}/events/{made.body['id']}")

    assert (user.status, made.status) == (201, 201)
    assert read.body["subject"] == "From Outlook"


async def test_control_api_injects_a_fault(graph: GraphHttp) -> None:
    answer = await graph.post("/_control/faults", {"kind": "throttle", "count": 1, "retryAfter": 5}, auth=False)

    throttled = await graph.get(EVENTS)

    assert answer.status == 200
    assert answer.body["rules"][0]["status"] == 429
    assert throttled.status == 429


async def test_control_api_reports_stats_and_mail(graph: GraphHttp) -> None:
    await graph.get(EVENTS)

    stats = await graph.get("/_control/stats?log=1", auth=False)
    mail = await graph.get("/_control/mail", auth=False)

    assert stats.body["byRoute"]["events"] == 1
    assert len(stats.body["log"]) == 1
    assert mail.body == {"value": []}


async def test_control_api_lists_raw_events_and_resets(graph: GraphHttp) -> None:
    await graph.post(EVENTS, event_payload(singleValueExtendedProperties=[{"id": BRIDGE_PROPERTY, "value": "r"}]))

    listed = await graph.get("/_control/users/AdeleV@contoso.com/events", auth=False)
    reset = await graph.post("/_control/reset", {}, auth=False)
    after = await graph.get("/_control/users/AdeleV@contoso.com/events", auth=False)

    assert listed.body["value"][0]["singleValueExtendedProperties"] == [{"id": BRIDGE_PROPERTY, "value": "r"}]
    assert reset.status == 204
    assert after.body == {"value": []}


async def test_control_api_errors_use_graph_error_shape(graph: GraphHttp) -> None:
    answer = await graph.post("/_control/faults", {"kind": "nonsense"}, auth=False)

    assert answer.status == 400
    assert answer.body["error"]["code"] == "BadRequest"


async def test_standalone_main_prints_urls_and_ca(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulators.graph",
        "--port",
        "0",
        "--ca-file",
        str(tmp_path / "ca.pem"),
        "--user",
        f"adele@contoso.com={ADELE_ID}",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not lines or not lines[-1].startswith("{"):
                lines.append((await process.stdout.readline()).decode().strip())
    finally:
        process.terminate()
        await process.wait()

    assert "Graph emulator listening" in lines[0]
    assert str(tmp_path / "ca.pem") in "\n".join(lines)
    assert (tmp_path / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    summary = json.loads(lines[-1])
    assert summary["graphUrl"] == summary["baseUrl"] + "/v1.0"
    assert summary["users"][0]["id"] == ADELE_ID


async def test_refused_patch_leaves_the_event_unchanged(graph: GraphHttp) -> None:
    created = (await graph.post(EVENTS, event_payload())).body
    bad = {"start": {"dateTime": "2026-11-24T08:00:00", "timeZone": "UTC"}, "showAs": "sleeping"}

    refused = await graph.patch(f"{EVENTS}/{created['id']}", bad)
    answer = await graph.get(f"{EVENTS}/{created['id']}")

    assert refused.status == 400
    assert answer.body["start"] == created["start"]
    assert answer.body["changeKey"] == created["changeKey"]


async def test_stats_count_refused_requests_for_their_user(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.throttle(1)

    await graph.get(EVENTS)

    stats = graph_emulator.stats()
    assert stats["byUser"] == {"AdeleV@contoso.com": 1}
    assert stats["log"][-1]["status"] == 429
    assert stats["log"][-1]["user"] == "AdeleV@contoso.com"


async def test_error_request_id_header_matches_the_body(graph: GraphHttp) -> None:
    answer = await graph.get(f"{EVENTS}/AAMkAGEmissing=")

    assert answer.headers["request-id"] == answer.body["error"]["innerError"]["request-id"]


async def test_a_rotated_secret_refuses_the_old_secret_and_its_tokens(
    graph: GraphHttp, graph_emulator: GraphEmulator, tenant_app: AppRegistration
) -> None:
    new = graph_emulator.rotate_secret(secret="the-new-secret")

    answer = await graph.get(EVENTS)

    assert answer.status == 401
    assert graph_emulator.state.apps[tenant_app.client_id].client_secret == new == "the-new-secret"


async def test_a_removed_user_is_unknown(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.remove_user(ADELE_ID)

    answer = await graph.get(EVENTS)

    assert (answer.status, answer.body["error"]["code"]) == (404, "ErrorInvalidUser")


async def test_a_share_of_requests_is_throttled_and_early_retries_are_counted(
    graph: GraphHttp, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.throttle_share(0.5, 30, retry_after=5)
    answers = [await graph.get(EVENTS) for _ in range(40)]

    throttled = [answer for answer in answers if answer.status == 429]
    assert 5 <= len(throttled) <= 35
    assert throttled[0].headers["Retry-After"] == "5"
    # Every request after the first 429 came before its Retry-After had passed.
    first = next(n for n, answer in enumerate(answers) if answer.status == 429)
    assert graph_emulator.stats()["requestsBeforeRetryAfter"] == len(answers) - first - 1


async def test_malformed_answers_are_200_in_the_wrong_shape(graph: GraphHttp, graph_emulator: GraphEmulator) -> None:
    graph_emulator.malformed_answers(1, user=ADELE_ID)

    broken, fine = await graph.get(EVENTS), await graph.get(EVENTS)

    assert (broken.status, broken.body["value"]) == (200, "not a list of events")
    assert isinstance(fine.body["value"], list)
