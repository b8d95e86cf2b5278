"""The EWS emulator's calendar, driven by the real exchangelib over loopback HTTP."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from exchangelib import Account, CalendarItem, ExtendedProperty, Mailbox, Message
from exchangelib.errors import (
    ErrorCalendarViewRangeTooBig,
    ErrorExceededFindCountLimit,
    ErrorIrresolvableConflict,
    ErrorItemNotFound,
)
from exchangelib.ewsdatetime import UTC, EWSDateTime
from exchangelib.folders import Calendar
from exchangelib.recurrence import Recurrence, WeeklyPattern

from emulators.ews import EwsEmulator
from tests.emulators.ews_fixtures import ALICE, BERLIN, alice_fixture, connect_fixture, ews_fixture  # noqa: F401

pytestmark = pytest.mark.timeout(30)


class BridgeMarker(ExtendedProperty):
    property_set_id = "c11ff724-aa03-4555-9952-8fa248a11c3e"
    property_name = "BridgeSourceId"
    property_type = "String"


@pytest.fixture(autouse=True)
def _marker() -> object:
    CalendarItem.register("bridge_marker", BridgeMarker)
    yield None
    CalendarItem.deregister("bridge_marker")


def at(day: int, hour: int, minute: int = 0) -> EWSDateTime:
    return EWSDateTime(2026, 3, day, hour, minute, tzinfo=BERLIN)


def march(account: Account, first: int = 1, last: int = 31) -> list[CalendarItem]:
    calendar = account.calendar
    return list(calendar.view(start=at(first, 0), end=at(last, 23)))


async def test_account_finds_its_calendar_folder(ews: EwsEmulator, alice: Account) -> None:
    calendar = await asyncio.to_thread(lambda: alice.calendar)

    assert isinstance(calendar, Calendar)
    assert calendar.id == ews.org.mailboxes[ALICE].folders["calendar"]
    assert ews.stats()["operations"]["GetFolder"] >= 1


async def test_created_item_reads_back_in_the_calendar_view(ews: EwsEmulator, alice: Account) -> None:
    def create_and_view() -> list[CalendarItem]:
        item = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Blocked",
            start=at(3, 10),
            end=at(3, 11),
            legacy_free_busy_status="OOF",
            sensitivity="Private",
        )
        item.save(send_meeting_invitations="SendToNone")
        return march(alice)

    [item] = await asyncio.to_thread(create_and_view)

    assert (item.subject, item.legacy_free_busy_status, item.sensitivity) == ("Blocked", "OOF", "Private")
    assert item.start == at(3, 10)
    assert item.end == at(3, 11)
    assert (item.type, item.is_all_day, item.is_meeting, item.my_response_type) == ("Single", False, False, "Organizer")
    assert item.organizer.email_address == ALICE
    assert ews.items(ALICE)[0]["subject"] == "Blocked"


async def test_change_key_changes_on_every_write_and_a_stale_one_conflicts(alice: Account) -> None:
    def scenario() -> tuple[str, str, Exception | None, str]:
        item = CalendarItem(account=alice, folder=alice.calendar, subject="A", start=at(4, 9), end=at(4, 10))
        item.save(send_meeting_invitations="SendToNone")
        first = item.changekey
        item.subject = "B"
        item.save(update_fields=["subject"], send_meeting_invitations="SendToNone")
        second = item.changekey
        stale = CalendarItem(account=alice, folder=alice.calendar, id=item.id, changekey=first, subject="C")
        error: Exception | None = None
        try:
            stale.save(update_fields=["subject"], send_meeting_invitations="SendToNone")
        except ErrorIrresolvableConflict as exc:
            error = exc
        overwritten = CalendarItem(account=alice, folder=alice.calendar, id=item.id, changekey=first, subject="D")
        overwritten.save(
            update_fields=["subject"], conflict_resolution="AlwaysOverwrite", send_meeting_invitations="SendToNone"
        )
        return first, second, error, alice.calendar.get(id=item.id).subject

    first, second, error, subject = await asyncio.to_thread(scenario)

    assert first != second
    assert isinstance(error, ErrorIrresolvableConflict)
    assert subject == "D"


async def test_recurring_series_expands_into_occurrences_with_the_series_uid(alice: Account) -> None:
    def scenario() -> tuple[CalendarItem, list[CalendarItem]]:
        master = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Weekly sync",
            start=at(2, 9),
            end=at(2, 9, 30),
            recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1, 3]), start=at(2, 0).date(), number=6),
        )
        master.save(send_meeting_invitations="SendToNone")
        return alice.calendar.get(id=master.id), march(alice)

    master, occurrences = await asyncio.to_thread(scenario)

    assert master.type == "RecurringMaster"
    assert [o.start.astimezone(BERLIN).day for o in occurrences] == [2, 4, 9, 11, 16, 18]
    assert {o.type for o in occurrences} == {"Occurrence"}
    assert len({o.id for o in occurrences}) == 6
    assert {o.uid for o in occurrences} == {master.uid}
    assert {o.changekey for o in occurrences} == {master.changekey}
    assert occurrences[2].recurrence_id == at(9, 9)


async def test_changed_and_deleted_occurrences_show_in_view_and_on_the_master(alice: Account) -> None:
    def scenario() -> tuple[list[CalendarItem], CalendarItem, str]:
        master = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Stand-up",
            start=at(2, 9),
            end=at(2, 9, 15),
            recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]), start=at(2, 0).date(), number=3),
        )
        master.save(send_meeting_invitations="SendToNone")
        before = master.changekey
        first, second, _third = march(alice)
        second.subject = "Moved stand-up"
        second.start, second.end = at(9, 11), at(9, 11, 15)
        second.save(update_fields=["subject", "start", "end"], send_meeting_invitations="SendToNone")
        first.delete(send_meeting_cancellations="SendToNone")
        return march(alice), alice.calendar.get(id=master.id), before

    view, master, before = await asyncio.to_thread(scenario)

    assert [(i.type, i.subject) for i in view] == [("Exception", "Moved stand-up"), ("Occurrence", "Stand-up")]
    assert view[0].start == at(9, 11)
    assert view[0].original_start == at(9, 9)
    assert master.changekey != before
    assert [o.original_start for o in master.modified_occurrences] == [at(9, 9)]
    assert [d.start for d in master.deleted_occurrences] == [at(2, 9)]


async def test_extended_property_is_stored_and_returned(alice: Account) -> None:
    def scenario() -> tuple[str | None, str | None]:
        item = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Mirrored",
            start=at(5, 9),
            end=at(5, 10),
            bridge_marker="source-42",
        )
        item.save(send_meeting_invitations="SendToNone")
        [viewed] = march(alice)
        item.bridge_marker = None
        item.save(update_fields=["bridge_marker"], send_meeting_invitations="SendToNone")
        return viewed.bridge_marker, alice.calendar.get(id=item.id).bridge_marker

    viewed, after_delete = await asyncio.to_thread(scenario)

    assert viewed == "source-42"
    assert after_delete is None


async def test_all_day_item_keeps_its_midnights(alice: Account) -> None:
    def scenario() -> CalendarItem:
        item = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Holiday",
            start=at(6, 0),
            end=at(7, 0),
            is_all_day=True,
            legacy_free_busy_status="Free",
        )
        item.save(send_meeting_invitations="SendToNone")
        return alice.calendar.get(id=item.id)

    item = await asyncio.to_thread(scenario)

    assert item.is_all_day is True
    assert item.legacy_free_busy_status == "Free"


async def test_invitation_made_in_outlook_is_told_apart(ews: EwsEmulator, alice: Account) -> None:
    ews.create_item_as_outlook(
        ALICE,
        subject="Board meeting",
        start=datetime(2026, 3, 10, 14),
        end=datetime(2026, 3, 10, 15),
        time_zone="W. Europe Standard Time",
        organizer="ceo@corp.example",
        free_busy="Tentative",
    )

    [item] = await asyncio.to_thread(march, alice)

    assert item.is_meeting is True
    assert item.my_response_type == "NoResponseReceived"
    assert item.organizer.email_address == "ceo@corp.example"
    assert item.legacy_free_busy_status == "Tentative"
    assert item.start == at(10, 14)


async def test_calendar_view_over_two_years_is_refused(alice: Account) -> None:
    def view() -> list[CalendarItem]:
        start = EWSDateTime(2026, 1, 1, tzinfo=UTC)
        return list(alice.calendar.view(start=start, end=start + timedelta(days=731)))

    with pytest.raises(ErrorCalendarViewRangeTooBig):
        await asyncio.to_thread(view)


async def test_calendar_view_does_not_page_past_the_find_count_limit(ews: EwsEmulator, alice: Account) -> None:
    ews.find_count_limit = 3
    for day in (2, 3, 4, 5):
        ews.create_item_as_outlook(ALICE, subject=f"Item {day}", start=at(day, 9), end=at(day, 10))

    with pytest.raises(ErrorExceededFindCountLimit):
        await asyncio.to_thread(march, alice)
    assert len(await asyncio.to_thread(march, alice, 1, 4)) == 3


async def test_deleted_item_is_gone(ews: EwsEmulator, alice: Account) -> None:
    item_id = ews.create_item_as_outlook(ALICE, subject="Gone", start=at(12, 9), end=at(12, 10))

    def scenario() -> None:
        item = alice.calendar.get(id=item_id)
        item.delete(send_meeting_cancellations="SendToNone")
        alice.calendar.get(id=item_id)

    with pytest.raises(ErrorItemNotFound):
        await asyncio.to_thread(scenario)
    assert ews.items(ALICE) == []


async def test_sent_mail_is_recorded(ews: EwsEmulator, alice: Account) -> None:
    def send() -> None:
        Message(
            account=alice,
            subject="Your calendar is mirrored",
            body="Hello",
            to_recipients=[Mailbox(email_address="bob@corp.example")],
            cc_recipients=["carol@corp.example"],
            bcc_recipients=["audit@corp.example"],
        ).send(save_copy=False)

    await asyncio.to_thread(send)

    [mail] = ews.sent_mail()
    assert (mail["subject"], mail["body"], mail["kind"]) == ("Your calendar is mirrored", "Hello", "Message")
    assert (mail["to"], mail["cc"], mail["bcc"]) == (
        ["bob@corp.example"],
        ["carol@corp.example"],
        ["audit@corp.example"],
    )


async def test_cancelling_a_meeting_mails_its_attendees(ews: EwsEmulator, alice: Account) -> None:
    def scenario() -> None:
        item = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Review",
            start=at(13, 9),
            end=at(13, 10),
            required_attendees=["bob@corp.example"],
        )
        item.save(send_meeting_invitations="SendToNone")
        item.delete(send_meeting_cancellations="SendToAllAndSaveCopy")

    await asyncio.to_thread(scenario)

    assert [(mail["kind"], mail["to"]) for mail in ews.sent_mail()] == [("MeetingCancellation", ["bob@corp.example"])]


async def test_an_all_day_item_keeps_its_zone_and_is_moved_to_the_midnights_around_its_times(
    ews: EwsEmulator, alice: Account
) -> None:
    def create() -> None:
        item = CalendarItem(
            account=alice,
            folder=alice.calendar,
            subject="Trade fair",
            start=at(30, 9),  # Berlin, the day after the clocks went forward
            end=at(30, 17),
            is_all_day=True,
        )
        item.save(send_meeting_invitations="SendToNone")

    await asyncio.to_thread(create)

    [stored] = ews.items(ALICE)
    # exchangelib sent the zone as StartTimeZone/EndTimeZone (a TimeZoneDefinition with its Windows id); EWS moved
    # the times to the enclosing midnights there instead of refusing them, as Exchange does.
    assert stored["isAllDay"] is True
    assert stored["start"] == {"dateTime": "2026-03-30T00:00:00.0000000", "timeZone": "W. Europe Standard Time"}
    assert stored["end"] == {"dateTime": "2026-03-31T00:00:00.0000000", "timeZone": "W. Europe Standard Time"}
