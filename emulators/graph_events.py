"""One mailbox's calendar: stored events, the instances a time window shows, and Graph's rules for writes
(validation, If-Match, transactionId). Their JSON is graph_render.py's job.

What is stored is what Exchange stores: single events, series masters (with their exceptions and the
occurrences that were deleted), never the plain occurrences themselves; those are computed from the master's
recurrence when a view asks for them, with ids that encode the master and the occurrence's original start, so
the same occurrence keeps the same id from one call to the next.

Change keys change on every write. An occurrence shows its master's change key (an occurrence is the master
seen on one date), so every occurrence's etag changes when the master changes; changing an occurrence (it
becomes an exception) or deleting one also changes the master, as in Exchange, where exceptions live inside the
master item.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from emulators.graph_common import (
    GraphError,
    b64url,
    bad_request,
    format_local,
    item_not_found,
    now,
    parse_datetime,
    random_token,
    to_local,
    to_utc,
    unb64url,
    zone,
)
from emulators.graph_recurrence import Recurrence

# Ids look like Exchange's (base64url, "AAMkAG" prefix). The seventh character tells stored items apart from
# computed occurrences, whose id carries the master's id and the occurrence's original start.
_ID_PREFIX = "AAMkAG"
_EVENT_PREFIX = _ID_PREFIX + "E"
_OCCURRENCE_PREFIX = _ID_PREFIX + "O"
_ICAL_PREFIX = "040000008200E00074C5B7101A82E00800000000"

_ENUMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "showAs": ("freeBusyStatus", ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")),
    "sensitivity": ("sensitivity", ("normal", "personal", "private", "confidential")),
    "importance": ("importance", ("low", "normal", "high")),
}
# What a client may set through the API; computed properties are accepted and ignored (Graph ignores them too),
# anything else is refused the way OData refuses an unknown property.
_SETTABLE = frozenset(
    {
        "subject",
        "body",
        "start",
        "end",
        "showAs",
        "isAllDay",
        "sensitivity",
        "importance",
        "categories",
        "location",
        "locations",
        "isReminderOn",
        "reminderMinutesBeforeStart",
        "responseRequested",
        "recurrence",
        "singleValueExtendedProperties",
        "transactionId",
        "attendees",
        "allowNewTimeProposals",
        "isOnlineMeeting",
        "onlineMeetingProvider",
        "hideAttendees",
    }
)
# Only Outlook itself (the control API) sets these: through Graph the mailbox owner is always the organiser.
_OUTLOOK_ONLY = frozenset({"isOrganizer", "organizer", "responseStatus", "isCancelled"})
_COMPUTED = frozenset(
    {
        "id",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "type",
        "seriesMasterId",
        "hasAttachments",
        "bodyPreview",
        "webLink",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "originalStart",
        "iCalUId",
        "uid",
        "onlineMeeting",
        "occurrenceId",
        "isDraft",
        "@odata.etag",
        "@odata.type",
        "@odata.context",
    }
)
PASSTHROUGH = ("attendees", "locations", "allowNewTimeProposals", "isOnlineMeeting", "onlineMeetingProvider")
_NO_RESPONSE_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class When:
    """A wall-clock time in a named zone: Graph's dateTimeTimeZone, kept as the client gave it."""

    local: datetime
    zone_name: str

    @property
    def utc(self) -> datetime:
        return to_utc(self.local, zone(self.zone_name))

    @classmethod
    def from_graph(cls, value: Any, name: str) -> When:
        if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
            raise bad_request(f"The event's {name} must be an object with dateTime and timeZone.")
        zone_name = str(value.get("timeZone") or "UTC")
        tz = zone(zone_name)
        local, offset = parse_datetime(value["dateTime"])
        if offset is not None:
            # An explicit offset wins over the zone: keep the instant, expressed in the named zone.
            local = to_local(local.replace(tzinfo=offset), tz)
        return cls(local, zone_name)

    def to_graph(self) -> dict[str, str]:
        return {"dateTime": format_local(self.local), "timeZone": self.zone_name}


