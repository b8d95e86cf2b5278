"""What a person does to a calendar in Outlook, in EWS vocabulary, as a payload for the calendar model.

Tests drive the emulator's mailboxes with keyword fields (`subject`, `start`, `end`, `free_busy="OOF"`, an
`organizer` other than the owner for an invitation, ...) instead of XML; these become the same Graph payload
an EWS CreateItem would, plus the Outlook-only properties (organizer, response, cancellation) a client cannot
set through EWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from emulators.ews_items import FREE_BUSY, IMPORTANCE, RESPONSE, SENSITIVITY, zone_name
from emulators.ews_model import EwsMailbox
from emulators.graph_common import format_local, to_local, zone

_RESPONSES = {value: key for key, value in RESPONSE.items()}
FIELDS = (
    "subject",
    "body",
    "start",
    "end",
    "time_zone",
    "is_all_day",
    "free_busy",
    "sensitivity",
    "importance",
    "location",
    "categories",
    "recurrence",
    "organizer",
    "my_response",
    "is_cancelled",
    "attendees",
    "extended",
)


def outlook_payload(mailbox: EwsMailbox, fields: Mapping[str, Any], *, creating: bool = False) -> dict[str, Any]:
    """Fields, all optional but `start` / `end` on creation:

    subject, body (text), start / end (aware datetimes), time_zone (Windows or IANA id, default UTC),
    is_all_day, free_busy (Free, Tentative, Busy, OOF, WorkingElsewhere, NoData), sensitivity (Normal,
    Personal, Private, Confidential), importance, location, categories, recurrence (Graph's
    patternedRecurrence dict), organizer (an address other than the owner's makes an invitation), my_response
    (Organizer, Accept, Tentative, Decline, NoResponseReceived, Unknown), is_cancelled, attendees (addresses),
    extended ({"String {guid} Name X": "value"}).
    """
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; known: {', '.join(FIELDS)}")
    if creating and ("start" not in fields or "end" not in fields):
        raise ValueError("an item needs start and end")
    time_zone = zone_name(fields.get("time_zone"), "UTC")
    payload: dict[str, Any] = {}
    if "subject" in fields:
        payload["subject"] = str(fields["subject"])
    if "body" in fields:
        payload["body"] = {"contentType": "text", "content": str(fields["body"])}
    for name in ("start", "end"):
        if name in fields:
            payload[name] = _when(fields[name], time_zone)
    if "is_all_day" in fields:
        payload["isAllDay"] = bool(fields["is_all_day"])
    for name, key, mapping in (
        ("free_busy", "showAs", FREE_BUSY),
        ("sensitivity", "sensitivity", SENSITIVITY),
        ("importance", "importance", IMPORTANCE),
    ):
        if name in fields:
            if fields[name] not in mapping:
                raise ValueError(f"{name} must be one of {', '.join(mapping)}")
            payload[key] = mapping[fields[name]]
    if "location" in fields:
        payload["location"] = {"displayName": str(fields["location"])}
    if "categories" in fields:
        payload["categories"] = [str(category) for category in fields["categories"]]
    if "recurrence" in fields:
        recurrence = fields["recurrence"]
        if recurrence is not None:
            recurrence = {**recurrence, "range": {"recurrenceTimeZone": time_zone, **recurrence["range"]}}
        payload["recurrence"] = recurrence
    if "attendees" in fields:
        payload["attendees"] = [
            {
                "type": "required",
                "emailAddress": {"name": address, "address": address},
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            }
            for address in fields["attendees"]
        ]
    organizer = fields.get("organizer")
    if organizer is not None:
        organised = str(organizer).lower() == mailbox.address.lower()
        payload["isOrganizer"] = organised
        payload["organizer"] = {"emailAddress": {"name": str(organizer), "address": str(organizer)}}
        if "my_response" not in fields:
            payload["responseStatus"] = {"response": "organizer" if organised else "notResponded"}
    if "my_response" in fields:
        if fields["my_response"] not in _RESPONSES:
            raise ValueError(f"my_response must be one of {', '.join(_RESPONSES)}")
        payload["responseStatus"] = {"response": _RESPONSES[fields["my_response"]]}
    if "is_cancelled" in fields:
        payload["isCancelled"] = bool(fields["is_cancelled"])
    if "extended" in fields:
        payload["singleValueExtendedProperties"] = [
            {"id": key, "value": value} for key, value in dict(fields["extended"]).items()
        ]
    return payload


def _when(value: Any, time_zone: str) -> dict[str, str]:
    if not isinstance(value, datetime):
        raise ValueError("start and end must be datetimes")
    # A naive datetime is wall-clock time in the item's zone (what an all-day item's midnight is).
    local = value if value.tzinfo is None else to_local(value, zone(time_zone))
    return {"dateTime": format_local(local), "timeZone": time_zone}
