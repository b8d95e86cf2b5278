"""EWS calendar items over the Graph emulator's calendar model: `t:CalendarItem` in, Graph payloads to
graph_events.Mailbox, and instances back out as `t:CalendarItem` in the shape a request asked for.

One calendar implementation serves both emulators: what Exchange stores (single items, series masters with
their exceptions and deleted occurrences) and its change-key rule are graph_events.py's; this module only
translates vocabulary (LegacyFreeBusyStatus Busy <-> showAs busy, DailyRecurrence <-> daily, ...).

EWS differences kept here: an occurrence and an exception carry the series' UID (Graph gives each instance its
own iCalUId); Start and End are instants, the zone travelling separately in StartTimeZone; extended properties
are addressed by ExtendedFieldURI attributes and stored under Graph's id syntax
(`String {guid} Name X`), so either emulator's view of the item shows the same property.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from emulators.ews_xml import EwsError, format_instant, local_name, parse_date, parse_instant, sub, t, text_of
from emulators.graph_common import (
    GraphError,
    format_local,
    known_zone,
    parse_datetime,
    to_local,
    to_utc,
    zone,
)
from emulators.graph_events import Instance, StoredEvent
from emulators.graph_events import Mailbox as Calendar
from emulators.graph_recurrence import DAYS, Recurrence

FREE_BUSY = {
    "Free": "free",
    "Tentative": "tentative",
    "Busy": "busy",
    "OOF": "oof",
    "WorkingElsewhere": "workingElsewhere",
    "NoData": "unknown",
}
_SHOW_AS = {value: key for key, value in FREE_BUSY.items()}
SENSITIVITY = {"Normal": "normal", "Personal": "personal", "Private": "private", "Confidential": "confidential"}
IMPORTANCE = {"Low": "low", "Normal": "normal", "High": "high"}
RESPONSE = {
    "organizer": "Organizer",
    "tentativelyAccepted": "Tentative",
    "accepted": "Accept",
    "declined": "Decline",
    "notResponded": "NoResponseReceived",
    "none": "Unknown",
}
ITEM_TYPES = {
    "singleInstance": "Single",
    "occurrence": "Occurrence",
    "exception": "Exception",
    "seriesMaster": "RecurringMaster",
}
_MONTHS = (
    "January February March April May June July August September October November December".split()  # noqa: SIM905
)
_DAY_NAMES = {day.capitalize(): day for day in DAYS}
_DAY_GROUPS = {
    "Day": list(DAYS),
    "Weekday": ["monday", "tuesday", "wednesday", "thursday", "friday"],
    "WeekendDay": ["saturday", "sunday"],
}
_INDEXES = {"First": "first", "Second": "second", "Third": "third", "Fourth": "fourth", "Last": "last"}

# What BaseShape Default returns for a calendar item (the AllProperties shape adds the rest).
DEFAULT_FIELDS = frozenset(
    {
        "item:Subject",
        "item:HasAttachments",
        "item:Sensitivity",
        "calendar:Start",
        "calendar:End",
        "calendar:IsAllDayEvent",
        "calendar:LegacyFreeBusyStatus",
        "calendar:Location",
        "calendar:CalendarItemType",
        "calendar:Organizer",
    }
)


@dataclass(frozen=True)
class Shape:
    """An ItemShape: which FieldURIs and extended properties to render."""

    base: str = "IdOnly"
    fields: frozenset[str] = frozenset()
    extended: tuple[str, ...] = ()

    @classmethod
    def parse(cls, elem: ET.Element | None) -> Shape:
        if elem is None:
            return cls()
        base = text_of(elem, t("BaseShape"), "IdOnly") or "IdOnly"
        fields: set[str] = set()
        extended: list[str] = []
        additional = elem.find(t("AdditionalProperties"))
        for path in additional if additional is not None else ():
            if path.tag == t("FieldURI"):
                fields.add(path.get("FieldURI", ""))
            elif path.tag == t("ExtendedFieldURI"):
                extended.append(extended_id(path))
        return cls(base, frozenset(fields), tuple(extended))

    def wants(self, uri: str) -> bool:
        if uri in self.fields or self.base == "AllProperties":
            return True
        return self.base == "Default" and uri in DEFAULT_FIELDS


@dataclass
class Owner:
    address: str
    name: str


@dataclass
class Update:
    """An UpdateItem's ItemChange as a Graph PATCH payload, plus the extended properties it deletes."""

    payload: dict[str, Any] = field(default_factory=dict)
    removed_extended: list[str] = field(default_factory=list)