@dataclass
class StoredEvent:
    """A single event, a series master or an exception, as the mailbox stores it."""

    id: str
    type: str
    props: dict[str, Any]
    start: When
    end: When
    is_all_day: bool
    change_key: str
    created: datetime
    modified: datetime
    ical_uid: str
    transaction_id: str | None = None
    extended: dict[str, tuple[str, str]] = field(default_factory=dict)
    recurrence: Recurrence | None = None
    exceptions: dict[datetime, StoredEvent] = field(default_factory=dict)
    cancelled: set[datetime] = field(default_factory=set)
    series_master_id: str | None = None
    original_start: datetime | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'


@dataclass(frozen=True)
class Instance:
    """What a view shows: a single event, an occurrence of a series or an exception, with its own times."""

    id: str
    type: str
    event: StoredEvent
    start: When
    end: When
    change_key: str
    master_id: str | None = None
    original_start: datetime | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'

    @property
    def start_utc(self) -> datetime:
        return self.start.utc

    @property
    def end_utc(self) -> datetime:
        return self.end.utc

    def overlaps(self, low: datetime, high: datetime) -> bool:
        start, end = self.start_utc, self.end_utc
        if start == end:
            return low <= start < high
        return start < high and end > low


@dataclass(frozen=True)
class Change:
    """What a subscription hears about: Graph names the series master for any change inside a series."""

    user_id: str
    event_id: str
    change_type: str
    etag: str


@dataclass(frozen=True)
class Owner:
    id: str
    user_principal_name: str
    display_name: str
    mail: str


