"""Time-zone names and local time: what the REST API, the relay and the feed read people's times with."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bridge.zones import all_day_date, iana_zone, local_instant, local_midnight, next_local_midnight, wall_clock


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("pacific standard time", "America/Los_Angeles"),
        ("Europe/Berlin", "Europe/Berlin"),
        ("America/Los_Angeles", "America/Los_Angeles"),
        ("tzone://Microsoft/Utc", "UTC"),
        (" UTC ", "UTC"),
    ],
)
def test_windows_ids_and_iana_names_are_read_as_iana_zones(given: str, expected: str) -> None:
    assert iana_zone(given) == expected


@pytest.mark.parametrize("given", ["Mars/Olympus_Mons", "", "../../etc/passwd", "/etc/localtime", "Europe\\Berlin"])
def test_what_names_no_zone_is_refused_without_reading_files_outside_the_zone_database(given: str) -> None:
    assert iana_zone(given) is None


def test_nine_in_berlin_is_eight_utc_in_winter_and_seven_in_summer() -> None:
    assert local_instant(datetime(2027, 3, 22, 9), "Europe/Berlin") == datetime(2027, 3, 22, 8, tzinfo=UTC)
    assert local_instant(datetime(2027, 3, 29, 9), "Europe/Berlin") == datetime(2027, 3, 29, 7, tzinfo=UTC)


def test_a_time_the_clocks_skip_lands_an_hour_later_on_the_clock_as_outlook_places_it() -> None:
    skipped = local_instant(datetime(2027, 3, 28, 2, 30), "Europe/Berlin")
    assert wall_clock(skipped, "Europe/Berlin") == datetime(2027, 3, 28, 3, 30)


def test_the_day_the_clocks_go_forward_ends_23_hours_after_it_began() -> None:
    start = local_midnight(date(2027, 3, 14), "America/Los_Angeles")
    assert start == datetime(2027, 3, 14, 8, tzinfo=UTC)
    assert next_local_midnight(start, "America/Los_Angeles") == datetime(2027, 3, 15, 7, tzinfo=UTC)


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Europe/Berlin", "Asia/Tokyo", "UTC"])
def test_an_all_day_day_is_read_the_same_from_graph_s_floating_midnight_and_from_the_local_instant(zone: str) -> None:
    floating = datetime(2027, 3, 14, tzinfo=UTC)  # Graph: all-day midnights whatever the zone asked for
    local = local_midnight(date(2027, 3, 14), zone)  # EWS: the instant the person's day begins
    assert all_day_date(floating, zone) == all_day_date(local, zone) == date(2027, 3, 14)