# -- extended properties -------------------------------------------------------------------------------------


def extended_id(uri: ET.Element) -> str:
    """Graph's id syntax for the property an ExtendedFieldURI names (`String {guid} Name X`)."""
    kind = uri.get("PropertyType", "String")
    if uri.get("PropertyTag"):
        return f"{kind} {uri.get('PropertyTag')}"
    set_id = uri.get("PropertySetId")
    space = f"{{{set_id}}}" if set_id else uri.get("DistinguishedPropertySetId", "PublicStrings")
    if uri.get("PropertyName") is not None:
        return f"{kind} {space} Name {uri.get('PropertyName')}"
    return f"{kind} {space} Id {uri.get('PropertyId')}"


def _extended_uri(parent: ET.Element, property_id: str) -> None:
    kind, _, rest = property_id.partition(" ")
    attrs = {"PropertyType": kind}
    space, _, named = rest.partition(" ")
    if not named:
        attrs["PropertyTag"] = rest
    else:
        if space.startswith("{"):
            attrs["PropertySetId"] = space.strip("{}")
        else:
            attrs["DistinguishedPropertySetId"] = space
        how, _, name = named.partition(" ")
        attrs["PropertyName" if how == "Name" else "PropertyId"] = name
    sub(parent, t("ExtendedFieldURI"), **attrs)


# -- EWS -> Graph payload ------------------------------------------------------------------------------------


def zone_name(candidate: str | None, fallback: str = "UTC") -> str:
    """A zone the calendar model knows; an unknown Windows id falls back (documented deviation)."""
    if candidate and known_zone(candidate):
        return candidate
    return fallback if known_zone(fallback) else "UTC"


def _when(instant: datetime, zone_id: str) -> dict[str, str]:
    return {"dateTime": format_local(to_local(instant, zone(zone_id))), "timeZone": zone_id}


def _item_zone(item: ET.Element, default_zone: str) -> tuple[str, str]:
    start_zone = item.find(t("StartTimeZone"))
    end_zone = item.find(t("EndTimeZone"))
    meeting_zone = item.find(t("MeetingTimeZone"))
    start_id = start_zone.get("Id") if start_zone is not None else None
    if start_id is None and meeting_zone is not None:
        start_id = meeting_zone.get("TimeZoneName")
    start_name = zone_name(start_id, default_zone)
    end_name = zone_name(end_zone.get("Id") if end_zone is not None else None, start_name)
    return start_name, end_name


def item_payload(item: ET.Element, default_zone: str) -> dict[str, Any]:
    """A CreateItem's `t:CalendarItem` as the Graph payload graph_events.Mailbox.create takes."""
    start_zone, end_zone = _item_zone(item, default_zone)
    payload: dict[str, Any] = {}
    for child in item:
        _apply_field(payload, child, start_zone, end_zone)
    if "start" not in payload or "end" not in payload:
        raise EwsError("ErrorMissingArgument", "A calendar item needs both Start and End.")
    if payload.get("isAllDay"):
        _to_midnights(payload, start_zone, end_zone)
    return payload


def _to_midnights(payload: dict[str, Any], start_zone: str, end_zone: str) -> None:
    """EWS does not refuse an all-day item whose times are not midnight (Graph does): it moves the start back and
    the end forward to midnights in the item's own zones (Microsoft, "How to: Create all-day events by using EWS
    in Exchange"; exchangelib's CalendarItem.to_xml relies on it)."""
    for name, zone_id, forward in (("start", start_zone, False), ("end", end_zone, True)):
        local, _ = parse_datetime(payload[name]["dateTime"])
        midnight = datetime.combine(local.date(), time())
        if forward and local != midnight:
            midnight += timedelta(days=1)
        payload[name] = {"dateTime": format_local(midnight), "timeZone": zone_id}


