"""Meetings across mailboxes in the Graph emulator: attendee copies follow the organizer, cancellations mark them.

An attendee's delta is checked against the recorded shapes in tests/fixtures/graph/delta_meeting_*.json.
"""

from __future__ import annotations

from typing import Any

import pytest

from emulators.graph import GraphEmulator
from emulators.graph_common import parse_instant
from emulators.graph_model import DirectoryUser
from tests.emulators.graph_helpers import GraphHttp, assert_shape, event_payload, fixture
from tests.emulators.test_graph_delta import delta_round, items_of

MEGAN = "MeganB@contoso.com"
ADELE_DELTA = "/v1.0/users/AdeleV@contoso.com/calendarView/delta"
WINDOW = "startDateTime=2026-11-24T00:00:00Z&endDateTime=2026-12-01T00:00:00Z"


@pytest.fixture
def megan(graph_emulator: GraphEmulator, adele: DirectoryUser) -> DirectoryUser:
    return graph_emulator.add_user(MEGAN, "Megan Bowen")


def _attending(*addresses: str) -> list[dict[str, Any]]:
    return [{"type": "required", "emailAddress": {"name": a, "address": a}} for a in addresses]


def _meeting(emulator: GraphEmulator, **extra: Any) -> dict[str, Any]:
    payload = event_payload("Quarterly review", "2026-11-26T13:00:00", "2026-11-26T14:00:00", **extra)
    return emulator.create_event_as_outlook(MEGAN, payload | {"attendees": _attending("AdeleV@contoso.com")})


def _copies(emulator: GraphEmulator) -> list[dict[str, Any]]:
    return emulator.events("AdeleV@contoso.com")


def _accepted_meeting(emulator: GraphEmulator) -> str:
    """Megan's meeting, which Adele accepted; the id of Megan's event."""
    original = _meeting(emulator)
    [copy] = _copies(emulator)
    emulator.respond_as_outlook("AdeleV@contoso.com", copy["id"], "accepted")
    return str(original["id"])


def test_a_meeting_puts_a_copy_in_each_attendee_s_calendar(graph_emulator: GraphEmulator, megan: DirectoryUser) -> None:
    original = _meeting(graph_emulator)

    [copy] = _copies(graph_emulator)

    assert copy["id"] != original["id"]
    assert copy["iCalUId"] == original["iCalUId"]
    assert copy["subject"] == "Quarterly review"
    assert copy["isOrganizer"] is False
    assert copy["organizer"]["emailAddress"]["address"] == MEGAN
    assert copy["responseStatus"]["response"] == "notResponded"
    assert copy["showAs"] == "tentative"


def test_attendees_outside_the_tenant_get_nothing(graph_emulator: GraphEmulator, megan: DirectoryUser) -> None:
    payload = event_payload("Partner call", attendees=_attending("someone@fabrikam.com"))
    graph_emulator.create_event_as_outlook(MEGAN, payload)

    assert _copies(graph_emulator) == []


def test_the_organizer_s_changes_reach_the_copy_and_the_answer_stays(
    graph_emulator: GraphEmulator, megan: DirectoryUser
) -> None:
    original = _accepted_meeting(graph_emulator)

    moved = event_payload("Quarterly review (moved)", "2026-11-27T09:00:00", "2026-11-27T10:00:00")
    graph_emulator.update_event_as_outlook(MEGAN, original, moved)

    [copy] = _copies(graph_emulator)
    assert copy["subject"] == "Quarterly review (moved)"
    assert copy["start"]["dateTime"].startswith("2026-11-27T09:00:00")
    assert copy["responseStatus"]["response"] == "accepted"
    assert copy["showAs"] == "busy"


def test_cancelling_marks_the_copy_cancelled_and_keeps_its_show_as(
    graph_emulator: GraphEmulator, megan: DirectoryUser
) -> None:
    original = _accepted_meeting(graph_emulator)

    graph_emulator.delete_event_as_outlook(MEGAN, original)

    assert graph_emulator.events(MEGAN) == []
    [copy] = _copies(graph_emulator)
    assert copy["isCancelled"] is True
    assert copy["subject"] == "Canceled: Quarterly review"
    assert copy["showAs"] == "busy"


