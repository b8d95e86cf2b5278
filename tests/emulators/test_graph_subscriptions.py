"""Subscriptions, the validation handshake and change / lifecycle notifications of the Graph emulator."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulators.graph import GraphEmulator
from emulators.graph_model import AppRegistration, DirectoryUser
from tests.emulators.graph_helpers import ADELE_ID, Answer, GraphHttp, Receiver, assert_shape, event_payload, fixture

EVENTS = "/v1.0/users/AdeleV@contoso.com/events"


def expiry(delta: timedelta = timedelta(days=2)) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def request_body(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    """The documented request (subscription_create_request.json), pointed at the test's receiver."""
    body: dict[str, Any] = fixture("subscription_create_request.json")
    body.update(
        notificationUrl=receiver.url,
        lifecycleNotificationUrl=receiver.lifecycle_url,
        resource=f"/users/{ADELE_ID}/events",
        expirationDateTime=expiry(),
    )
    body.update(overrides)
    return body


async def subscribe(graph: GraphHttp, receiver: Receiver, **overrides: Any) -> Answer:
    return await graph.post("/v1.0/subscriptions", request_body(receiver, **overrides))


@pytest.fixture
async def subscription(graph: GraphHttp, receiver: Receiver) -> dict[str, Any]:
    answer = await subscribe(graph, receiver)
    assert answer.status == 201, answer.body
    body: dict[str, Any] = answer.body
    return body


# -- creating, renewing, removing ------------------------------------------------------------------------------


async def test_subscription_is_created_after_the_validation_handshake(
    graph: GraphHttp, receiver: Receiver, tenant_app: AppRegistration
) -> None:
    answer = await subscribe(graph, receiver)

    documented = fixture("subscription_create_response.json")
    assert answer.status == 201
    assert set(answer.body) == set(documented)
    assert_shape(documented, answer.body)
    assert answer.body["@odata.context"] == f"{graph.base_url}/v1.0/$metadata#subscriptions/$entity"
    assert answer.body["applicationId"] == tenant_app.client_id
    assert answer.body["resource"] == f"/users/{ADELE_ID}/events"
    assert answer.body["changeType"] == "created,updated,deleted"
    assert answer.body["clientState"] == "secretClientValue"
    assert len(receiver.validations) == 2
    assert receiver.validations[0].startswith("Validation: Testing client application reachability")


async def test_resource_without_leading_slash_and_by_upn_is_accepted(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, resource="users/AdeleV@contoso.com/events")

    assert answer.status == 201


async def test_validation_with_a_wrong_echo_fails(graph: GraphHttp, receiver: Receiver) -> None:
    receiver.echo = str.upper

    answer = await subscribe(graph, receiver)

    assert answer.status == 400
    assert answer.body["error"]["code"] == "ValidationError"
    assert answer.body["error"]["message"].startswith("Subscription validation request failed.")


async def test_unreachable_notification_url_fails_validation(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, notificationUrl="http://127.0.0.1:9/hooks/graph")

    assert answer.status == 400
    assert answer.body["error"]["code"] == "ValidationError"


async def test_lifecycle_url_is_validated_too(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, lifecycleNotificationUrl="http://127.0.0.1:9/hooks/graph/lifecycle")

    assert answer.status == 400


