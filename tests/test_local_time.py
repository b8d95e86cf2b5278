"""End to end: the workforce system writes in people's local time, across a DST change in Europe/Berlin and
America/Los_Angeles, through the REST API and the relay into the Graph and EWS emulators (real msgraph-sdk and
exchangelib), on SQLite and PostgreSQL; the webhook carries the zone and an all-day item's local days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import select

from bridge.store import MailboxRow
from bridge.templates import default_mapping_path, load_mapping_text
from bridge.zones import local_instant, local_midnight
from emulators.graph_events import Instance
from tests.world import ONPREM_MAILBOX, World, onprem_exchange, ready, wait_until

APPOINTMENTS = "/api/v1/mailboxes/{}/appointments"


def next_change(zone: str) -> date:
    """The first day after tomorrow on which the zone's clocks change (its UTC offset at noon differs)."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    while local_instant(datetime.combine(day, time(12)), zone) == local_instant(
        datetime.combine(day - timedelta(days=1), time(12)), zone
    ) + timedelta(days=1):
        day += timedelta(days=1)
    return day


def monday_before(day: date) -> date:
    return day - timedelta(days=day.weekday() or 7)


async def set_up(world: World, zone_setting: str, change: date) -> None:
    """The mailbox owner chose `zone_setting` in Outlook, the bridge read it, and mirrors past the DST change."""
    # The service's own first pass reads every zone at start; let it finish, so that it cannot store what it read
    # before the owner's choice over what the pass below reads (its next pass is half a minute away).
    await wait_until(lambda: all(row.time_zone_read_at is not None for row in mailbox_rows(world)))
    world.graph.state.mailbox_for(world.mailbox, None).time_zone = zone_setting
    with world.service.db.session() as session:
        for row in session.exec(select(MailboxRow)).all():
            row.time_zone_read_at = None
    await world.service.zones.refresh()
    days = (change - datetime.now(UTC).date()).days + 30
    text = default_mapping_path().read_text().replace("days_ahead: 90", f"days_ahead: {days}")
    world.service.mapping.put_in_force(load_mapping_text(text))
    await ready(world)


def mailbox_rows(world: World) -> list[MailboxRow]:
    with world.service.db.session() as session:
        return list(session.exec(select(MailboxRow)).all())


def graph_instances(world: World, low: datetime, high: datetime) -> list[Instance]:
    return world.graph.state.mailbox_for(world.mailbox, None).instances(low, high)


def weekly_nine_o_clock(monday: date, **extra: Any) -> dict[str, Any]:
    return {
        "template": "meeting",
        "start": f"{monday.isoformat()}T09:00:00",
        "end": f"{monday.isoformat()}T10:00:00",
        "recurrence": {
            "pattern": "weekly",
            "days_of_week": ["monday"],
            "until": (monday + timedelta(days=7)).isoformat(),
        },
        **extra,
    }


async def test_a_weekly_series_in_local_time_stays_at_nine_in_berlin_across_the_change(world: World) -> None:
    change = next_change("Europe/Berlin")
    await set_up(world, "W. Europe Standard Time", change)
    monday = monday_before(change)

    status, created, _ = await world.api("POST", APPOINTMENTS.format(world.mailbox), weekly_nine_o_clock(monday))

    assert status == 201, created
    [master] = world.graph.events(world.mailbox)
    assert master["start"] == {"dateTime": f"{monday.isoformat()}T09:00:00.0000000", "timeZone": "Europe/Berlin"}
    assert master["recurrence"]["range"]["recurrenceTimeZone"] == "Europe/Berlin"
    low = datetime.combine(monday, time(), tzinfo=UTC)
    starts = [item.start_utc for item in graph_instances(world, low, low + timedelta(days=14))]
    assert starts == [
        local_instant(datetime.combine(day, time(9)), "Europe/Berlin") for day in (monday, monday + timedelta(days=7))
    ]
    assert starts[1] - starts[0] != timedelta(days=7)  # the UTC times differ by the hour the clocks moved
    assert await world.settled() == []  # the series' occurrences come back as the relay's own writes


