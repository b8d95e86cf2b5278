"""Meetings as people use them, end to end: an organizer in another mailbox of the tenant invites Adele, changes
and cancels the meeting; Adele answers. Through the real msgraph-sdk, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.world import ONPREM_MAILBOX, World, at, ready, wait_until

MEGAN = "MeganB@contoso.com"


@pytest.fixture
def organizer(world: World) -> str:
    world.graph.add_user(MEGAN, "Megan Bowen")
    return MEGAN


def invite(world: World, subject: str, days: int = 1, **extra: Any) -> str:
    """Megan sends a meeting to Adele; the id of Megan's event."""
    payload = {
        "subject": subject,
        "start": at(days, 13),
        "end": at(days, 14),
        "attendees": [{"type": "required", "emailAddress": {"address": world.mailbox}}],
        **extra,
    }
    return str(world.graph.create_event_as_outlook(MEGAN, payload)["id"])


def adele_copy(world: World) -> str:
    [copy] = world.graph.events(world.mailbox)
    return str(copy["id"])


def kinds(changes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(change["type"], change["appointment"]["template"]) for change in changes]


def ids(changes: list[dict[str, Any]]) -> set[str]:
    return {change["appointment"]["id"] for change in changes}


async def test_a_meeting_its_organizer_cancels_is_withdrawn(world: World, organizer: str) -> None:
    await ready(world)
    meeting = invite(world, "Quarterly review")
    await world.changes(1)
    world.graph.respond_as_outlook(world.mailbox, adele_copy(world), "accepted")
    await world.changes(2)

    world.graph.delete_event_as_outlook(organizer, meeting)

    changes = await world.changes(3)
    assert kinds(changes) == [
        ("appointment.created", "tentative"),
        ("appointment.updated", "meeting"),
        ("appointment.deleted", "meeting"),
    ]
    assert len(ids(changes)) == 1
    assert await world.settled() == changes


async def test_the_organizer_s_changes_reach_the_workforce_system(world: World, organizer: str) -> None:
    await ready(world)
    meeting = invite(world, "Quarterly review")
    [created] = await world.changes(1)

    world.graph.update_event_as_outlook(organizer, meeting, {"start": at(2, 9), "end": at(2, 10)})

    changes = await world.changes(2)
    assert changes[1]["type"] == "appointment.updated"
    assert changes[1]["appointment"]["id"] == created["appointment"]["id"]
    assert changes[1]["appointment"]["start"] == at(2, 9)["dateTime"] + "Z"


async def test_one_cancelled_occurrence_is_withdrawn_and_the_rest_stay(world: World, organizer: str) -> None:
    await ready(world)
    daily = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "numbered", "numberOfOccurrences": 3}}
    invite(world, "Weekly sync", recurrence=daily)
    created = await world.changes(3)
    second = sorted(created, key=lambda change: change["appointment"]["start"])[1]
    megan = world.graph.state.mailbox_for(organizer, None)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    [occurrence] = megan.instances(today + timedelta(days=2), today + timedelta(days=3))

    world.graph.delete_event_as_outlook(organizer, occurrence.id)

    changes = await world.settled()
    assert [change["type"] for change in changes[3:]] == ["appointment.deleted"]
    assert changes[3]["appointment"]["id"] == second["appointment"]["id"]


async def test_a_cancelled_series_is_withdrawn_whole(world: World, organizer: str) -> None:
    await ready(world)
    world.outlook("Her own", days=5)  # the whole calendar going at once would pause the mailbox (mass-delete guard)
    daily = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "numbered", "numberOfOccurrences": 3}}
    meeting = invite(world, "Weekly sync", recurrence=daily)
    created = [c for c in await world.changes(4) if c["appointment"]["subject"] == "Weekly sync"]

    world.graph.delete_event_as_outlook(organizer, meeting)

    changes = await world.settled()
    assert [change["type"] for change in changes[4:]] == ["appointment.deleted"] * 3
    assert ids(changes[4:]) == ids(created)


async def test_a_declined_meeting_kept_in_the_calendar_is_withdrawn(world: World, organizer: str) -> None:
    await ready(world)
    invite(world, "Vendor pitch")
    await world.changes(1)

    world.graph.respond_as_outlook(world.mailbox, adele_copy(world), "declined")

    changes = await world.changes(2)
    assert kinds(changes) == [("appointment.created", "tentative"), ("appointment.deleted", "tentative")]
    assert [event["responseStatus"]["response"] for event in world.graph.events(world.mailbox)] == ["declined"]


async def test_a_sync_state_lost_mid_round_restarts_it_without_spurious_changes(world: World) -> None:
    await ready(world)
    for hour in (8, 10, 12):
        world.outlook(f"Meeting {hour}", start=hour, end=hour + 1)
    before = await world.changes(3)
    world.graph.empty_delta_pages(2, user=world.mailbox)
    world.graph.expire_delta_tokens(world.mailbox, after_pages=1)

    world.outlook("After the loss", start=15, end=16)

    changes = await world.settled()
    assert changes[:3] == before
    assert [(c["type"], c["appointment"]["subject"]) for c in changes[3:]] == [
        ("appointment.created", "After the loss")
    ]
    statuses = [r["status"] for r in world.graph.stats(log_limit=200)["log"] if "calendarView/delta" in r["path"]]
    assert 410 in statuses


async def test_a_sync_state_lost_again_and_again_is_a_reading_failure_not_a_crash(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await ready(world)
    world.graph.empty_delta_pages(20, user=world.mailbox)
    world.graph.expire_delta_tokens(world.mailbox, after_pages=1, times=10)
    caplog.set_level(logging.INFO)

    world.outlook("During the outage")

    await wait_until(lambda: "lost the round's sync state" in caplog.text)
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info]
    world.graph.clear_faults()
    [change] = await world.changes(1, within=20)
    assert change["appointment"]["subject"] == "During the outage"


async def test_an_onprem_meeting_cancelled_or_declined_is_withdrawn_too(hybrid: World) -> None:
    ews = hybrid.ews
    assert ews is not None
    await ready(hybrid)
    start = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1, hours=13)
    invitation = {"organizer": "megan@contoso.com", "start": start, "end": start + timedelta(hours=1)}
    review = ews.create_item_as_outlook(ONPREM_MAILBOX, subject="Quarterly review", **invitation)
    pitch = ews.create_item_as_outlook(ONPREM_MAILBOX, subject="Vendor pitch", **invitation)
    await hybrid.changes(2)

    ews.update_item_as_outlook(ONPREM_MAILBOX, review, is_cancelled=True)
    ews.update_item_as_outlook(ONPREM_MAILBOX, pitch, my_response="Decline")

    changes = await hybrid.changes(4)
    assert sorted((c["type"], c["appointment"]["subject"]) for c in changes[2:]) == [
        ("appointment.deleted", "Quarterly review"),
        ("appointment.deleted", "Vendor pitch"),
    ]