def update_payload(updates: ET.Element, current_start_zone: str, default_zone: str) -> Update:
    """The SetItemField / AppendToItemField / DeleteItemField list of one ItemChange."""
    change = Update()
    items = [u.find(t("CalendarItem")) for u in updates if u.tag != t("DeleteItemField")]
    zones = [i for i in items if i is not None]
    start_zone = current_start_zone
    end_zone = current_start_zone
    for item in zones:
        found = item.find(t("StartTimeZone"))
        if found is not None:
            start_zone = zone_name(found.get("Id"), current_start_zone)
    end_zone = start_zone
    for item in zones:
        found = item.find(t("EndTimeZone"))
        if found is not None:
            end_zone = zone_name(found.get("Id"), start_zone)
    for update in updates:
        uri = update.find(t("FieldURI"))
        extended = update.find(t("ExtendedFieldURI"))
        if update.tag == t("DeleteItemField"):
            if extended is not None:
                change.removed_extended.append(extended_id(extended))
            elif uri is not None:
                _delete_field(change.payload, uri.get("FieldURI", ""))
            continue
        target = update.find(t("CalendarItem"))
        if target is None:
            raise EwsError(
                "ErrorIncorrectUpdatePropertyCount",
                "An object within a change description must contain one and only one property to modify.",
            )
        for child in target:
            _apply_field(change.payload, child, start_zone, end_zone)
    return change


def _apply_field(payload: dict[str, Any], child: ET.Element, start_zone: str, end_zone: str) -> None:
    name = local_name(child.tag)
    value = child.text or ""
    if name == "Subject":
        payload["subject"] = value
    elif name == "Body":
        kind = "html" if child.get("BodyType", "Text") == "HTML" else "text"
        payload["body"] = {"contentType": kind, "content": value}
    elif name == "Sensitivity":
        payload["sensitivity"] = _enum(SENSITIVITY, value, "Sensitivity")
    elif name == "Importance":
        payload["importance"] = _enum(IMPORTANCE, value, "Importance")
    elif name == "Categories":
        payload["categories"] = [c.text or "" for c in child]
    elif name == "ReminderIsSet":
        payload["isReminderOn"] = _truth(value)
    elif name == "ReminderMinutesBeforeStart":
        payload["reminderMinutesBeforeStart"] = int(value or 0)
    elif name == "Start":
        payload["start"] = _when(parse_instant(value), start_zone)
    elif name == "End":
        payload["end"] = _when(parse_instant(value), end_zone)
    elif name == "IsAllDayEvent":
        payload["isAllDay"] = _truth(value)
    elif name == "LegacyFreeBusyStatus":
        payload["showAs"] = _enum(FREE_BUSY, value, "LegacyFreeBusyStatus")
    elif name == "Location":
        payload["location"] = {"displayName": value}
    elif name == "IsResponseRequested":
        payload["responseRequested"] = _truth(value)
    elif name in ("RequiredAttendees", "OptionalAttendees", "Resources"):
        kind = {"RequiredAttendees": "required", "OptionalAttendees": "optional"}.get(name, "resource")
        kept = [a for a in payload.get("attendees", []) if a["type"] != kind]
        payload["attendees"] = kept + [_attendee(a, kind) for a in child.findall(t("Attendee"))]
    elif name == "Recurrence":
        payload["recurrence"] = recurrence_to_graph(child, start_zone)
    elif name == "ExtendedProperty":
        uri = child.find(t("ExtendedFieldURI"))
        if uri is None:
            raise EwsError("ErrorInvalidExtendedProperty", "The extended property is missing its ExtendedFieldURI.")
        values = child.find(t("Values"))
        text = text_of(child, t("Value"))
        if text is None and values is not None:
            text = " ".join(v.text or "" for v in values)
        payload.setdefault("singleValueExtendedProperties", []).append({"id": extended_id(uri), "value": text or ""})


def _delete_field(payload: dict[str, Any], uri: str) -> None:
    if uri == "item:Body":
        payload["body"] = {"contentType": "text", "content": ""}
    elif uri == "item:Categories":
        payload["categories"] = []
    elif uri == "calendar:Location":
        payload["location"] = {"displayName": ""}
    elif uri == "calendar:Recurrence":
        payload["recurrence"] = None
    elif uri in ("calendar:RequiredAttendees", "calendar:OptionalAttendees", "calendar:Resources"):
        payload["attendees"] = []
    elif uri == "item:Subject":
        payload["subject"] = ""


def _attendee(elem: ET.Element, kind: str) -> dict[str, Any]:
    mailbox = elem.find(t("Mailbox"))
    return {
        "type": kind,
        "emailAddress": {
            "name": text_of(mailbox, t("Name"), "") or "",
            "address": text_of(mailbox, t("EmailAddress"), "") or "",
        },
        "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
    }


def _enum(mapping: dict[str, str], value: str, name: str) -> str:
    if value not in mapping:
        raise EwsError("ErrorInvalidValueForProperty", f"The value '{value}' is not valid for {name}.")
    return mapping[value]