class Mailbox:
    """The calendar of one user. Not thread-safe; the emulator runs on one event loop."""

    def __init__(
        self,
        owner: Owner,
        *,
        new_change_key: Callable[[], str],
        on_change: Callable[[Change], None],
        max_deletions: int = 10_000,
    ) -> None:
        self.owner = owner
        # mailboxSettings.timeZone: what the user chose in Outlook, a Windows id or an IANA name as given.
        self.time_zone = "UTC"
        self._new_change_key = new_change_key
        self._on_change = on_change
        self.events: dict[str, StoredEvent] = {}
        self._by_transaction: dict[str, str] = {}
        # Deleted single events, numbered, so a delta token can name the ones deleted after it was issued even
        # when they were outside its window (Graph reports those too).
        self.deletions: list[tuple[int, str]] = []
        self.deletion_seq = 0
        self._max_deletions = max_deletions

    # -- reading -------------------------------------------------------------------------------------------

    def instances(self, low: datetime, high: datetime) -> list[Instance]:
        """Single events, occurrences and exceptions overlapping [low, high), by start time."""
        found: list[Instance] = []
        for event in self.events.values():
            if event.recurrence is None:
                instance = single(event)
                if instance.overlaps(low, high):
                    found.append(instance)
            else:
                found.extend(self.series_instances(event, low, high))
        found.sort(key=lambda item: (item.start_utc, item.id))
        return found

    def series_instances(self, master: StoredEvent, low: datetime, high: datetime) -> list[Instance]:
        recurrence = master.recurrence
        if recurrence is None:
            return []
        tz = zone(recurrence.time_zone)
        span = master.end.utc - master.start.utc
        # A day of slack on each side covers DST shifts; the exact test is `overlaps` on UTC instants.
        search_low = to_local(low - span, tz) - timedelta(days=1)
        search_high = to_local(high, tz) + timedelta(days=1)
        found = []
        for local_start in recurrence.starts_between(_start_time(master), search_low, search_high):
            if local_start in master.cancelled or local_start in master.exceptions:
                continue
            instance = _occurrence(master, local_start)
            if instance.overlaps(low, high):
                found.append(instance)
        for exception in master.exceptions.values():
            instance = _exception(master, exception)
            if instance.overlaps(low, high):
                found.append(instance)
        return found

    def get(self, event_id: str) -> Instance:
        master, occurrence = self._resolve(event_id)
        if occurrence is None:
            return single(master)
        return self._instance_at(master, occurrence)

    # -- writing -------------------------------------------------------------------------------------------

    def create(
        self, payload: Any, *, as_outlook: bool = False, ical_uid: str | None = None
    ) -> tuple[StoredEvent, bool]:
        """A new event, or the existing one when its transactionId was seen before (then `False`).

        `ical_uid`: a meeting's copy in an attendee's calendar shares the organizer's (graph_meetings.py).
        """
        body = _checked_payload(payload, as_outlook=as_outlook)
        transaction_id = body.get("transactionId")
        if transaction_id is not None and not isinstance(transaction_id, str):
            raise bad_request("transactionId must be a string.")
        if transaction_id:
            existing = self.events.get(self._by_transaction.get(transaction_id, ""))
            if existing is not None:
                return existing, False
        if "start" not in body or "end" not in body:
            raise bad_request("The event's start and end must both be given.")
        start = When.from_graph(body["start"], "start")
        end = When.from_graph(body["end"], "end")
        is_all_day = _bool(body.get("isAllDay", False), "isAllDay")
        _check_times(start, end, is_all_day)
        stamp = now()
        event = StoredEvent(
            id=_EVENT_PREFIX + b64url(os.urandom(17)),
            type="singleInstance",
            props=self._default_props(body),
            start=start,
            end=end,
            is_all_day=is_all_day,
            change_key=self._new_change_key(),
            created=stamp,
            modified=stamp,
            ical_uid=ical_uid or _ICAL_PREFIX + hashlib.sha1(random_token().encode()).hexdigest()[:32].upper(),
            transaction_id=transaction_id or None,
        )
        _apply_props(event.props, body)
        _apply_extended(event, body)
        if body.get("recurrence") is not None:
            event.recurrence = _recurrence(body["recurrence"], start)
            event.type = "seriesMaster"
        self.events[event.id] = event
        if transaction_id:
            self._by_transaction[transaction_id] = event.id
        self._emit(event, "created")
        return event, True

    def update(self, event_id: str, payload: Any, *, if_match: str | None = None, as_outlook: bool = False) -> Instance:
        body = _checked_payload(payload, as_outlook=as_outlook)
        master, occurrence = self._resolve(event_id)
        if occurrence is None:
            _check_if_match(if_match, master.change_key)
            self._update_event(master, body)
            self._emit(master, "updated")
            return single(master)
        if "recurrence" in body:
            raise bad_request("The recurrence of a single occurrence cannot be changed; change the series master.")
        exception = master.exceptions.get(occurrence)
        _check_if_match(if_match, exception.change_key if exception else master.change_key)
        current = exception or self._new_exception(master, occurrence)
        start = When.from_graph(body["start"], "start") if "start" in body else current.start
        end = When.from_graph(body["end"], "end") if "end" in body else current.end
        _check_times(start, end, master.is_all_day)
        exception = current
        exception.start, exception.end = start, end
        _apply_props(exception.props, body)
        _apply_extended(exception, body)
        self._touch(exception)
        master.exceptions[occurrence] = exception
        self._touch(master)
        self._emit(master, "updated")
        return _exception(master, exception)

    def delete(self, event_id: str, *, if_match: str | None = None) -> None:
        master, occurrence = self._resolve(event_id)
        if occurrence is None:
            _check_if_match(if_match, master.change_key)
            del self.events[master.id]
            if master.transaction_id:
                self._by_transaction.pop(master.transaction_id, None)
            if master.type == "singleInstance":
                self.deletion_seq += 1
                self.deletions.append((self.deletion_seq, master.id))
                del self.deletions[: -self._max_deletions]
            self._emit(master, "deleted")
            return
        exception = master.exceptions.get(occurrence)
        _check_if_match(if_match, exception.change_key if exception else master.change_key)
        master.exceptions.pop(occurrence, None)
        master.cancelled.add(occurrence)
        self._touch(master)
        self._emit(master, "updated")

    def deleted_since(self, seq: int) -> list[str]:
        return [event_id for number, event_id in self.deletions if number > seq]

    # -- internals -----------------------------------------------------------------------------------------

    def _resolve(self, event_id: str) -> tuple[StoredEvent, datetime | None]:
        """The stored event an id names, with the occurrence's original start when it names an occurrence."""
        event = self.events.get(event_id)
        if event is not None:
            return event, None
        if event_id.startswith(_OCCURRENCE_PREFIX):
            decoded = _decode_occurrence_id(event_id)
            if decoded is not None:
                master = self.events.get(decoded[0])
                if master is not None and master.recurrence is not None:
                    when = decoded[1]
                    if when in master.exceptions:
                        return master, when
                    if when not in master.cancelled and master.recurrence.has_start(_start_time(master), when):
                        return master, when
            raise item_not_found()
        if event_id.startswith(_ID_PREFIX):
            raise item_not_found()
        raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")

    def _instance_at(self, master: StoredEvent, occurrence: datetime) -> Instance:
        exception = master.exceptions.get(occurrence)
        return _exception(master, exception) if exception else _occurrence(master, occurrence)

    def _update_event(self, event: StoredEvent, body: dict[str, Any]) -> None:
        start = When.from_graph(body["start"], "start") if "start" in body else event.start
        end = When.from_graph(body["end"], "end") if "end" in body else event.end
        is_all_day = _bool(body.get("isAllDay", event.is_all_day), "isAllDay")
        _check_times(start, end, is_all_day)
        reshaped = (start, end, is_all_day) != (event.start, event.end, event.is_all_day)
        recurrence = event.recurrence
        if "recurrence" in body:
            recurrence = None if body["recurrence"] is None else _recurrence(body["recurrence"], start)
            reshaped = reshaped or recurrence != event.recurrence
        elif recurrence is not None and reshaped:
            # Moving a series keeps its pattern; the range start follows the new first date.
            recurrence = _recurrence(recurrence.to_graph(), start, keep_start=False)
        event.recurrence = recurrence
        event.type = "singleInstance" if recurrence is None else "seriesMaster"
        if reshaped:
            # Outlook drops a series' exceptions and deleted occurrences when its times or pattern change.
            event.exceptions.clear()
            event.cancelled.clear()
        event.start, event.end, event.is_all_day = start, end, is_all_day
        _apply_props(event.props, body)
        _apply_extended(event, body)
        self._touch(event)

    def _new_exception(self, master: StoredEvent, occurrence: datetime) -> StoredEvent:
        instance = _occurrence(master, occurrence)
        stamp = now()
        return StoredEvent(
            id=instance.id,
            type="exception",
            props=copy.deepcopy(master.props),
            start=instance.start,
            end=instance.end,
            is_all_day=master.is_all_day,
            change_key=self._new_change_key(),
            created=stamp,
            modified=stamp,
            ical_uid=instance_uid(master, instance.id),
            extended=dict(master.extended),
            series_master_id=master.id,
            original_start=occurrence,
        )

    def _touch(self, event: StoredEvent) -> None:
        event.change_key = self._new_change_key()
        event.modified = now()

    def _default_props(self, body: dict[str, Any]) -> dict[str, Any]:
        organised = body.get("isOrganizer", True) is not False
        owner = {"emailAddress": {"name": self.owner.display_name, "address": self.owner.mail}}
        return {
            "subject": "",
            "body": {"contentType": "text", "content": ""},
            "importance": "normal",
            "sensitivity": "normal",
            "showAs": "busy",
            "categories": [],
            "location": {"displayName": ""},
            "isReminderOn": True,
            "reminderMinutesBeforeStart": 15,
            "responseRequested": True,
            "isCancelled": False,
            "isOrganizer": organised,
            "organizer": owner
            if organised
            else {"emailAddress": {"name": "External Organizer", "address": "organizer@example.com"}},
            "responseStatus": {"response": "organizer" if organised else "notResponded", "time": _NO_RESPONSE_TIME},
        }

    def _emit(self, event: StoredEvent, change_type: str) -> None:
        self._on_change(Change(self.owner.id, event.id, change_type, event.etag))


