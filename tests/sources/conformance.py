"""What every `CalendarSource` must do, written once and run against each backend's emulator.

A backend's test module subclasses `CalendarSourceContract` and provides three fixtures: `source` (the
`CalendarSource` under test), `mailbox` (an address it serves) and `outlook` (an `Outlook` that changes the
calendar the way a person would, through the emulator's control side, not through the source).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import pytest

from bridge.domain import (
    AppointmentDraft,
    AppointmentKind,
    AppointmentPatch,
    DeltaResult,
    FreeBusy,
    Pattern,
    Recurrence,
    Weekday,
    Window,
)
from bridge.sources.base import CalendarSource, Conflict

TODAY = datetime.now(UTC).date()
WINDOW = Window.days_ahead(TODAY, 30)


def at(days: int, hour: int = 9) -> datetime:
    return datetime.combine(TODAY + timedelta(days=days), datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)


class Outlook(Protocol):
    """A person editing their own calendar in Exchange (not through the bridge)."""

    def create(
        self,
        subject: str,
        start: datetime,
        end: datetime,
        show_as: FreeBusy = FreeBusy.BUSY,
        *,
        all_day: bool = False,
        private: bool = False,
        daily_until: date | None = None,
        organizer: bool = True,
    ) -> str: ...

    def update(self, item_id: str, **fields: Any) -> None: ...

    def delete(self, item_id: str) -> None: ...

    def cancel_meeting(self, item_id: str) -> None:
        """The organizer (someone else) cancelled this invitation, a series or one occurrence of it."""

    def respond(self, item_id: str, response: str) -> None:
        """The person answers an invitation: "accepted", "tentativelyAccepted" or "declined" (kept in the calendar)."""


def by_subject(result: DeltaResult) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for appointment in result.upserts:
        found.setdefault(appointment.subject, []).append(appointment)
    return found


class CalendarSourceContract:
    async def test_a_first_read_returns_the_whole_window(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Customer visit", at(1), at(1, 11))
        outlook.create("Far away", at(60), at(60, 10))

        result = await source.read_delta(mailbox, WINDOW, None)

        assert result.full_round
        assert [a.subject for a in result.upserts] == ["Customer visit"]
        visit = result.upserts[0]
        assert visit.start == at(1)
        assert visit.end == at(1, 11)
        assert visit.free_busy is FreeBusy.BUSY
        assert result.token

    async def test_a_later_read_returns_only_what_changed(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Unchanged", at(1), at(1, 10))
        moved = outlook.create("Moved", at(2), at(2, 10))
        first = await source.read_delta(mailbox, WINDOW, None)
        outlook.update(moved, start=at(3), end=at(3, 10))
        outlook.create("New", at(4), at(4, 10))

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert not second.full_round
        assert sorted(a.subject for a in second.upserts) == ["Moved", "New"]
        assert by_subject(second)["Moved"][0].start == at(3)

    async def test_a_deleted_appointment_is_reported_removed(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        gone = outlook.create("Cancelled", at(1), at(1, 10))
        first = await source.read_delta(mailbox, WINDOW, None)
        outlook.delete(gone)

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert first.upserts[0].item_id in second.removed
        assert second.upserts == ()

    async def test_free_busy_states_are_normalised(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        for offset, state in enumerate(
            [FreeBusy.FREE, FreeBusy.TENTATIVE, FreeBusy.BUSY, FreeBusy.OOF, FreeBusy.WORKING_ELSEWHERE]
        ):
            outlook.create(state.value, at(offset + 1), at(offset + 1, 10), state)

        result = await source.read_delta(mailbox, WINDOW, None)

        assert {a.subject: a.free_busy.value for a in result.upserts} == {
            state: state for state in ("free", "tentative", "busy", "oof", "workingElsewhere")
        }

    async def test_private_all_day_and_invitations_are_flagged(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Doctor", at(1), at(1, 10), private=True)
        outlook.create("Vacation", at(2, 0), at(4, 0), FreeBusy.OOF, all_day=True)
        outlook.create("Their meeting", at(5), at(5, 10), organizer=False)

        found = by_subject(await source.read_delta(mailbox, WINDOW, None))

        assert found["Doctor"][0].private
        assert found["Vacation"][0].all_day
        assert found["Vacation"][0].start == at(2, 0)
        assert not found["Their meeting"][0].is_organizer
        assert found["Doctor"][0].is_organizer

    async def test_a_daily_series_yields_its_occurrences_in_the_window(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Stand-up", at(1, 8), at(1, 8) + timedelta(minutes=15), daily_until=TODAY + timedelta(days=5))

        occurrences = by_subject(await source.read_delta(mailbox, WINDOW, None))["Stand-up"]

        assert sorted(a.start for a in occurrences) == [at(day, 8) for day in range(1, 6)]
        assert {a.kind for a in occurrences} == {AppointmentKind.OCCURRENCE}
        assert all(a.free_busy is FreeBusy.BUSY for a in occurrences)
        assert len({a.item_id for a in occurrences}) == 5

    async def test_a_series_is_only_expanded_inside_the_window(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Forever", at(1, 8), at(1, 9), daily_until=TODAY + timedelta(days=400))

        occurrences = by_subject(await source.read_delta(mailbox, WINDOW, None))["Forever"]

        assert len(occurrences) == 29  # days 1..29 of a 30-day window
        assert max(a.start for a in occurrences) < WINDOW.end

    async def test_a_changed_occurrence_becomes_an_exception(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Stand-up", at(1, 8), at(1, 9), daily_until=TODAY + timedelta(days=3))
        first = await source.read_delta(mailbox, WINDOW, None)
        second_day = next(a for a in first.upserts if a.start == at(2, 8))
        outlook.update(second_day.item_id, start=at(2, 10), end=at(2, 11), subject="Stand-up (moved)")

        second = await source.read_delta(mailbox, WINDOW, first.token)

        moved = [a for a in second.upserts if a.subject == "Stand-up (moved)"]
        assert len(moved) == 1
        assert moved[0].kind is AppointmentKind.EXCEPTION
        assert moved[0].start == at(2, 10)

    async def test_a_cancelled_occurrence_is_reported_removed(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Stand-up", at(1, 8), at(1, 9), daily_until=TODAY + timedelta(days=3))
        first = await source.read_delta(mailbox, WINDOW, None)
        third_day = next(a for a in first.upserts if a.start == at(3, 8))
        outlook.delete(third_day.item_id)

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert third_day.item_id in second.removed

    async def test_a_meeting_its_organizer_cancels_is_reported_removed(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Quarterly review", at(1, 13), at(1, 14), organizer=False)
        first = await source.read_delta(mailbox, WINDOW, None)
        [meeting] = first.upserts
        outlook.cancel_meeting(meeting.item_id)

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert meeting.item_id in second.removed
        assert second.upserts == ()

    async def test_a_cancelled_meeting_is_left_out_of_a_full_round(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        meeting = outlook.create("Quarterly review", at(1, 13), at(1, 14), organizer=False)
        outlook.cancel_meeting(meeting)

        result = await source.read_delta(mailbox, WINDOW, None)

        assert result.full_round
        assert result.upserts == ()

    async def test_an_occurrence_its_organizer_cancels_is_reported_removed(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Weekly sync", at(1, 15), at(1, 16), daily_until=TODAY + timedelta(days=3), organizer=False)
        first = await source.read_delta(mailbox, WINDOW, None)
        second_day = next(a for a in first.upserts if a.start == at(2, 15))
        outlook.cancel_meeting(second_day.item_id)

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert second_day.item_id in second.removed
        assert second_day.item_id not in {a.item_id for a in second.upserts}
        assert len(first.upserts) == 3

    async def test_a_series_its_organizer_cancels_is_reported_removed_whole(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        series = outlook.create(
            "Weekly sync", at(1, 15), at(1, 16), daily_until=TODAY + timedelta(days=3), organizer=False
        )
        first = await source.read_delta(mailbox, WINDOW, None)
        outlook.cancel_meeting(series)

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert {a.item_id for a in first.upserts} <= set(second.removed)
        assert second.upserts == ()

    async def test_a_meeting_declined_and_kept_is_reported_removed(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Vendor pitch", at(2, 14), at(2, 15), organizer=False)
        first = await source.read_delta(mailbox, WINDOW, None)
        [meeting] = first.upserts
        outlook.respond(meeting.item_id, "declined")

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert meeting.item_id in second.removed
        assert second.upserts == ()

    async def test_a_tentatively_accepted_meeting_follows_its_show_as(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Budget planning", at(2, 16), at(2, 17), organizer=False)
        first = await source.read_delta(mailbox, WINDOW, None)
        outlook.respond(first.upserts[0].item_id, "tentativelyAccepted")

        second = await source.read_delta(mailbox, WINDOW, first.token)

        assert [(a.subject, a.free_busy) for a in second.upserts] == [("Budget planning", FreeBusy.TENTATIVE)]
        assert second.removed == ()

    async def test_created_items_carry_the_bridge_marker_and_their_change_key(
        self, source: CalendarSource, mailbox: str
    ) -> None:
        draft = AppointmentDraft(
            "Remote day", at(2, 0), at(3, 0), FreeBusy.WORKING_ELSEWHERE, all_day=True, bridge_ref="cmd-1"
        )

        written = await source.create(mailbox, draft, "tx-1")
        read = await source.read_item(mailbox, written.item_id)

        assert read is not None
        assert read.bridge_ref == "cmd-1"
        assert read.change_key == written.change_key
        assert read.free_busy is FreeBusy.WORKING_ELSEWHERE
        assert read.all_day

    async def test_a_retried_create_with_the_same_transaction_creates_once(
        self, source: CalendarSource, mailbox: str
    ) -> None:
        draft = AppointmentDraft("Absence", at(1, 0), at(2, 0), FreeBusy.OOF, all_day=True)

        first = await source.create(mailbox, draft, "tx-same")
        second = await source.create(mailbox, draft, "tx-same")

        assert first.item_id == second.item_id
        result = await source.read_delta(mailbox, WINDOW, None)
        assert [a.subject for a in result.upserts] == ["Absence"]

    async def test_an_update_returns_a_new_change_key(self, source: CalendarSource, mailbox: str) -> None:
        created = await source.create(mailbox, AppointmentDraft("Meeting", at(1), at(1, 10), FreeBusy.BUSY), "tx-u")

        updated = await source.update(
            mailbox, created.item_id, AppointmentPatch(free_busy=FreeBusy.TENTATIVE), created.change_key
        )
        read = await source.read_item(mailbox, created.item_id)

        assert updated.change_key != created.change_key
        assert read is not None
        assert read.free_busy is FreeBusy.TENTATIVE
        assert read.subject == "Meeting"  # untouched fields stay

    async def test_an_update_on_a_stale_change_key_is_a_conflict(self, source: CalendarSource, mailbox: str) -> None:
        created = await source.create(mailbox, AppointmentDraft("Meeting", at(1), at(1, 10), FreeBusy.BUSY), "tx-c")
        await source.update(mailbox, created.item_id, AppointmentPatch(subject="Changed elsewhere"), None)

        with pytest.raises(Conflict):
            await source.update(mailbox, created.item_id, AppointmentPatch(subject="Mine"), created.change_key)

    async def test_delete_removes_and_is_idempotent(self, source: CalendarSource, mailbox: str) -> None:
        created = await source.create(mailbox, AppointmentDraft("Meeting", at(1), at(1, 10), FreeBusy.BUSY), "tx-d")

        await source.delete(mailbox, created.item_id)
        await source.delete(mailbox, created.item_id)

        assert await source.read_item(mailbox, created.item_id) is None

    async def test_a_delete_on_a_stale_change_key_is_a_conflict(self, source: CalendarSource, mailbox: str) -> None:
        created = await source.create(mailbox, AppointmentDraft("Meeting", at(1), at(1, 10), FreeBusy.BUSY), "tx-x")
        await source.update(mailbox, created.item_id, AppointmentPatch(subject="Changed elsewhere"), None)

        with pytest.raises(Conflict):
            await source.delete(mailbox, created.item_id, created.change_key)
        assert await source.read_item(mailbox, created.item_id) is not None

    async def test_a_recurring_create_makes_a_series_read_as_its_occurrences(
        self, source: CalendarSource, mailbox: str
    ) -> None:
        recurrence = Recurrence(Pattern.WEEKLY, until=TODAY + timedelta(days=20), days_of_week=(Weekday.MONDAY,))
        draft = AppointmentDraft(
            "Jour fixe", at(0), at(0, 10), FreeBusy.BUSY, bridge_ref="cmd-r", recurrence=recurrence
        )

        written = await source.create(mailbox, draft, "tx-r")
        result = await source.read_delta(mailbox, WINDOW, None)

        mondays = [d for d in range(21) if (TODAY + timedelta(days=d)).weekday() == 0]
        occurrences = by_subject(result)["Jour fixe"]
        assert sorted(a.start for a in occurrences) == [at(d) for d in mondays]
        assert {a.series_id for a in occurrences} == {written.item_id}
        assert {a.change_key for a in occurrences} == {written.change_key}

    async def test_the_bridge_s_items_are_found_by_their_marker(
        self, source: CalendarSource, mailbox: str, outlook: Outlook
    ) -> None:
        outlook.create("Own", at(1), at(1, 10))
        single = await source.create(
            mailbox, AppointmentDraft("Mine", at(2), at(2, 10), FreeBusy.BUSY, bridge_ref="cmd-a"), "tx-a"
        )
        recurrence = Recurrence(Pattern.DAILY, until=TODAY + timedelta(days=3))
        series = await source.create(
            mailbox,
            AppointmentDraft("Daily", at(1, 8), at(1, 9), FreeBusy.BUSY, bridge_ref="cmd-b", recurrence=recurrence),
            "tx-b",
        )

        found = await source.find_bridge_items(mailbox)

        assert sorted((a.item_id, a.bridge_ref) for a in found) == sorted(
            [(single.item_id, "cmd-a"), (series.item_id, "cmd-b")]
        )

    async def test_the_connection_test_passes_for_a_served_mailbox(self, source: CalendarSource, mailbox: str) -> None:
        report = await source.test_connection((mailbox,))

        assert report.ok, report.problems

    async def test_each_mailbox_asked_for_its_zone_is_answered_once(self, source: CalendarSource, mailbox: str) -> None:
        zones = await source.read_time_zones([mailbox, mailbox])

        assert list(zones) == [mailbox]
        assert zones[mailbox] is None or isinstance(zones[mailbox], str)  # none kept, or an IANA name; no error
