"""Graph's `patternedRecurrence`, validated as Graph validates it and expanded with dateutil's rrule.

Expansion happens in wall-clock time of the recurrence's zone, so a 09:00 stand-up stays at 09:00 across a
daylight-saving change (its UTC time moves), as in Outlook. Two Exchange habits rrule does not have by itself:

- `absoluteMonthly` / `absoluteYearly` on day 29–31 fall on the month's last day when the month is shorter
  (Exchange moves them; a plain BYMONTHDAY would skip the month). Expressed as BYMONTHDAY=28..d with BYSETPOS=-1.
- `relativeMonthly` / `relativeYearly` with several days ("the first weekday") count over the set of days,
  which is BYDAY=MO,TU,...;BYSETPOS=n, not BYDAY=+1MO,+1TU,...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any, Literal

from dateutil import rrule

from emulators.graph_common import MIN_DATE, GraphError, known_zone

DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_WEEKDAYS = {
    "monday": rrule.MO,
    "tuesday": rrule.TU,
    "wednesday": rrule.WE,
    "thursday": rrule.TH,
    "friday": rrule.FR,
    "saturday": rrule.SA,
    "sunday": rrule.SU,
}
_Frequency = Literal[0, 1, 2, 3, 4, 5, 6]
_FREQUENCIES: dict[str, _Frequency] = {
    "daily": rrule.DAILY,
    "weekly": rrule.WEEKLY,
    "absoluteMonthly": rrule.MONTHLY,
    "relativeMonthly": rrule.MONTHLY,
    "absoluteYearly": rrule.YEARLY,
    "relativeYearly": rrule.YEARLY,
}
INDEXES = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
PATTERN_TYPES = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
RANGE_TYPES = ("endDate", "noEnd", "numbered")


def _invalid(message: str) -> GraphError:
    return GraphError(400, "ErrorInvalidRecurrence", message)


@dataclass(frozen=True)
class Recurrence:
    """One series' pattern and range, normalised (every field present, as Graph returns them)."""

    pattern_type: str
    interval: int
    days_of_week: tuple[str, ...]
    day_of_month: int
    month: int
    index: str
    first_day_of_week: str
    range_type: str
    start_date: date
    end_date: date | None
    number_of_occurrences: int
    time_zone: str

    @classmethod
    def from_graph(cls, value: Any, *, default_zone: str, default_start: date) -> Recurrence:
        """Validate a request's `recurrence`; omitted range fields default the way Outlook fills them in."""
        if not isinstance(value, dict):
            raise _invalid("The recurrence must be an object with a pattern and a range.")
        pattern = value.get("pattern")
        range_ = value.get("range")
        if not isinstance(pattern, dict) or not isinstance(range_, dict):
            raise _invalid("The recurrence must have both a pattern and a range.")
        kind = pattern.get("type")
        if kind not in PATTERN_TYPES:
            raise _invalid(f"The recurrence pattern type '{kind}' is not valid.")
        interval = _int(pattern.get("interval", 1), "interval")
        if interval < 1 or interval > 999:
            raise _invalid("The recurrence pattern interval must be between 1 and 999.")
        days = tuple(str(day).lower() for day in pattern.get("daysOfWeek") or ())
        if any(day not in _WEEKDAYS for day in days):
            raise _invalid(f"The recurrence pattern daysOfWeek {list(days)} is not valid.")
        if kind in ("weekly", "relativeMonthly", "relativeYearly") and not days:
            raise _invalid(f"A {kind} recurrence pattern needs daysOfWeek.")
        day_of_month = _int(pattern.get("dayOfMonth", 0), "dayOfMonth")
        if kind in ("absoluteMonthly", "absoluteYearly") and not 1 <= day_of_month <= 31:
            raise _invalid(f"A {kind} recurrence pattern needs a dayOfMonth between 1 and 31.")
        month = _int(pattern.get("month", 0), "month")
        if kind in ("absoluteYearly", "relativeYearly") and not 1 <= month <= 12:
            raise _invalid(f"A {kind} recurrence pattern needs a month between 1 and 12.")
        index = str(pattern.get("index") or "first")
        if index not in INDEXES:
            raise _invalid(f"The recurrence pattern index '{index}' is not valid.")
        first_day = str(pattern.get("firstDayOfWeek") or "sunday").lower()
        if first_day not in _WEEKDAYS:
            raise _invalid(f"The recurrence pattern firstDayOfWeek '{first_day}' is not valid.")

        range_type = range_.get("type")
        if range_type not in RANGE_TYPES:
            raise _invalid(f"The recurrence range type '{range_type}' is not valid.")
        start = _date(range_.get("startDate"), "startDate") or default_start
        end: date | None = None
        count = 0
        if range_type == "endDate":
            end = _date(range_.get("endDate"), "endDate")
            if end is None or end < start:
                raise _invalid("The recurrence range endDate must be on or after its startDate.")
        elif range_type == "numbered":
            count = _int(range_.get("numberOfOccurrences", 0), "numberOfOccurrences")
            if count < 1:
                raise _invalid("A numbered recurrence range needs numberOfOccurrences of at least 1.")
        zone_name = str(range_.get("recurrenceTimeZone") or default_zone)
        if not known_zone(zone_name):
            raise _invalid(f"The recurrence time zone '{zone_name}' is not supported.")
        return cls(
            pattern_type=kind,
            interval=interval,
            days_of_week=days,
            day_of_month=day_of_month if kind in ("absoluteMonthly", "absoluteYearly") else 0,
            month=month if kind in ("absoluteYearly", "relativeYearly") else 0,
            index=index,
            first_day_of_week=first_day,
            range_type=range_type,
            start_date=start,
            end_date=end,
            number_of_occurrences=count,
            time_zone=zone_name,
        )

    def to_graph(self) -> dict[str, Any]:
        pattern: dict[str, Any] = {
            "type": self.pattern_type,
            "interval": self.interval,
            "month": self.month,
            "dayOfMonth": self.day_of_month,
        }
        if self.days_of_week:
            pattern["daysOfWeek"] = list(self.days_of_week)
        pattern["firstDayOfWeek"] = self.first_day_of_week
        pattern["index"] = self.index
        return {
            "pattern": pattern,
            "range": {
                "type": self.range_type,
                "startDate": self.start_date.isoformat(),
                "endDate": self.end_date.isoformat() if self.end_date else MIN_DATE,
                "recurrenceTimeZone": self.time_zone,
                "numberOfOccurrences": self.number_of_occurrences,
            },
        }

    def starts_between(self, start_time: time, low: datetime, high: datetime) -> list[datetime]:
        """Wall-clock starts of the occurrences in [low, high] (naive datetimes in the recurrence's zone)."""
        return list(_rule(self, start_time).between(low, high, inc=True))

    def has_start(self, start_time: time, when: datetime) -> bool:
        """Whether the series has an occurrence starting at wall-clock `when` (deleted ones included)."""
        return bool(_rule(self, start_time).between(when, when, inc=True))

    def first_start(self, start_time: time) -> datetime | None:
        first = _rule(self, start_time).after(datetime.combine(self.start_date, time.min), inc=True)
        return first if isinstance(first, datetime) else None