def occurrence_id(master_id: str, local_start: datetime) -> str:
    return _OCCURRENCE_PREFIX + b64url(f"{master_id}|{local_start:%Y%m%dT%H%M%S}".encode())


def _decode_occurrence_id(event_id: str) -> tuple[str, datetime] | None:
    raw = unb64url(event_id[len(_OCCURRENCE_PREFIX) :])
    if raw is None:
        return None
    master_id, _, stamp = raw.decode("utf-8", "replace").rpartition("|")
    try:
        return master_id, datetime.strptime(stamp, "%Y%m%dT%H%M%S")
    except ValueError:
        return None


def single(event: StoredEvent) -> Instance:
    return Instance(
        event.id,
        event.type,
        event,
        event.start,
        event.end,
        event.change_key,
        master_id=event.series_master_id,
        original_start=event.original_start,
    )


def _occurrence(master: StoredEvent, local_start: datetime) -> Instance:
    recurrence = master.recurrence
    assert recurrence is not None
    zone_name = recurrence.time_zone
    start = When(local_start, zone_name)
    if master.is_all_day:
        end = When(local_start + (master.end.local - master.start.local), zone_name)
    else:
        end = When(to_local(start.utc + (master.end.utc - master.start.utc), zone(zone_name)), zone_name)
    return Instance(
        occurrence_id(master.id, local_start),
        "occurrence",
        master,
        start,
        end,
        master.change_key,
        master_id=master.id,
        original_start=local_start,
    )


