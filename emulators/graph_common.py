"""What every part of the Graph emulator shares: Graph's date formats, its time-zone names, its errors, its ids.

Graph writes `dateTimeTimeZone.dateTime` with seven fractional digits and no offset
(`2026-11-24T09:00:00.0000000`), instants with a `Z` (`2026-11-20T09:00:00.0000000Z`), and accepts Windows
time-zone names ("W. Europe Standard Time") as well as IANA ones; this module is the one place that knows it.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Windows zone ids Outlook and Graph use, mapped to their IANA equivalent (CLDR's windowsZones, territory 001).
# A small table on purpose: the names calendars in the field actually carry, plus the UTC aliases Graph emits.
WINDOWS_ZONES: Mapping[str, str] = {
    "UTC": "UTC",
    "tzone://Microsoft/Utc": "UTC",
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "Romance Standard Time": "Europe/Paris",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "Pacific Standard Time": "America/Los_Angeles",
    "India Standard Time": "Asia/Calcutta",
    "Tokyo Standard Time": "Asia/Tokyo",
    "AUS Eastern Standard Time": "Australia/Sydney",
}
_WINDOWS_BY_LOWER = {name.lower(): iana for name, iana in WINDOWS_ZONES.items()}

_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d+))?)?)?"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)

MIN_DATE = "0001-01-01"


class GraphError(Exception):
    """A request Graph would refuse: rendered as `{"error": {"code", "message", "innerError"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


def bad_request(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def item_not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def zone(name: str) -> ZoneInfo:
    """The zone a Graph `timeZone` value names (Windows or IANA), or a 400 like Graph's."""
    iana = _WINDOWS_BY_LOWER.get(name.strip().lower(), name.strip())
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise GraphError(
            400,
            "TimeZoneNotSupportedException",
            f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{name}'.",
        ) from None


def known_zone(name: str) -> bool:
    try:
        zone(name)
    except GraphError:
        return False
    return True


def parse_datetime(text: str) -> tuple[datetime, tzinfo | None]:
    """A Graph date-time string: the naive wall-clock value and the offset it carried, if any.

    Graph accepts seven fractional digits (more than Python's six), so the fraction is cut, not rounded.
    """
    match = _DATETIME.match(text.strip())
    if match is None:
        raise bad_request(f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'.")
    frac = (match["frac"] or "0")[:6].ljust(6, "0")
    try:
        value = datetime.fromisoformat(match["date"]).replace(
            hour=int(match["h"] or 0), minute=int(match["m"] or 0), second=int(match["s"] or 0), microsecond=int(frac)
        )
    except ValueError:
        raise bad_request(f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'.") from None
    offset = match["offset"]
    if offset is None:
        return value, None
    if offset.upper() == "Z":
        return value, UTC
    sign = 1 if offset[0] == "+" else -1
    digits = offset[1:].replace(":", "")
    return value, timezone(timedelta(minutes=sign * (int(digits[:2]) * 60 + int(digits[2:]))))


def parse_instant(text: str, default: tzinfo = UTC) -> datetime:
    """A point in time (query windows, expirations): a missing offset means `default`. Returned in UTC."""
    value, offset = parse_datetime(text)
    return value.replace(tzinfo=offset or default).astimezone(UTC)


def to_utc(local: datetime, tz: tzinfo) -> datetime:
    """Wall-clock time in `tz` as a UTC instant (a time skipped by DST moves forward, as Outlook does)."""
    return local.replace(tzinfo=tz).astimezone(UTC)


def to_local(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def format_local(value: datetime) -> str:
    """`2026-11-24T09:00:00.0000000`: Graph's dateTimeTimeZone.dateTime (seven digits, no offset)."""
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0"


def format_instant(value: datetime) -> str:
    """`2026-11-20T09:00:00.0000000Z`: Graph's DateTimeOffset as it writes it on events and subscriptions."""
    return format_local(value.astimezone(UTC).replace(tzinfo=None)) + "Z"


def format_instant_ms(value: datetime) -> str:
    """`2026-11-29T22:11:09.952Z`: the shorter form change notifications carry."""
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def format_error_date(value: datetime) -> str:
    """innerError.date: seconds, no fraction, no zone (as Graph writes it)."""
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%S}"


def now() -> datetime:
    return datetime.now(UTC)


def new_guid() -> str:
    return str(uuid.uuid4())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def unb64url(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


def random_token(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


def error_body(status_code: str, message: str, request_id: str, client_request_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status_code,
            "message": message,
            "innerError": {
                "date": format_error_date(now()),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
