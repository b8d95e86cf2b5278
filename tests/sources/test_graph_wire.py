"""Decoding Graph payloads, checked against the shapes Microsoft documents (tests/fixtures/graph/)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.domain import AppointmentKind, FreeBusy
from bridge.sources import graph_wire as wire

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_first_delta_page_keeps_every_item_and_the_next_link() -> None:
    page = wire.decode_page(fixture_bytes("delta_page_1.json"))

    assert [event.type for event in page.value] == ["singleInstance", "occurrence", "occurrence", "exception"]
    assert page.next_link is not None
    assert "$skiptoken=" in page.next_link
    assert page.delta_link is None


def test_single_instance_becomes_an_appointment_in_utc() -> None:
    event = wire.decode_page(fixture_bytes("delta_page_1.json")).value[0]

    appointment = wire.to_appointment(event)

    assert appointment.item_id == "AAMkAGI1AAAoZDPAAA="
    assert appointment.change_key == "DwAAABYAAAAadQ+0NnRaRJYd7+f8Y2orAAAAAAMV"
    assert appointment.start == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert appointment.end == datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    assert appointment.free_busy is FreeBusy.BUSY
    assert appointment.subject == "Customer visit"
    assert appointment.kind is AppointmentKind.SINGLE
    assert not appointment.private
    assert not appointment.all_day
    assert appointment.is_organizer


def test_occurrence_stub_takes_subject_and_state_from_its_series_master() -> None:
    stub = wire.decode_page(fixture_bytes("delta_page_1.json")).value[1]
    master = wire.decode_event(fixture_bytes("event_series_master.json"))
    assert stub.show_as is None
    assert stub.subject is None

    appointment = wire.to_appointment(stub, master)

    assert appointment.subject == "Daily stand-up"
    assert appointment.free_busy is FreeBusy.BUSY
    assert appointment.start == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    assert appointment.kind is AppointmentKind.OCCURRENCE
    assert appointment.series_id == "AAMkAGI1AAAsEriesMaster="
    assert appointment.change_key == "DwAAABYAAAAadQ+0NnRaRJYd7+f8Y2orAAAAAAMW"  # the stub's own etag


def test_exception_comes_in_full_with_its_own_state() -> None:
    exception = wire.decode_page(fixture_bytes("delta_page_1.json")).value[3]

    appointment = wire.to_appointment(exception)

    assert appointment.kind is AppointmentKind.EXCEPTION
    assert appointment.free_busy is FreeBusy.TENTATIVE
    assert appointment.subject == "Daily stand-up (moved)"


def test_final_page_carries_all_day_private_and_ignored_items_unfiltered() -> None:
    page = wire.decode_page(fixture_bytes("delta_page_2_final.json"))
    by_id = {event.id: wire.to_appointment(event) for event in page.value}

    assert page.delta_link is not None
    assert "$deltatoken=" in page.delta_link
    vacation = by_id["AAMkAGI1AAAoofAllDay="]
    assert vacation.all_day
    assert vacation.free_busy is FreeBusy.OOF
    assert by_id["AAMkAGI1AAAprivate="].private
    # The source reports what Exchange holds; hiding `*` subjects is the mapping's job.
    assert by_id["AAMkAGI1AAAignored="].subject == "*Dentist"


def test_removed_marker_is_recognised() -> None:
    page = wire.decode_page(fixture_bytes("delta_removed.json"))

    assert page.value[0].removed is not None
    assert page.value[0].removed.reason == "deleted"


def test_empty_page_with_a_next_link_is_valid() -> None:
    page = wire.decode_page(fixture_bytes("delta_empty_page_with_next.json"))

    assert page.value == []
    assert page.next_link is not None


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("error_412_conflict.json", "ErrorIrresolvableConflict"),
        ("error_429_throttled.json", "ApplicationThrottled"),
        ("error_sync_state_not_found.json", "SyncStateNotFound"),
    ],
)
def test_error_bodies_yield_their_code(name: str, code: str) -> None:
    body = json.dumps(json.loads(fixture_bytes(name))["body"]).encode()

    assert wire.decode_error(body).code == code


def test_error_that_is_not_graphs_shape_gives_an_empty_detail() -> None:
    assert wire.decode_error(b"<html>bad gateway</html>").code == ""


def test_subscription_answer_gives_id_and_expiry() -> None:
    subscription = wire.decode_subscription(fixture_bytes("subscription_create_response.json"), "adele@contoso.com")

    assert subscription.subscription_id == "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
    assert subscription.expires_at == datetime(2026, 11, 29, 11, 0, tzinfo=UTC)


def test_iana_time_zone_is_converted_to_utc() -> None:
    value = wire.WireDateTime("2026-07-01T09:00:00.0000000", "Europe/Berlin")

    assert wire.parse_datetime(value) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


def test_windows_time_zone_name_is_refused_clearly() -> None:
    with pytest.raises(wire.WireDecodeError, match=re.escape("W. Europe Standard Time")):
        wire.parse_datetime(wire.WireDateTime("2026-07-01T09:00:00", "W. Europe Standard Time"))


def test_malformed_page_raises_a_decode_error() -> None:
    with pytest.raises(wire.WireDecodeError):
        wire.decode_page(b'{"value": [{"subject": "no id"}]}')


def test_bridge_marker_is_read_from_the_extended_property() -> None:
    body = json.dumps(
        {
            "id": "x",
            "start": {"dateTime": "2026-11-24T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-11-24T10:00:00", "timeZone": "UTC"},
            "singleValueExtendedProperties": [{"id": wire.BRIDGE_PROPERTY_ID.upper(), "value": "cmd-1"}],
        }
    ).encode()

    assert wire.to_appointment(wire.decode_event(body)).bridge_ref == "cmd-1"


def test_a_meeting_its_organizer_cancelled_is_withdrawn() -> None:
    single, occurrence = wire.decode_page(fixture_bytes("delta_meeting_cancelled.json")).value

    assert wire.withdrawn(single)
    assert wire.withdrawn(occurrence)
    assert occurrence.type == "exception"


def test_a_meeting_declined_and_kept_is_withdrawn_and_a_tentative_one_follows_show_as() -> None:
    declined, tentative = wire.decode_page(fixture_bytes("delta_meeting_declined.json")).value

    assert wire.withdrawn(declined)
    assert not wire.withdrawn(tentative)
    assert wire.to_appointment(tentative).free_busy is FreeBusy.TENTATIVE


def test_an_occurrence_stub_is_withdrawn_when_its_series_is_cancelled() -> None:
    stub = wire.decode_page(fixture_bytes("delta_page_1.json")).value[1]
    master = wire.decode_event(fixture_bytes("event_series_master.json"))
    cancelled = wire.decode_event(
        fixture_bytes("event_series_master.json").replace(b'"isCancelled": false', b'"isCancelled": true')
    )

    assert not wire.withdrawn(stub, master)
    assert wire.withdrawn(stub, cancelled)


def test_a_change_notification_names_its_item_and_change_key() -> None:
    (item,) = wire.decode_notifications(fixture_bytes("notification_event_created.json"))

    assert item.change_type == "created"
    assert item.item_id == "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AGnUPtDZ0WkSWHe-n_GNqKwAAAAADFAAA"
    assert item.change_key == "DwAAABYAAAAadQ+0NnRaRJYd7+f8Y2orAAAAAAMU"


def test_a_lifecycle_notification_names_no_item() -> None:
    (item,) = wire.decode_notifications(fixture_bytes("lifecycle_missed.json"))

    assert (item.item_id, item.change_key) == (None, None)