def test_cancelling_one_occurrence_makes_a_cancelled_exception_in_the_copy(
    graph_emulator: GraphEmulator, megan: DirectoryUser
) -> None:
    daily = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "numbered", "numberOfOccurrences": 3}}
    _meeting(graph_emulator, recurrence=daily)
    organizer = graph_emulator.state.mailbox_for(MEGAN, None)
    occurrences = organizer.instances(parse_instant("2026-11-24T00:00:00Z"), parse_instant("2026-12-01T00:00:00Z"))

    graph_emulator.delete_event_as_outlook(MEGAN, occurrences[1].id)

    [copy] = _copies(graph_emulator)
    assert copy["isCancelled"] is False
    [cancelled] = copy["exceptionOccurrences"]
    assert cancelled["isCancelled"] is True
    assert cancelled["subject"] == "Canceled: Quarterly review"
    assert cancelled["originalStart"].startswith("2026-11-27T13:00:00")


def test_answers_set_show_as_as_exchange_does(graph_emulator: GraphEmulator, megan: DirectoryUser) -> None:
    _meeting(graph_emulator, showAs="oof")
    [copy] = _copies(graph_emulator)

    tentative = graph_emulator.respond_as_outlook("AdeleV@contoso.com", copy["id"], "tentativelyAccepted")
    accepted = graph_emulator.respond_as_outlook("AdeleV@contoso.com", copy["id"], "accepted")
    declined = graph_emulator.respond_as_outlook("AdeleV@contoso.com", copy["id"], "declined")

    assert (tentative["responseStatus"]["response"], tentative["showAs"]) == ("tentativelyAccepted", "tentative")
    assert (accepted["responseStatus"]["response"], accepted["showAs"]) == ("accepted", "oof")
    assert (declined["responseStatus"]["response"], declined["showAs"]) == ("declined", "oof")
    assert len(_copies(graph_emulator)) == 1


def test_the_organizer_cannot_answer_their_own_meeting(graph_emulator: GraphEmulator, megan: DirectoryUser) -> None:
    original = _meeting(graph_emulator)

    with pytest.raises(Exception, match="organizer"):
        graph_emulator.respond_as_outlook(MEGAN, original["id"], "declined")


async def test_an_attendee_s_delta_carries_the_cancellation_as_recorded(
    graph: GraphHttp, graph_emulator: GraphEmulator, megan: DirectoryUser
) -> None:
    original = _meeting(graph_emulator)
    _, delta_link = await delta_round(graph, f"{ADELE_DELTA}?{WINDOW}")
    graph_emulator.delete_event_as_outlook(MEGAN, original["id"])

    pages, _ = await delta_round(graph, delta_link)

    [item] = items_of(pages)
    documented = fixture("delta_meeting_cancelled.json")["value"][0]
    assert_shape(documented, item)
    assert (item["isCancelled"], item["isOrganizer"], item["subject"]) == (True, False, "Canceled: Quarterly review")


async def test_respond_and_a_mid_round_expiry_through_the_control_api(
    graph: GraphHttp, graph_emulator: GraphEmulator, megan: DirectoryUser
) -> None:
    _meeting(graph_emulator)
    [copy] = _copies(graph_emulator)
    control = f"{graph_emulator.control_url}/users/AdeleV@contoso.com/events/{copy['id']}/respond"

    answered = await graph.post(control, {"response": "declined"})
    refused = await graph.post(control, {"response": "maybe"})
    await graph.post(
        f"{graph_emulator.control_url}/faults",
        {"kind": "expireDeltaTokens", "user": "AdeleV@contoso.com", "afterPages": 1},
    )
    graph_emulator.empty_delta_pages(1, user="AdeleV@contoso.com")
    first = await graph.get(f"{ADELE_DELTA}?{WINDOW}")
    second = await graph.get(first.body["@odata.nextLink"])

    assert answered.status == 200
    assert answered.body["responseStatus"]["response"] == "declined"
    assert refused.status == 400
    assert first.status == 200
    assert second.status == 410
    assert second.body["error"]["code"] == "SyncStateNotFound"