def recurrence_to_graph(elem: ET.Element, zone_id: str) -> dict[str, Any]:
    """`t:Recurrence` (one pattern element, one range element) as Graph's patternedRecurrence."""
    if len(elem) != 2:
        raise EwsError("ErrorInvalidValueForProperty", "A recurrence needs one pattern and one range.")
    pattern_elem, range_elem = elem[0], elem[1]
    kind = local_name(pattern_elem.tag).removesuffix("Recurrence")
    types = {
        "Daily": "daily",
        "Weekly": "weekly",
        "AbsoluteMonthly": "absoluteMonthly",
        "RelativeMonthly": "relativeMonthly",
        "AbsoluteYearly": "absoluteYearly",
        "RelativeYearly": "relativeYearly",
    }
    if kind not in types:
        raise EwsError("ErrorInvalidValueForProperty", f"The recurrence pattern {kind} is not supported.")
    pattern: dict[str, Any] = {"type": types[kind], "interval": int(text_of(pattern_elem, t("Interval"), "1") or 1)}
    days: list[str] = []
    for token in (text_of(pattern_elem, t("DaysOfWeek"), "") or "").split():
        days.extend(_DAY_GROUPS.get(token, [_DAY_NAMES.get(token, token.lower())]))
    if days:
        pattern["daysOfWeek"] = days
    if (first := text_of(pattern_elem, t("FirstDayOfWeek"))) is not None:
        pattern["firstDayOfWeek"] = first.lower()
    if (day := text_of(pattern_elem, t("DayOfMonth"))) is not None:
        pattern["dayOfMonth"] = int(day)
    if (index := text_of(pattern_elem, t("DayOfWeekIndex"))) is not None:
        pattern["index"] = _INDEXES.get(index, index.lower())
    if (month := text_of(pattern_elem, t("Month"))) is not None:
        pattern["month"] = _MONTHS.index(month) + 1 if month in _MONTHS else 0
    range_kind = local_name(range_elem.tag)
    range_: dict[str, Any] = {"recurrenceTimeZone": zone_id}
    if (start := text_of(range_elem, t("StartDate"))) is not None:
        range_["startDate"] = parse_date(start).isoformat()
    if range_kind == "NoEndRecurrence":
        range_["type"] = "noEnd"
    elif range_kind == "EndDateRecurrence":
        range_["type"] = "endDate"
        range_["endDate"] = parse_date(text_of(range_elem, t("EndDate"), "") or "").isoformat()
    elif range_kind == "NumberedRecurrence":
        range_["type"] = "numbered"
        range_["numberOfOccurrences"] = int(text_of(range_elem, t("NumberOfOccurrences"), "0") or 0)
    else:
        raise EwsError("ErrorInvalidValueForProperty", f"The recurrence range {range_kind} is not supported.")
    return {"pattern": pattern, "range": range_}


def ews_error(error: GraphError) -> EwsError:
    """The calendar model's Graph error as the EWS response code Exchange uses for the same refusal."""
    codes = {
        "ErrorInvalidRecurrence": "ErrorInvalidValueForProperty",
        "RequestBodyRead": "ErrorInvalidValueForProperty",
        "TimeZoneNotSupportedException": "ErrorTimeZone",
    }
    return EwsError(codes.get(error.code, error.code), error.message)


# -- Graph model -> EWS --------------------------------------------------------------------------------------


def series_master(calendar: Calendar, instance: Instance) -> StoredEvent | None:
    if instance.master_id is None:
        return None
    return calendar.events.get(instance.master_id)