@lru_cache(maxsize=4096)
def _rule(recurrence: Recurrence, start_time: time) -> rrule.rrule:
    # rrule objects are immutable and cheap to query; caching them spares re-parsing on every calendarView.
    frequency = _FREQUENCIES[recurrence.pattern_type]
    options: dict[str, Any] = {
        "dtstart": datetime.combine(recurrence.start_date, start_time),
        "interval": recurrence.interval,
        "wkst": _WEEKDAYS[recurrence.first_day_of_week],
    }
    if recurrence.range_type == "numbered":
        options["count"] = recurrence.number_of_occurrences
    elif recurrence.range_type == "endDate" and recurrence.end_date is not None:
        options["until"] = datetime.combine(recurrence.end_date, time.max)
    days = [_WEEKDAYS[day] for day in recurrence.days_of_week]
    kind = recurrence.pattern_type
    if kind == "weekly":
        options["byweekday"] = days
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        if recurrence.day_of_month <= 28:
            options["bymonthday"] = recurrence.day_of_month
        else:
            options["bymonthday"] = tuple(range(28, recurrence.day_of_month + 1))
            options["bysetpos"] = -1
    elif kind in ("relativeMonthly", "relativeYearly"):
        options["byweekday"] = days
        options["bysetpos"] = INDEXES[recurrence.index]
    if kind in ("absoluteYearly", "relativeYearly"):
        options["bymonth"] = recurrence.month
    return rrule.rrule(frequency, **options)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"The recurrence value {name}={value!r} is not an integer.")
    return value


def _date(value: Any, name: str) -> date | None:
    if value in (None, "", MIN_DATE):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _invalid(f"The recurrence {name} '{value}' is not a date (yyyy-MM-dd).") from None