async def test_a_time_with_an_offset_is_an_instant_whatever_the_mailbox_zone(world: World) -> None:
    change = next_change("Europe/Berlin")
    await set_up(world, "Europe/Berlin", change)
    day = change + timedelta(days=2)
    body = {"template": "meeting", "start": f"{day}T09:00:00Z", "end": f"{day}T10:00:00Z"}

    status, created, _ = await world.api("POST", APPOINTMENTS.format(world.mailbox), body)

    assert (status, created["start"]) == (201, f"{day}T09:00:00Z")
    [event] = world.graph.events(world.mailbox)
    assert event["start"] == {"dateTime": f"{day}T11:00:00.0000000", "timeZone": "Europe/Berlin"}  # CEST


async def test_an_all_day_absence_in_los_angeles_is_at_their_midnights_and_the_webhook_says_their_days(
    world: World,
) -> None:
    change = next_change("America/Los_Angeles")
    await set_up(world, "Pacific Standard Time", change)
    body = {"template": "absence", "start": change.isoformat(), "end": (change + timedelta(days=1)).isoformat()}

    status, created, _ = await world.api("POST", APPOINTMENTS.format(world.mailbox), body)

    assert status == 201, created
    [event] = world.graph.events(world.mailbox)
    assert event["isAllDay"] is True
    assert event["start"] == {"dateTime": f"{change}T00:00:00.0000000", "timeZone": "America/Los_Angeles"}
    assert event["end"] == {
        "dateTime": f"{change + timedelta(days=1)}T00:00:00.0000000",
        "timeZone": "America/Los_Angeles",
    }
    # The day the clocks go forward has 23 hours.
    [instance] = graph_instances(
        world, local_midnight(change, "UTC"), local_midnight(change, "UTC") + timedelta(days=2)
    )
    assert instance.end.utc - instance.start.utc == timedelta(hours=23)
    assert await world.settled() == []  # read back (Graph: at 00:00 UTC, all-day) it is still the relay's write

    _, listed, _ = await world.api(
        "GET", APPOINTMENTS.format(world.mailbox) + f"?from={change}&to={change + timedelta(days=2)}"
    )
    assert listed["time_zone"] == "America/Los_Angeles"
    [held] = listed["appointments"]
    assert (held["start_date"], held["end_date"]) == (change.isoformat(), (change + timedelta(days=1)).isoformat())


async def test_a_feed_change_carries_the_zone_and_an_all_day_item_s_local_days(world: World) -> None:
    change = next_change("America/Los_Angeles")
    await set_up(world, "America/Los_Angeles", change)
    day = {"dateTime": f"{change}T00:00:00", "timeZone": "Pacific Standard Time"}
    after = {"dateTime": f"{change + timedelta(days=1)}T00:00:00", "timeZone": "Pacific Standard Time"}
    world.graph.create_event_as_outlook(
        world.mailbox, {"subject": "Dentist", "start": day, "end": after, "isAllDay": True, "showAs": "oof"}
    )

    [delivered] = await world.changes(1)

    assert delivered["time_zone"] == "America/Los_Angeles"
    shown = delivered["appointment"]
    assert (shown["all_day"], shown["start_date"], shown["end_date"]) == (
        True,
        change.isoformat(),
        (change + timedelta(days=1)).isoformat(),
    )
    status, feed, _ = await world.api("GET", "/api/v1/changes?after=0")
    assert status == 200
    assert feed["changes"][0]["time_zone"] == "America/Los_Angeles"
    assert feed["changes"][0]["appointment"]["start_date"] == change.isoformat()