def _exception(master: StoredEvent, exception: StoredEvent) -> Instance:
    return Instance(
        exception.id,
        "exception",
        exception,
        exception.start,
        exception.end,
        exception.change_key,
        master_id=master.id,
        original_start=exception.original_start,
    )


def _start_time(master: StoredEvent) -> time:
    """The series' time of day in its recurrence zone (the master may be written in another zone)."""
    recurrence = master.recurrence
    assert recurrence is not None
    if master.is_all_day:
        return time(0, 0)
    return to_local(master.start.utc, zone(recurrence.time_zone)).time()


def instance_uid(master: StoredEvent, instance_id: str) -> str:
    # Each instance of a series has its own iCalUId in Graph; derive it so it is stable across calls.
    return master.ical_uid[:-16] + hashlib.sha1(instance_id.encode()).hexdigest()[:16].upper()


def _checked_payload(payload: Any, *, as_outlook: bool) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object describing an event.")
    for key in payload:
        known = key in _SETTABLE or key in _COMPUTED or key in _OUTLOOK_ONLY or key.endswith("@odata.type")
        if not known:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{key}' does not exist on type 'microsoft.graph.event'. Make sure to only use "
                "property names that are defined by the type or mark the type as open type.",
            )
    allowed = _SETTABLE | (_OUTLOOK_ONLY if as_outlook else frozenset())
    body = {key: value for key, value in payload.items() if key in allowed}
    _validate(body)
    return body


