"""Recurring series in the Graph emulator: each pattern and range type, exceptions, cancelled occurrences."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulators.graph_helpers import GraphHttp, assert_shape, event_payload, fixture

EVENTS = "/v1.0/users/AdeleV@contoso.com/events"
VIEW = "/v1.0/users/AdeleV@contoso.com/calendarView"


def series(
    pattern: dict[str, Any], range_: dict[str, Any], *, start: str, end: str, zone: str = "UTC"
) -> dict[str, Any]:
    return event_payload(
        subject="Series", start=start, end=end, zone=zone, recurrence={"pattern": pattern, "range": range_}
    )


async def view(graph: GraphHttp, low: str, high: str, **headers: str) -> list[dict[str, Any]]:
    answer = await graph.get(f"{VIEW}?startDateTime={low}&endDateTime={high}&$top=1000", headers=headers)
    assert answer.status == 200, answer.body
    value: list[dict[str, Any]] = answer.body["value"]
    return value


async def starts(graph: GraphHttp, payload: dict[str, Any], low: str, high: str) -> list[str]:
    created = await graph.post(EVENTS, payload)
    assert created.status == 201, created.body
    return [item["start"]["dateTime"][:16] for item in await view(graph, low, high)]


async def test_daily_every_second_day_numbered(graph: GraphHttp) -> None:
    payload = series(
        {"type": "daily", "interval": 2},
        {"type": "numbered", "startDate": "2026-11-25", "numberOfOccurrences": 4},
        start="2026-11-25T07:00:00",
        end="2026-11-25T07:30:00",
    )

    found = await starts(graph, payload, "2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z")

    assert found == ["2026-11-25T07:00", "2026-11-27T07:00", "2026-11-29T07:00", "2026-12-01T07:00"]


async def test_weekly_on_two_days_until_an_inclusive_end_date(graph: GraphHttp) -> None:
    payload = series(
        {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "thursday"], "firstDayOfWeek": "monday"},
        {"type": "endDate", "startDate": "2026-11-23", "endDate": "2026-12-03"},
        start="2026-11-23T10:00:00",
        end="2026-11-23T11:00:00",
    )

    found = await starts(graph, payload, "2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z")

    assert found == ["2026-11-23T10:00", "2026-11-26T10:00", "2026-11-30T10:00", "2026-12-03T10:00"]


async def test_weekly_every_other_week_without_end(graph: GraphHttp) -> None:
    payload = series(
        {"type": "weekly", "interval": 2, "daysOfWeek": ["wednesday"]},
        {"type": "noEnd", "startDate": "2026-11-25"},
        start="2026-11-25T08:00:00",
        end="2026-11-25T09:00:00",
    )

    found = await starts(graph, payload, "2028-01-01T00:00:00Z", "2028-02-01T00:00:00Z")

    assert found == ["2028-01-05T08:00", "2028-01-19T08:00"]


async def test_absolute_monthly_on_the_31st_falls_on_shorter_months_last_day(graph: GraphHttp) -> None:
    payload = series(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
        {"type": "numbered", "startDate": "2027-01-31", "numberOfOccurrences": 4},
        start="2027-01-31T12:00:00",
        end="2027-01-31T13:00:00",
    )

    found = await starts(graph, payload, "2027-01-01T00:00:00Z", "2027-06-01T00:00:00Z")

    assert found == ["2027-01-31T12:00", "2027-02-28T12:00", "2027-03-31T12:00", "2027-04-30T12:00"]


async def test_relative_monthly_on_the_last_friday(graph: GraphHttp) -> None:
    payload = series(
        {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
        {"type": "numbered", "startDate": "2026-11-01", "numberOfOccurrences": 3},
        start="2026-11-27T15:00:00",
        end="2026-11-27T16:00:00",
    )

    found = await starts(graph, payload, "2026-11-01T00:00:00Z", "2027-03-01T00:00:00Z")

    assert found == ["2026-11-27T15:00", "2026-12-25T15:00", "2027-01-29T15:00"]


async def test_relative_monthly_on_the_first_weekday(graph: GraphHttp) -> None:
    weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday"]
    payload = series(
        {"type": "relativeMonthly", "interval": 1, "daysOfWeek": weekdays, "index": "first"},
        {"type": "numbered", "startDate": "2026-11-01", "numberOfOccurrences": 3},
        start="2026-11-02T09:00:00",
        end="2026-11-02T09:15:00",
    )

    found = await starts(graph, payload, "2026-11-01T00:00:00Z", "2027-03-01T00:00:00Z")

    assert found == ["2026-11-02T09:00", "2026-12-01T09:00", "2027-01-01T09:00"]


async def test_absolute_yearly_on_29_february_falls_on_the_28th(graph: GraphHttp) -> None:
    payload = series(
        {"type": "absoluteYearly", "interval": 1, "month": 2, "dayOfMonth": 29},
        {"type": "numbered", "startDate": "2028-02-29", "numberOfOccurrences": 3},
        start="2028-02-29T00:00:00",
        end="2028-03-01T00:00:00",
    )
    payload["isAllDay"] = True

    found = await starts(graph, payload, "2028-01-01T00:00:00Z", "2031-01-01T00:00:00Z")

    assert found == ["2028-02-29T00:00", "2029-02-28T00:00", "2030-02-28T00:00"]


async def test_relative_yearly_on_the_second_tuesday_of_march(graph: GraphHttp) -> None:
    payload = series(
        {"type": "relativeYearly", "interval": 1, "month": 3, "daysOfWeek": ["tuesday"], "index": "second"},
        {"type": "numbered", "startDate": "2027-03-01", "numberOfOccurrences": 2},
        start="2027-03-09T14:00:00",
        end="2027-03-09T15:00:00",
    )

    found = await starts(graph, payload, "2027-01-01T00:00:00Z", "2029-01-01T00:00:00Z")

    assert found == ["2027-03-09T14:00", "2028-03-14T14:00"]


async def test_series_keeps_its_local_time_across_daylight_saving(graph: GraphHttp) -> None:
    payload = series(
        {"type": "daily", "interval": 1},
        {"type": "numbered", "startDate": "2027-03-26", "numberOfOccurrences": 4},
        start="2027-03-26T09:00:00",
        end="2027-03-26T09:30:00",
        zone="W. Europe Standard Time",
    )

    found = await starts(graph, payload, "2027-03-01T00:00:00Z", "2027-04-01T00:00:00Z")

    assert found == ["2027-03-26T08:00", "2027-03-27T08:00", "2027-03-28T07:00", "2027-03-29T07:00"]


async def test_invalid_recurrence_is_refused(graph: GraphHttp) -> None:
    payload = series(
        {"type": "weekly", "interval": 1},
        {"type": "noEnd", "startDate": "2026-11-25"},
        start="2026-11-25T08:00:00",
        end="2026-11-25T09:00:00",
    )

    answer = await graph.post(EVENTS, payload)

    assert answer.status == 400
    assert answer.body["error"]["code"] == "ErrorInvalidRecurrence"


# -- a daily stand-up like the fixtures' ----------------------------------------------------------------------------


@pytest.fixture
async def standup(graph: GraphHttp) -> dict[str, Any]:
    payload = series(
        {"type": "daily", "interval": 1},
        {"type": "noEnd", "startDate": "2026-11-25"},
        start="2026-11-25T07:00:00",
        end="2026-11-25T07:30:00",
    )
    answer = await graph.post(EVENTS, payload)
    assert answer.status == 201
    body: dict[str, Any] = answer.body
    return body


async def occurrence_on(graph: GraphHttp, day: str) -> dict[str, Any]:
    items = await view(graph, f"{day}T00:00:00Z", f"{day}T23:59:59Z")
    assert len(items) == 1
    return items[0]


async def test_series_master_has_the_documented_shape(graph: GraphHttp, standup: dict[str, Any]) -> None:
    documented = fixture("event_series_master.json")

    assert_shape(documented, standup)
    assert standup["type"] == "seriesMaster"
    assert standup["recurrence"] == documented["recurrence"]


async def test_calendar_view_shows_occurrences_not_the_master(graph: GraphHttp, standup: dict[str, Any]) -> None:
    items = await view(graph, "2026-11-25T00:00:00Z", "2026-11-28T00:00:00Z")

    assert [item["type"] for item in items] == ["occurrence"] * 3
    assert {item["seriesMasterId"] for item in items} == {standup["id"]}
    assert items[0]["subject"] == "Series"
    assert len({item["id"] for item in items}) == 3


async def test_occurrence_ids_are_stable_and_readable(graph: GraphHttp, standup: dict[str, Any]) -> None:
    first = await occurrence_on(graph, "2026-11-26")
    again = await occurrence_on(graph, "2026-11-26")

    answer = await graph.get(f"{EVENTS}/{first['id']}")

    assert first["id"] == again["id"]
    assert answer.status == 200
    assert answer.body["type"] == "occurrence"
    assert answer.body["start"]["dateTime"] == "2026-11-26T07:00:00.0000000"


async def test_patching_an_occurrence_makes_an_exception(graph: GraphHttp, standup: dict[str, Any]) -> None:
    occurrence = await occurrence_on(graph, "2026-11-27")

    answer = await graph.patch(
        f"{EVENTS}/{occurrence['id']}",
        {
            "subject": "Daily stand-up (moved)",
            "start": {"dateTime": "2026-11-27T08:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-11-27T08:30:00", "timeZone": "UTC"},
        },
    )
    master = await graph.get(f"{EVENTS}/{standup['id']}")
    shown = await occurrence_on(graph, "2026-11-27")

    assert answer.status == 200
    assert answer.body["type"] == "exception"
    assert answer.body["seriesMasterId"] == standup["id"]
    assert answer.body["changeKey"] not in (occurrence["changeKey"], master.body["changeKey"])
    assert master.body["changeKey"] != standup["changeKey"]
    assert (shown["type"], shown["subject"], shown["start"]["dateTime"][:16]) == (
        "exception",
        "Daily stand-up (moved)",
        "2026-11-27T08:00",
    )
    assert_shape(fixture("delta_page_1.json")["value"][3], shown)


async def test_exception_is_readable_by_its_id(graph: GraphHttp, standup: dict[str, Any]) -> None:
    occurrence = await occurrence_on(graph, "2026-11-27")
    patched = (await graph.patch(f"{EVENTS}/{occurrence['id']}", {"showAs": "tentative"})).body

    answer = await graph.get(f"{EVENTS}/{patched['id']}")

    assert (answer.body["type"], answer.body["showAs"]) == ("exception", "tentative")


async def test_deleting_an_occurrence_removes_it_from_the_view(graph: GraphHttp, standup: dict[str, Any]) -> None:
    occurrence = await occurrence_on(graph, "2026-11-26")

    answer = await graph.delete(f"{EVENTS}/{occurrence['id']}")
    items = await view(graph, "2026-11-25T00:00:00Z", "2026-11-28T00:00:00Z")

    assert answer.status == 204
    assert [item["start"]["dateTime"][:10] for item in items] == ["2026-11-25", "2026-11-27"]
    assert (await graph.get(f"{EVENTS}/{occurrence['id']}")).status == 404


async def test_numbered_series_counts_deleted_occurrences(graph: GraphHttp) -> None:
    payload = series(
        {"type": "daily", "interval": 1},
        {"type": "numbered", "startDate": "2026-11-25", "numberOfOccurrences": 3},
        start="2026-11-25T07:00:00",
        end="2026-11-25T07:30:00",
    )
    await graph.post(EVENTS, payload)
    occurrence = await occurrence_on(graph, "2026-11-26")
    await graph.delete(f"{EVENTS}/{occurrence['id']}")

    items = await view(graph, "2026-11-01T00:00:00Z", "2026-12-31T00:00:00Z")

    assert [item["start"]["dateTime"][:10] for item in items] == ["2026-11-25", "2026-11-27"]


async def test_moving_the_series_drops_its_exceptions(graph: GraphHttp, standup: dict[str, Any]) -> None:
    occurrence = await occurrence_on(graph, "2026-11-27")
    await graph.patch(f"{EVENTS}/{occurrence['id']}", {"subject": "Special"})

    await graph.patch(
        f"{EVENTS}/{standup['id']}",
        {
            "start": {"dateTime": "2026-11-25T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-11-25T09:30:00", "timeZone": "UTC"},
        },
    )
    items = await view(graph, "2026-11-25T00:00:00Z", "2026-11-28T00:00:00Z")

    assert [(item["type"], item["start"]["dateTime"][11:16]) for item in items] == [("occurrence", "09:00")] * 3


async def test_renaming_the_series_keeps_its_exceptions(graph: GraphHttp, standup: dict[str, Any]) -> None:
    occurrence = await occurrence_on(graph, "2026-11-27")
    await graph.patch(f"{EVENTS}/{occurrence['id']}", {"subject": "Special"})

    await graph.patch(f"{EVENTS}/{standup['id']}", {"subject": "Stand-up"})
    items = await view(graph, "2026-11-25T00:00:00Z", "2026-11-28T00:00:00Z")

    assert [item["subject"] for item in items] == ["Stand-up", "Stand-up", "Special"]


async def test_deleting_the_master_removes_the_series(graph: GraphHttp, standup: dict[str, Any]) -> None:
    answer = await graph.delete(f"{EVENTS}/{standup['id']}")

    assert answer.status == 204
    assert await view(graph, "2026-11-25T00:00:00Z", "2026-12-25T00:00:00Z") == []


async def test_instances_lists_one_series(graph: GraphHttp, standup: dict[str, Any]) -> None:
    await graph.post(EVENTS, event_payload(start="2026-11-25T10:00:00", end="2026-11-25T11:00:00"))

    answer = await graph.get(
        f"{EVENTS}/{standup['id']}/instances?startDateTime=2026-11-25T00:00:00Z&endDateTime=2026-11-27T00:00:00Z"
    )

    assert [item["seriesMasterId"] for item in answer.body["value"]] == [standup["id"]] * 2


async def test_calendar_view_needs_a_window(graph: GraphHttp) -> None:
    answer = await graph.get(VIEW)

    assert answer.status == 400
    assert answer.body["error"]["code"] == "ErrorInvalidParameter"


async def test_calendar_view_pages_with_a_next_link(graph: GraphHttp, standup: dict[str, Any]) -> None:
    first = await graph.get(f"{VIEW}?startDateTime=2026-11-25T00:00:00Z&endDateTime=2026-12-07T00:00:00Z")
    second = await graph.get(first.body["@odata.nextLink"])

    assert len(first.body["value"]) == 10
    assert first.body["@odata.nextLink"].startswith(graph.base_url + "/v1.0/users/")
    assert [item["start"]["dateTime"][:10] for item in second.body["value"]] == ["2026-12-05", "2026-12-06"]
    assert "@odata.nextLink" not in second.body


async def test_calendar_view_honours_prefer_timezone(graph: GraphHttp, standup: dict[str, Any]) -> None:
    items = await view(
        graph, "2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z", Prefer='outlook.timezone="W. Europe Standard Time"'
    )

    assert items[0]["start"] == {"dateTime": "2026-11-25T08:00:00.0000000", "timeZone": "W. Europe Standard Time"}