def render_item(
    calendar: Calendar,
    instance: Instance,
    shape: Shape,
    *,
    owner: Owner,
    parent_folder: tuple[str, str],
    tag: str = "CalendarItem",
) -> ET.Element:
    """`t:CalendarItem` with ItemId and the fields the shape asks for, in the schema's element order."""
    item = ET.Element(t(tag))
    sub(item, t("ItemId"), Id=instance.id, ChangeKey=instance.change_key)
    event = instance.event
    props = event.props
    master = series_master(calendar, instance)
    recurrence = (master or event).recurrence
    zone_id = recurrence.time_zone if recurrence and instance.type != "singleInstance" else event.start.zone_name
    show = shape.wants

    if show("item:ParentFolderId"):
        sub(item, t("ParentFolderId"), Id=parent_folder[0], ChangeKey=parent_folder[1])
    if show("item:ItemClass"):
        sub(item, t("ItemClass"), "IPM.Appointment")
    if show("item:Subject"):
        sub(item, t("Subject"), str(props.get("subject", "")))
    if show("item:Sensitivity"):
        sub(item, t("Sensitivity"), str(props.get("sensitivity", "normal")).capitalize())
    if show("item:Body"):
        body = props.get("body") or {}
        kind = "HTML" if body.get("contentType") == "html" else "Text"
        sub(item, t("Body"), str(body.get("content", "")), BodyType=kind)
    if show("item:Categories") and props.get("categories"):
        categories = sub(item, t("Categories"))
        for category in props["categories"]:
            sub(categories, t("String"), category)
    if show("item:Importance"):
        sub(item, t("Importance"), str(props.get("importance", "normal")).capitalize())
    if show("item:DateTimeCreated"):
        sub(item, t("DateTimeCreated"), format_instant(event.created))
    if show("item:HasAttachments"):
        sub(item, t("HasAttachments"), "false")
    if show("item:ReminderIsSet"):
        sub(item, t("ReminderIsSet"), _bool(props.get("isReminderOn", True)))
    if show("item:ReminderMinutesBeforeStart"):
        sub(item, t("ReminderMinutesBeforeStart"), str(props.get("reminderMinutesBeforeStart", 15)))
    for property_id in shape.extended:
        stored = event.extended.get(property_id.lower())
        if stored is not None:
            prop = sub(item, t("ExtendedProperty"))
            _extended_uri(prop, stored[0])
            sub(prop, t("Value"), stored[1])
    if show("item:LastModifiedTime"):
        sub(item, t("LastModifiedTime"), format_instant(event.modified))
    if show("calendar:UID"):
        sub(item, t("UID"), (master or event).ical_uid)
    if show("calendar:RecurrenceId") and instance.original_start is not None and recurrence is not None:
        sub(item, t("RecurrenceId"), format_instant(to_utc(instance.original_start, zone(recurrence.time_zone))))
    if show("calendar:Start"):
        sub(item, t("Start"), format_instant(instance.start_utc))
    if show("calendar:End"):
        sub(item, t("End"), format_instant(instance.end_utc))
    if show("calendar:OriginalStart") and instance.original_start is not None and recurrence is not None:
        sub(item, t("OriginalStart"), format_instant(to_utc(instance.original_start, zone(recurrence.time_zone))))
    if show("calendar:IsAllDayEvent"):
        sub(item, t("IsAllDayEvent"), _bool((master or event).is_all_day))
    if show("calendar:LegacyFreeBusyStatus"):
        sub(item, t("LegacyFreeBusyStatus"), _SHOW_AS.get(str(props.get("showAs", "busy")), "Busy"))
    if show("calendar:Location"):
        sub(item, t("Location"), str((props.get("location") or {}).get("displayName", "")))
    attendees = list(props.get("attendees") or [])
    organised = props.get("isOrganizer", True) is not False
    if show("calendar:IsMeeting"):
        sub(item, t("IsMeeting"), _bool(bool(attendees) or not organised))
    if show("calendar:IsCancelled"):
        sub(item, t("IsCancelled"), _bool(props.get("isCancelled", False)))
    if show("calendar:IsRecurring"):
        sub(item, t("IsRecurring"), _bool(instance.type in ("occurrence", "exception")))
    if show("calendar:IsResponseRequested"):
        sub(item, t("IsResponseRequested"), _bool(props.get("responseRequested", True)))
    if show("calendar:CalendarItemType"):
        sub(item, t("CalendarItemType"), ITEM_TYPES[instance.type])
    if show("calendar:MyResponseType"):
        response = (props.get("responseStatus") or {}).get("response", "organizer")
        sub(item, t("MyResponseType"), RESPONSE.get(str(response), "Unknown"))
    if show("calendar:Organizer"):
        address = (props.get("organizer") or {}).get("emailAddress") or {}
        _mailbox(sub(item, t("Organizer")), address.get("name", owner.name), address.get("address", owner.address))
    for uri, kind in (("RequiredAttendees", "required"), ("OptionalAttendees", "optional"), ("Resources", "resource")):
        chosen = [a for a in attendees if a.get("type") == kind]
        if show(f"calendar:{uri}") and chosen:
            _attendees(sub(item, t(uri)), chosen)
    if show("calendar:Recurrence") and instance.type == "seriesMaster" and event.recurrence is not None:
        recurrence_to_xml(sub(item, t("Recurrence")), event.recurrence)
    if show("calendar:ModifiedOccurrences") and instance.type == "seriesMaster" and event.exceptions:
        _modified_occurrences(sub(item, t("ModifiedOccurrences")), event)
    if show("calendar:DeletedOccurrences") and instance.type == "seriesMaster" and event.cancelled:
        deleted = sub(item, t("DeletedOccurrences"))
        assert event.recurrence is not None
        for when in sorted(event.cancelled):
            occurrence = sub(deleted, t("DeletedOccurrence"))
            sub(occurrence, t("Start"), format_instant(to_utc(when, zone(event.recurrence.time_zone))))
    zone_attrs = {"Id": zone_id}
    if show("calendar:StartTimeZone"):
        sub(item, t("StartTimeZone"), **zone_attrs)
    if show("calendar:EndTimeZone"):
        sub(item, t("EndTimeZone"), **zone_attrs)
    return item


