"""Subscriptions (pull and streaming) and SyncFolderItems of the EWS emulator, through exchangelib."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import aiohttp
import pytest
from exchangelib import Account, CalendarItem
from exchangelib.errors import (
    ErrorInvalidArgument,
    ErrorInvalidSyncStateData,
    ErrorSubscriptionNotFound,
)
from exchangelib.properties import CreatedEvent, ModifiedEvent, MovedEvent, StatusEvent
from requests.exceptions import ChunkedEncodingError
from requests.exceptions import ConnectionError as RequestsConnectionError

from emulators.ews import EwsEmulator
from tests.emulators.ews_fixtures import (  # noqa: F401
    ALICE,
    BERLIN,
    SERVICE_PASSWORD,
    SERVICE_USER,
    alice_fixture,
    basic_headers,
    connect_fixture,
    ews_fixture,
    streaming_request,
)

pytestmark = pytest.mark.timeout(30)


def outlook_item(ews: EwsEmulator, day: int, subject: str = "Outlook") -> str:
    return ews.create_item_as_outlook(
        ALICE, subject=subject, start=datetime(2026, 3, day, 9), end=datetime(2026, 3, day, 10), time_zone="UTC"
    )


async def test_pull_subscription_reports_created_modified_and_moved_items(ews: EwsEmulator, alice: Account) -> None:
    subscription_id, mark = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_pull())
    item_id = outlook_item(ews, 2)
    ews.update_item_as_outlook(ALICE, item_id, subject="Renamed")
    ews.delete_item_as_outlook(ALICE, item_id)

    [notification] = await asyncio.to_thread(lambda: list(alice.calendar.get_events(subscription_id, mark)))

    created, modified, moved = notification.events
    calendar_id = ews.org.mailboxes[ALICE].folders["calendar"]
    assert isinstance(created, CreatedEvent)
    assert (created.item_id.id, created.parent_folder_id.id) == (item_id, calendar_id)
    assert isinstance(modified, ModifiedEvent)
    assert modified.item_id.id == item_id
    assert isinstance(moved, MovedEvent)
    assert (moved.old_item_id.id, moved.old_parent_folder_id.id) == (item_id, calendar_id)
    assert moved.parent_folder_id.id == ews.org.mailboxes[ALICE].folders["deleteditems"]


async def test_pull_without_changes_answers_a_status_event(alice: Account) -> None:
    def scenario() -> list[object]:
        subscription_id, mark = alice.calendar.subscribe_to_pull()
        return [
            event for notification in alice.calendar.get_events(subscription_id, mark) for event in notification.events
        ]

    [event] = await asyncio.to_thread(scenario)

    assert isinstance(event, StatusEvent)


async def test_hard_delete_reports_a_deleted_event(ews: EwsEmulator, alice: Account) -> None:
    subscription_id, mark = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_pull())
    item_id = outlook_item(ews, 3)
    ews.delete_item_as_outlook(ALICE, item_id, delete_type="HardDelete")

    [notification] = await asyncio.to_thread(lambda: list(alice.calendar.get_events(subscription_id, mark)))

    assert [type(event).__name__ for event in notification.events] == ["CreatedEvent", "DeletedEvent"]


async def test_unsubscribed_and_expired_subscriptions_are_not_found(ews: EwsEmulator, alice: Account) -> None:
    first, mark = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_pull())
    second, _ = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_pull())
    await asyncio.to_thread(alice.calendar.unsubscribe, first)
    ews.expire_subscription(second)

    for subscription_id in (first, second):
        with pytest.raises(ErrorSubscriptionNotFound):
            await asyncio.to_thread(lambda sid=subscription_id: list(alice.calendar.get_events(sid, mark)))


async def test_streaming_delivers_notifications_then_closes(ews: EwsEmulator, alice: Account) -> None:
    subscription_id = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())

    async def change_calendar() -> str:
        await asyncio.sleep(0.3)
        return outlook_item(ews, 4)

    listening = asyncio.to_thread(
        lambda: list(alice.calendar.get_streaming_events(subscription_id, connection_timeout=1))
    )
    notifications, item_id = await asyncio.gather(listening, change_calendar())

    events = [event for notification in notifications for event in notification.events]
    assert [(type(event).__name__, event.item_id.id) for event in events] == [("CreatedEvent", item_id)]


async def test_streaming_response_is_chunked_with_keepalives_and_a_closed_frame(ews: EwsEmulator) -> None:
    subscription_id = ews.subscriptions_registry.subscribe(
        ews.org.mailboxes[ALICE],
        kind="streaming",
        owner=SERVICE_USER,
        folders=frozenset({"calendar"}),
        event_types=frozenset({"CreatedEvent"}),
    ).id
    body = streaming_request(subscription_id, ALICE)
    headers = basic_headers()
    chunks: list[bytes] = []
    async with aiohttp.ClientSession() as session, session.post(ews.url, data=body, headers=headers) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        async for data, end_of_http_chunk in response.content.iter_chunks():
            chunks.append(data)
            assert end_of_http_chunk

    statuses = [re.findall(rb"<m:ConnectionStatus>(\w+)<", chunk) for chunk in chunks]
    assert all(chunk.count(b"<s:Envelope") == 1 for chunk in chunks)
    assert statuses[-1] == [b"Closed"]
    assert statuses[:-1] == [[b"OK"]] * (len(chunks) - 1)
    assert len(chunks) >= 4  # the first frame, keep-alives every 0.2 s over the 1 s "minute", Closed


async def test_cut_streaming_connection_breaks_the_client(ews: EwsEmulator, alice: Account) -> None:
    subscription_id = await asyncio.to_thread(lambda: alice.calendar.subscribe_to_streaming())

    async def cut() -> int:
        await asyncio.sleep(0.3)
        return ews.cut_streaming_connections()

    listening = asyncio.to_thread(
        lambda: list(alice.calendar.get_streaming_events(subscription_id, connection_timeout=1))
    )
    results = await asyncio.gather(listening, cut(), return_exceptions=True)

    assert results[1] == 1
    assert isinstance(results[0], (ChunkedEncodingError, RequestsConnectionError, OSError))


async def test_streaming_refuses_more_than_200_subscriptions(alice: Account) -> None:
    ids = [f"bogus-{n}" for n in range(201)]

    with pytest.raises(ErrorInvalidArgument):
        await asyncio.to_thread(lambda: list(alice.calendar.get_streaming_events(ids, connection_timeout=1)))


async def test_streaming_unknown_subscription_is_not_found(alice: Account) -> None:
    with pytest.raises(ErrorSubscriptionNotFound):
        await asyncio.to_thread(lambda: list(alice.calendar.get_streaming_events("bogus", connection_timeout=1)))


async def test_sync_reports_masters_and_single_items_page_by_page(ews: EwsEmulator, alice: Account) -> None:
    for day in (2, 3, 4):
        outlook_item(ews, day, f"Item {day}")
    ews.create_item_as_outlook(
        ALICE,
        subject="Series",
        start=datetime(2026, 3, 2, 8),
        end=datetime(2026, 3, 2, 9),
        recurrence={
            "pattern": {"type": "daily", "interval": 1},
            "range": {"type": "numbered", "numberOfOccurrences": 5},
        },
    )

    def sync_all() -> list[list[tuple[str, str]]]:
        calendar = alice.calendar
        pages = []
        while True:
            page = [(kind, item.subject) for kind, item in calendar.sync_items(max_changes_returned=2)]
            pages.append(page)
            if len(page) < 2:
                return pages

    pages = await asyncio.to_thread(sync_all)

    changes = [change for page in pages for change in page]
    assert changes == [("create", "Item 2"), ("create", "Item 3"), ("create", "Item 4"), ("create", "Series")]


async def test_sync_reports_updates_and_deletes_since_the_state(ews: EwsEmulator, alice: Account) -> None:
    kept = outlook_item(ews, 2, "Kept")
    gone = outlook_item(ews, 3, "Gone")
    state = await asyncio.to_thread(lambda: (list(alice.calendar.sync_items()), alice.calendar.item_sync_state)[1])
    ews.update_item_as_outlook(ALICE, kept, subject="Kept, renamed")
    ews.delete_item_as_outlook(ALICE, gone)
    outlook_item(ews, 4, "Fleeting")
    fleeting = ews.items(ALICE)[-1]["id"]
    ews.delete_item_as_outlook(ALICE, fleeting)

    changes = await asyncio.to_thread(
        lambda: [(kind, getattr(item, "id", item)) for kind, item in alice.calendar.sync_items(sync_state=state)]
    )

    assert [kind for kind, _ in changes] == ["update", "delete"]
    assert changes[0][1] == kept
    assert changes[1][1] in (gone, (gone, None))


async def test_sync_with_id_only_returns_just_ids(ews: EwsEmulator, alice: Account) -> None:
    item_id = outlook_item(ews, 2, "Secret")

    [(kind, item)] = await asyncio.to_thread(lambda: list(alice.calendar.sync_items(only_fields=["id"])))

    assert (kind, item.id, item.subject) == ("create", item_id, None)


async def test_sync_with_an_invalid_state_is_refused(alice: Account) -> None:
    with pytest.raises(ErrorInvalidSyncStateData):
        await asyncio.to_thread(lambda: list(alice.calendar.sync_items(sync_state="bm90IGEgc3RhdGU=")))


async def test_item_created_through_ews_notifies_like_outlook(ews: EwsEmulator, alice: Account) -> None:
    def scenario() -> list[object]:
        subscription_id, mark = alice.calendar.subscribe_to_pull()
        item = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Through EWS",
            start=datetime(2026, 3, 5, 9, tzinfo=BERLIN),
            end=datetime(2026, 3, 5, 10, tzinfo=BERLIN),
        )
        item.save(send_meeting_invitations="SendToNone")
        return [e for n in alice.calendar.get_events(subscription_id, mark) for e in n.events]

    events = await asyncio.to_thread(scenario)

    assert [type(event).__name__ for event in events] == ["CreatedEvent"]