async def test_same_subscription_twice_answers_409(
    graph: GraphHttp, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    answer = await subscribe(graph, receiver)

    assert answer.status == 409


async def test_client_state_longer_than_128_characters_is_refused(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, clientState="x" * 129)

    assert answer.status == 400


async def test_expiration_beyond_10080_minutes_is_refused(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, expirationDateTime=expiry(timedelta(minutes=10_081)))

    assert answer.status == 400
    assert "10080 minutes" in answer.body["error"]["message"]


async def test_expiration_in_the_past_is_refused(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, expirationDateTime=expiry(timedelta(minutes=-1)))

    assert answer.status == 400


async def test_unknown_change_type_is_refused(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, changeType="created,moved")

    assert answer.status == 400


async def test_quota_fault_answers_403(graph: GraphHttp, receiver: Receiver, graph_emulator: GraphEmulator) -> None:
    graph_emulator.subscription_quota(1)

    answer = await subscribe(graph, receiver)

    assert answer.status == 403


async def test_renewal_moves_the_expiration(graph: GraphHttp, subscription: dict[str, Any]) -> None:
    later = expiry(timedelta(days=6))

    answer = await graph.patch(f"/v1.0/subscriptions/{subscription['id']}", {"expirationDateTime": later})

    assert answer.status == 200
    assert answer.body["expirationDateTime"] == later
    assert (await graph.get(f"/v1.0/subscriptions/{subscription['id']}")).body["expirationDateTime"] == later


async def test_renewal_beyond_the_limit_is_refused(graph: GraphHttp, subscription: dict[str, Any]) -> None:
    answer = await graph.patch(
        f"/v1.0/subscriptions/{subscription['id']}", {"expirationDateTime": expiry(timedelta(days=8))}
    )

    assert answer.status == 400


async def test_deleted_subscription_is_gone(graph: GraphHttp, subscription: dict[str, Any]) -> None:
    deleted = await graph.delete(f"/v1.0/subscriptions/{subscription['id']}")

    answer = await graph.get(f"/v1.0/subscriptions/{subscription['id']}")

    assert (deleted.status, answer.status) == (204, 404)


async def test_expired_subscription_vanishes_and_stays_silent(
    graph: GraphHttp, receiver: Receiver, graph_emulator: GraphEmulator, subscription: dict[str, Any]
) -> None:
    graph_emulator.expire_subscription(subscription["id"])

    read = await graph.get(f"/v1.0/subscriptions/{subscription['id']}")
    renewed = await graph.patch(f"/v1.0/subscriptions/{subscription['id']}", {"expirationDateTime": expiry()})
    await graph.post(EVENTS, event_payload())
    await graph_emulator.drain_notifications()

    assert (read.status, renewed.status) == (404, 404)
    assert receiver.notifications == []


# -- change notifications --------------------------------------------------------------------------------------


async def test_created_event_notifies_like_the_fixture(
    graph: GraphHttp, receiver: Receiver, subscription: dict[str, Any], tenant_app: AppRegistration
) -> None:
    created = (await graph.post(EVENTS, event_payload())).body

    [notification] = await receiver.wait_for(1)

    documented = fixture("notification_event_created.json")["value"][0]
    assert_shape(documented, notification, exact=True)
    assert notification["subscriptionId"] == subscription["id"]
    assert notification["changeType"] == "created"
    assert notification["clientState"] == "secretClientValue"
    assert notification["tenantId"] == tenant_app.tenant_id
    assert notification["resource"] == f"Users/{ADELE_ID}/Events/{created['id']}"
    assert notification["resourceData"] == {
        "@odata.type": "#Microsoft.Graph.Event",
        "@odata.id": f"Users/{ADELE_ID}/Events/{created['id']}",
        "@odata.etag": created["@odata.etag"],
        "id": created["id"],
    }


async def test_updates_and_deletes_are_notified(
    graph: GraphHttp, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    created = (await graph.post(EVENTS, event_payload())).body
    await receiver.wait_for(1)
    await graph.patch(f"{EVENTS}/{created['id']}", {"subject": "Changed"})
    await receiver.wait_for(2)
    await graph.delete(f"{EVENTS}/{created['id']}")

    notifications = await receiver.wait_for(3)

    assert [item["changeType"] for item in notifications] == ["created", "updated", "deleted"]


async def test_changes_in_one_burst_arrive_in_one_batch(
    graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    for hour in range(9, 14):
        graph_emulator.create_event_as_outlook(
            "AdeleV@contoso.com",
            event_payload(start=f"2026-11-24T{hour:02d}:00:00", end=f"2026-11-24T{hour:02d}:30:00"),
        )

    await receiver.wait_for(5)

    assert [len(batch) for batch in receiver.batches] == [5]


async def test_change_types_filter_the_notifications(
    graph: GraphHttp, graph_emulator: GraphEmulator, receiver: Receiver
) -> None:
    await subscribe(graph, receiver, changeType="deleted")
    created = (await graph.post(EVENTS, event_payload())).body
    await graph.delete(f"{EVENTS}/{created['id']}")

    notifications = await receiver.wait_for(1)
    await graph_emulator.drain_notifications()

    assert [item["changeType"] for item in notifications] == ["deleted"]


async def test_series_changes_name_the_master(
    graph: GraphHttp, graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    master = (
        await graph.post(
            EVENTS,
            event_payload(
                start="2026-11-25T07:00:00",
                end="2026-11-25T07:30:00",
                recurrence={
                    "pattern": {"type": "daily", "interval": 1},
                    "range": {"type": "numbered", "startDate": "2026-11-25", "numberOfOccurrences": 3},
                },
            ),
        )
    ).body
    view = await graph.get(
        "/v1.0/users/AdeleV@contoso.com/calendarView?startDateTime=2026-11-26T00:00:00Z&endDateTime=2026-11-27T00:00:00Z"
    )
    await graph.patch(f"{EVENTS}/{view.body['value'][0]['id']}", {"subject": "Only this one"})

    notifications = await receiver.wait_for(2)

    assert [(item["changeType"], item["resourceData"]["id"]) for item in notifications] == [
        ("created", master["id"]),
        ("updated", master["id"]),
    ]


async def test_other_mailboxes_are_not_notified(
    graph: GraphHttp,
    graph_emulator: GraphEmulator,
    receiver: Receiver,
    subscription: dict[str, Any],
    bob: DirectoryUser,
) -> None:
    await graph.post("/v1.0/users/bob@contoso.com/events", event_payload())

    await graph_emulator.drain_notifications()

    assert receiver.notifications == []


async def test_duplicate_fault_sends_a_notification_twice(
    graph: GraphHttp, graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    graph_emulator.duplicate_notifications(1)

    await graph.post(EVENTS, event_payload())
    notifications = await receiver.wait_for(2)

    assert notifications[0] == notifications[1]
    assert graph_emulator.stats()["notifications"]["duplicated"] == 1


async def test_drop_fault_loses_a_notification(
    graph: GraphHttp, graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    graph_emulator.drop_notifications(1)

    await graph.post(EVENTS, event_payload(subject="lost"))
    await graph.post(EVENTS, event_payload(subject="kept"))
    notifications = await receiver.wait_for(1)
    await graph_emulator.drain_notifications()

    assert len(notifications) == 1
    assert graph_emulator.stats()["notifications"]["dropped"] == 1


async def test_failed_delivery_is_retried(
    graph: GraphHttp, graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    receiver.fail_next = 1

    await graph.post(EVENTS, event_payload())
    await receiver.wait_for(1)

    assert receiver.attempts == 2
    assert graph_emulator.stats()["notifications"]["retried"] == 1


async def test_notifications_do_not_hold_up_the_request(
    graph: GraphHttp, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    receiver.delay = 1.0

    started = time.monotonic()
    answer = await graph.post(EVENTS, event_payload())

    assert answer.status == 201
    assert time.monotonic() - started < 0.5


async def test_shuffle_fault_keeps_every_notification(
    graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    graph_emulator.shuffle_notifications(True)
    made = [
        graph_emulator.create_event_as_outlook(
            "AdeleV@contoso.com",
            event_payload(start=f"2026-11-24T{hour:02d}:00:00", end=f"2026-11-24T{hour:02d}:30:00"),
        )
        for hour in range(9, 19)
    ]

    notifications = await receiver.wait_for(10)

    assert sorted(item["resourceData"]["id"] for item in notifications) == sorted(event["id"] for event in made)


# -- lifecycle notifications -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "name"),
    [
        ("missed", "lifecycle_missed.json"),
        ("reauthorizationRequired", "lifecycle_reauthorization_required.json"),
        ("subscriptionRemoved", "lifecycle_subscription_removed.json"),
    ],
)
async def test_lifecycle_notification_matches_the_fixture(
    graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any], event: str, name: str
) -> None:
    graph_emulator.send_lifecycle(subscription["id"], event)

    [notification] = await receiver.wait_for(1, lifecycle=True)

    documented = fixture(name)["value"][0]
    assert_shape(documented, notification, exact=True)
    assert notification["lifecycleEvent"] == event
    assert notification["subscriptionId"] == subscription["id"]
    assert notification["subscriptionExpirationDateTime"] == subscription["expirationDateTime"]


async def test_subscription_removed_deletes_the_subscription(
    graph: GraphHttp, graph_emulator: GraphEmulator, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    graph_emulator.remove_subscription(subscription["id"])

    await receiver.wait_for(1, lifecycle=True)

    assert (await graph.get(f"/v1.0/subscriptions/{subscription['id']}")).status == 404


async def test_control_api_sends_a_lifecycle_notification(
    graph: GraphHttp, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    answer = await graph.post(
        f"/_control/subscriptions/{subscription['id']}/lifecycle", {"lifecycleEvent": "missed"}, auth=False
    )

    [notification] = await receiver.wait_for(1, lifecycle=True)

    assert answer.status == 202
    assert notification["lifecycleEvent"] == "missed"


async def test_control_api_flushes_notifications(
    graph: GraphHttp, receiver: Receiver, subscription: dict[str, Any]
) -> None:
    await graph.post(EVENTS, event_payload())

    answer = await graph.post("/_control/notifications/flush", {"timeout": 5}, auth=False)

    assert answer.body == {"drained": True, "pending": 0}
    assert len(receiver.notifications) == 1


async def test_lifecycle_url_is_optional(graph: GraphHttp, graph_emulator: GraphEmulator, receiver: Receiver) -> None:
    body = request_body(receiver)
    del body["lifecycleNotificationUrl"]

    answer = await graph.post("/v1.0/subscriptions", body)

    assert answer.status == 201
    assert answer.body["lifecycleNotificationUrl"] is None
    assert len(receiver.validations) == 1
    with pytest.raises(ValueError, match="no lifecycleNotificationUrl"):
        graph_emulator.send_lifecycle(answer.body["id"], "missed")


async def test_subscription_runs_out_at_its_expiration(graph: GraphHttp, receiver: Receiver) -> None:
    answer = await subscribe(graph, receiver, expirationDateTime=expiry(timedelta(seconds=1)))

    await asyncio.sleep(1.1)

    assert answer.status == 201
    assert (await graph.get(f"/v1.0/subscriptions/{answer.body['id']}")).status == 404


async def test_renewed_subscription_outlives_its_first_expiration(
    graph: GraphHttp, receiver: Receiver, graph_emulator: GraphEmulator
) -> None:
    answer = await subscribe(graph, receiver, expirationDateTime=expiry(timedelta(seconds=1)))
    renewed = await graph.patch(f"/v1.0/subscriptions/{answer.body['id']}", {"expirationDateTime": expiry()})

    await asyncio.sleep(1.1)
    await graph.post(EVENTS, event_payload())
    await graph_emulator.drain_notifications()

    assert renewed.status == 200
    assert (await graph.get(f"/v1.0/subscriptions/{answer.body['id']}")).status == 200
    assert len(receiver.notifications) == 1


async def test_an_expired_subscription_does_not_conflict_with_a_new_one(graph: GraphHttp, receiver: Receiver) -> None:
    first = await subscribe(graph, receiver, expirationDateTime=expiry(timedelta(seconds=1)))

    await asyncio.sleep(1.1)
    second = await subscribe(graph, receiver)

    assert (first.status, second.status) == (201, 201)
    assert second.body["id"] != first.body["id"]