async def test_the_current_state_ends_at_the_person_s_midnight(world: World) -> None:
    await set_up(world, "Europe/Berlin", next_change("Europe/Berlin"))

    status, body, _ = await world.api("PUT", f"/api/v1/mailboxes/{world.mailbox}/state", {"template": "remote"})

    assert status == 200, body
    [event] = world.graph.events(world.mailbox)
    assert event["end"]["timeZone"] == "Europe/Berlin"
    assert event["end"]["dateTime"].endswith("T00:00:00.0000000")
    now = datetime.now(UTC)
    assert timedelta(0) < datetime.fromisoformat(body["end"]) - now <= timedelta(hours=25)


async def test_a_request_s_own_zone_wins_over_the_mailbox_s(world: World) -> None:
    change = next_change("America/Los_Angeles")
    await set_up(world, "Europe/Berlin", change)
    monday = monday_before(change)

    status, created, _ = await world.api(
        "POST", APPOINTMENTS.format(world.mailbox), weekly_nine_o_clock(monday, time_zone="Pacific Standard Time")
    )

    assert status == 201, created
    [master] = world.graph.events(world.mailbox)
    assert master["start"]["timeZone"] == "America/Los_Angeles"
    low = datetime.combine(monday, time(), tzinfo=UTC)
    starts = [item.start_utc for item in graph_instances(world, low, low + timedelta(days=14))]
    assert starts == [
        local_instant(datetime.combine(d, time(9)), "America/Los_Angeles") for d in (monday, monday + timedelta(days=7))
    ]


async def test_an_unknown_zone_is_refused_and_nothing_is_written(world: World) -> None:
    await ready(world)
    body = {
        "template": "meeting",
        "start": "2026-12-01T09:00:00",
        "end": "2026-12-01T10:00:00",
        "time_zone": "Mars/Base",
    }

    status, problem, _ = await world.api("POST", APPOINTMENTS.format(world.mailbox), body)

    assert status == 400
    assert [item["name"] for item in problem["invalid_params"]] == ["time_zone"]
    assert world.graph.events(world.mailbox) == []


# -- on-premises (EWS) ----------------------------------------------------------------------------------------


async def test_an_onprem_series_in_los_angeles_stays_at_nine_across_the_change(hybrid: World) -> None:
    change = next_change("America/Los_Angeles")
    await set_up(hybrid, "UTC", change)
    await wait_until(lambda: any(s["connected"] for s in onprem_exchange(hybrid).subscriptions()))
    monday = monday_before(change)

    status, created, _ = await hybrid.api(
        "POST", APPOINTMENTS.format(ONPREM_MAILBOX), weekly_nine_o_clock(monday, time_zone="America/Los_Angeles")
    )

    assert status == 201, created
    low = datetime.combine(monday, time(), tzinfo=UTC)
    calendar = onprem_exchange(hybrid)._mailbox(ONPREM_MAILBOX).calendar
    starts = [item.start_utc for item in calendar.instances(low, low + timedelta(days=14))]
    assert starts == [
        local_instant(datetime.combine(day, time(9)), "America/Los_Angeles")
        for day in (monday, monday + timedelta(days=7))
    ]


async def test_an_onprem_all_day_absence_is_at_the_person_s_midnights(hybrid: World) -> None:
    change = next_change("Europe/Berlin")
    await set_up(hybrid, "UTC", change)
    body = {
        "template": "absence",
        "start": str(change),
        "end": str(change + timedelta(days=1)),
        "time_zone": "Europe/Berlin",
    }

    status, created, _ = await hybrid.api("POST", APPOINTMENTS.format(ONPREM_MAILBOX), body)

    assert status == 201, created
    [item] = onprem_exchange(hybrid).items(ONPREM_MAILBOX)
    assert item["isAllDay"] is True
    # exchangelib sends the zone as EWS knows it, by its Windows id.
    assert item["start"] == {"dateTime": f"{change}T00:00:00.0000000", "timeZone": "W. Europe Standard Time"}