def _validate(body: dict[str, Any]) -> None:
    """Every check a write needs, before anything is changed: a refused PATCH leaves the event as it was."""
    for name, (type_name, values) in _ENUMS.items():
        if name in body and body[name] not in values:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"Cannot convert the literal '{body[name]}' to the expected type 'microsoft.graph.{type_name}'.",
            )
    if "subject" in body and not isinstance(body["subject"], str):
        raise bad_request("subject must be a string.")
    if "body" in body and not isinstance(body["body"], dict):
        raise bad_request("body must be an object with contentType and content.")
    categories = body.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(item, str) for item in categories):
        raise bad_request("categories must be a list of strings.")
    reminder = body.get("reminderMinutesBeforeStart", 0)
    if isinstance(reminder, bool) or not isinstance(reminder, int):
        raise GraphError(
            400, "RequestBodyRead", f"Cannot convert the literal '{reminder}' to the expected type 'Edm.Int32'."
        )
    for name in ("isAllDay", "isOrganizer", "isCancelled", "isReminderOn", "responseRequested"):
        if name in body:
            _bool(body[name], name)
    properties = body.get("singleValueExtendedProperties") or []
    if not isinstance(properties, list):
        raise bad_request("singleValueExtendedProperties must be a list of {id, value}.")
    for item in properties:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"].strip():
            raise bad_request("Each singleValueExtendedProperty needs an id and a value.")


def _apply_props(props: dict[str, Any], body: dict[str, Any]) -> None:
    """Copy the (validated) writable properties of `body` into `props`."""
    for name in ("subject", "showAs", "sensitivity", "importance", "responseRequested", "isReminderOn"):
        if name in body:
            props[name] = body[name]
    if "body" in body:
        value = body["body"]
        props["body"] = {"contentType": str(value.get("contentType", "text")), "content": str(value.get("content", ""))}
    if "categories" in body:
        props["categories"] = list(body["categories"])
    if "location" in body:
        props["location"] = copy.deepcopy(body["location"]) or {"displayName": ""}
    if "reminderMinutesBeforeStart" in body:
        props["reminderMinutesBeforeStart"] = body["reminderMinutesBeforeStart"]
    # Outlook-only properties are in `body` only when the control API wrote it (see _checked_payload).
    for name in (*PASSTHROUGH, "isOrganizer", "organizer", "responseStatus", "isCancelled"):
        if name in body:
            props[name] = copy.deepcopy(body[name])


def _apply_extended(event: StoredEvent, body: dict[str, Any]) -> None:
    for item in body.get("singleValueExtendedProperties") or []:
        value = item.get("value")
        event.extended[item["id"].strip().lower()] = (item["id"].strip(), "" if value is None else str(value))


def _recurrence(value: Any, start: When, *, keep_start: bool = True) -> Recurrence:
    default_zone = value.get("range", {}).get("recurrenceTimeZone") if isinstance(value, dict) else None
    zone_name = default_zone or start.zone_name
    first_date = to_local(start.utc, zone(zone_name)).date()
    if not keep_start and isinstance(value, dict):
        value = {"pattern": value["pattern"], "range": {**value["range"], "startDate": first_date.isoformat()}}
    return Recurrence.from_graph(value, default_zone=zone_name, default_start=first_date)


def _check_times(start: When, end: When, is_all_day: bool) -> None:
    # An all-day event's start and end are midnights in their own zones, the end a day or more later; Graph refuses
    # anything else with this generic answer, before it looks at the order (microsoft-graph-docs issue 7919: an
    # all-day event in Europe/Berlin ending before it starts got exactly this).
    if is_all_day and (start.local.time() != time(0) or end.local.time() != time(0) or end.local <= start.local):
        raise bad_request("At least one property failed validation.", code="ErrorPropertyValidationFailure")
    if end.utc < start.utc:
        raise GraphError(
            400, "ErrorCalendarEndDateIsEarlierThanStartDate", "The end date occurs before the start date."
        )


def _check_if_match(if_match: str | None, change_key: str) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    given = if_match.strip()
    if given.startswith("W/"):
        given = given[2:]
    if given.strip('"') != change_key:
        raise GraphError(
            412,
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed in the request "
            "does not match the current change key for the item.",
        )


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise GraphError(
            400, "RequestBodyRead", f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'."
        )
    return value