def _modified_occurrences(parent: ET.Element, master: StoredEvent) -> None:
    assert master.recurrence is not None
    tz = zone(master.recurrence.time_zone)
    for original, exception in sorted(master.exceptions.items()):
        occurrence = sub(parent, t("Occurrence"))
        sub(occurrence, t("ItemId"), Id=exception.id, ChangeKey=exception.change_key)
        sub(occurrence, t("Start"), format_instant(exception.start.utc))
        sub(occurrence, t("End"), format_instant(exception.end.utc))
        sub(occurrence, t("OriginalStart"), format_instant(to_utc(original, tz)))


def recurrence_to_xml(parent: ET.Element, recurrence: Recurrence) -> None:
    names = {
        "daily": "DailyRecurrence",
        "weekly": "WeeklyRecurrence",
        "absoluteMonthly": "AbsoluteMonthlyRecurrence",
        "relativeMonthly": "RelativeMonthlyRecurrence",
        "absoluteYearly": "AbsoluteYearlyRecurrence",
        "relativeYearly": "RelativeYearlyRecurrence",
    }
    kind = recurrence.pattern_type
    pattern = sub(parent, t(names[kind]))
    days = " ".join(day.capitalize() for day in recurrence.days_of_week)
    index = recurrence.index.capitalize()
    if kind in ("daily", "weekly", "absoluteMonthly", "relativeMonthly"):
        sub(pattern, t("Interval"), str(recurrence.interval))
    if kind == "weekly":
        sub(pattern, t("DaysOfWeek"), days)
        sub(pattern, t("FirstDayOfWeek"), recurrence.first_day_of_week.capitalize())
    elif kind in ("relativeMonthly", "relativeYearly"):
        sub(pattern, t("DaysOfWeek"), days)
        sub(pattern, t("DayOfWeekIndex"), index)
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        sub(pattern, t("DayOfMonth"), str(recurrence.day_of_month))
    if kind in ("absoluteYearly", "relativeYearly"):
        sub(pattern, t("Month"), _MONTHS[recurrence.month - 1])
    if recurrence.range_type == "noEnd":
        range_ = sub(parent, t("NoEndRecurrence"))
        sub(range_, t("StartDate"), recurrence.start_date.isoformat())
    elif recurrence.range_type == "endDate":
        range_ = sub(parent, t("EndDateRecurrence"))
        sub(range_, t("StartDate"), recurrence.start_date.isoformat())
        sub(range_, t("EndDate"), recurrence.end_date.isoformat() if recurrence.end_date else "")
    else:
        range_ = sub(parent, t("NumberedRecurrence"))
        sub(range_, t("StartDate"), recurrence.start_date.isoformat())
        sub(range_, t("NumberOfOccurrences"), str(recurrence.number_of_occurrences))


def _attendees(parent: ET.Element, attendees: Iterable[dict[str, Any]]) -> None:
    for attendee in attendees:
        elem = sub(parent, t("Attendee"))
        address = attendee.get("emailAddress") or {}
        _mailbox(elem, address.get("name", ""), address.get("address", ""))
        response = (attendee.get("status") or {}).get("response", "none")
        sub(elem, t("ResponseType"), RESPONSE.get(str(response), "Unknown"))


def _mailbox(parent: ET.Element, name: str, address: str) -> None:
    mailbox = sub(parent, t("Mailbox"))
    sub(mailbox, t("Name"), name)
    sub(mailbox, t("EmailAddress"), address)
    sub(mailbox, t("RoutingType"), "SMTP")
    sub(mailbox, t("MailboxType"), "Mailbox")


def _truth(text: str) -> bool:
    """xs:boolean: exchangelib writes 1 / 0, Exchange true / false."""
    return text.strip() in ("true", "1")


def _bool(value: Any) -> str:
    return "true" if value else "false"
